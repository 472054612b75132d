#!/bin/bash
# Accuracy cost of weight-only int8 / int4 (issue #11): GSM8K dev, CoT, bfloat16 vs int8 vs int4 weights, grown in
# stages (32, 64, 100 items) so that every stage is paired across the three. Resumable: run it again and finished
# items are skipped.
#   bash scripts/run_quant_accuracy.sh [MODEL]        # default qwen2.5-coder-0.5b (the speed table's model)
#   python scripts/quant_accuracy_table.py evals/quant-MODEL-bf16 evals/quant-MODEL-int8 evals/quant-MODEL-int4
cd "$(dirname "$0")/.."
MODEL=${1:-qwen2.5-coder-0.5b}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
for limit in 32 64 100; do
  for q in bf16 int8 int4; do
    if [ "$q" = bf16 ]; then extra="--dtype bfloat16"; else extra="--quantization $q"; fi
    echo "=== $(date -u +%FT%TZ) $MODEL limit $limit $q"
    .venv/bin/selfanchor eval gsm8k --methods cot --limit $limit --model "$MODEL" --batch 8 \
      --max-new-tokens 512 --no-progress $extra --out "evals/quant-$MODEL-$q"
  done
done
echo "=== $(date -u +%FT%TZ) done"
