#!/bin/bash
# #11's speed table on this CPU, every dtype / quantization option of Qwen2.5-Coder-0.5B side by side (one process
# per batch size, variants and methods interleaved round by round), then the llama.cpp row for each quantized
# option. Run it on an otherwise idle CPU. llama.cpp comes from the prebuilt xllamacpp wheel, installed aside:
#   pip install --target /tmp/xl --no-deps xllamacpp==2026.10.11549
#   bash scripts/speed_table.sh [OUT_DIR]        # default results/bench
cd "$(dirname "$0")/.."
OUT=${1:-results/bench}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
set -e
grep -m1 "model name" /proc/cpuinfo
grep -o -w -e avx2 -e avx512f -e avx512_bf16 -e amx_bf16 /proc/cpuinfo | sort -u | tr '\n' ' '; echo
for batch in 1 8; do
  repeats=$([ "$batch" = 1 ] && echo 3 || echo 2)
  echo "=== $(date -u +%FT%TZ) speed, batch $batch"
  .venv/bin/selfanchor bench speed --model qwen2.5-coder-0.5b --variants bfloat16,float32,int8,int4 \
    --methods plain,ours --new-tokens 256 --batch "$batch" --repeats "$repeats" \
    --json "$OUT/qwen0.5b-variants-b$batch-256.json"
done
for q in int8 int4; do
  echo "=== $(date -u +%FT%TZ) llama.cpp row, ours with $q weights"
  PYTHONPATH=/tmp/xl .venv/bin/python scripts/llamacpp_row.py --model qwen2.5-coder-0.5b --quantization "$q" \
    --new-tokens 256 --repeats 3 --json "$OUT/llamacpp-qwen0.5b-b1-$q.json"
done
echo "=== $(date -u +%FT%TZ) done"
