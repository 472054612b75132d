#!/bin/bash
# Accuracy cost of weight-only int8 / int4 (issue #11): GSM8K dev, CoT, Qwen2.5-Coder-1.5B, bfloat16 vs int8 vs
# int4 weights, grown in stages (32, 64, 100 items) so that every stage is paired across the three. Resumable:
# run it again and finished items are skipped. Report: selfanchor report evals/quant-int8 (etc.).
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
for limit in 32 64 100; do
  for q in bf16 int8 int4; do
    if [ "$q" = bf16 ]; then extra="--dtype bfloat16"; else extra="--quantization $q"; fi
    echo "=== $(date -u +%FT%TZ) limit $limit $q"
    .venv/bin/selfanchor eval gsm8k --methods cot --limit $limit --model qwen2.5-coder-1.5b --batch 8 \
      --max-new-tokens 512 --no-progress $extra --out evals/quant-$q
  done
done
echo "=== $(date -u +%FT%TZ) done"
