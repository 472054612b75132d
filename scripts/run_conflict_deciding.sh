#!/usr/bin/env bash
# Issue #34, item 6: the deciding baselines on the synthetic `conflictqa` dev set, beside the committed results of
# issue #18 (results/conflictqa/MODEL/): `rag-top1-only` (plain RAG given only the ranker's first passage) and
# `rag-top1-last` (all passages, the ranker's first placed last). The committed logs are unpacked into a fresh folder
# first, so the new methods are paired with rag-plain / rag-anchored-top1 on the same 450 items (same settings as
# those runs: bf16, batch 8, static batches, at most 256 new tokens). Resumable.
# Usage: bash scripts/run_conflict_deciding.sh qwen2.5-coder-0.5b
set -eu
MODEL=${1:-qwen2.5-coder-0.5b}
export HF_HUB_OFFLINE=1
S=${SELFANCHOR:-.venv/bin/selfanchor}
OUT="evals/conflictqa-deciding-$MODEL"
PYTHONPATH=scripts ${PYTHON:-.venv/bin/python} -c "import sys; from pathlib import Path; from study_logs import restore_logs
restore_logs({sys.argv[1]: Path(sys.argv[2])}, Path('results/conflictqa'))" "$MODEL" "$OUT/conflictqa"
$S eval conflictqa --methods rag-top1-only,rag-top1-last --limit 450 --model "$MODEL" --dtype bfloat16 \
  --data-dir evals/data --batch 8 --max-new-tokens 256 --no-progress --out "$OUT"
$S report "$OUT" --reference rag-anchored-top1
