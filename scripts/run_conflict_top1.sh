#!/usr/bin/env bash
# Issue #18, session 6: rag-anchored-top1 on one model — ω by the train rule (first 60 train items), then the fresh
# train items (the first 204; report items 61-204, on which nothing was chosen) and the dev items (450), all
# resumable. Usage: bash scripts/run_conflict_top1.sh qwen2.5-coder-1.5b
set -eu
MODEL=${1:-qwen2.5-coder-0.5b}
export HF_HUB_OFFLINE=1
PY=.venv/bin/python
S=.venv/bin/selfanchor
COMMON="--model $MODEL --dtype bfloat16 --data-dir evals/data --batch 8 --max-new-tokens 256 --no-progress"
OMEGA=$($PY scripts/choose_conflict_omega.py --method rag-anchored-top1 --model "$MODEL" --limit 60 | tee /dev/stderr \
  | sed -n 's/^chosen ω = //p')
TOP1=rag-anchored-top1
[ "$OMEGA" = "1.5" ] || TOP1="rag-anchored-top1@$OMEGA"
echo "top1 method: $TOP1"
$S eval conflictqa --methods rag-plain,rag-instructed,rag-anchored,$TOP1 --split train --limit 204 \
  --out "evals/conflictqa-fresh-$MODEL" $COMMON
$S eval conflictqa --methods rag-plain,rag-anchored,rag-instructed,closed-book:152,$TOP1 --limit 450 \
  --out "evals/conflictqa-$MODEL" $COMMON
echo ALLDONE
