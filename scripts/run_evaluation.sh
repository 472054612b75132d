#!/usr/bin/env bash
# The evaluation behind results/eval-*: Qwen2.5-Coder-1.5B, bf16, greedy, 512 new tokens, batch 8.
# Resumable: every command skips the items already in $OUT, so re-running after an interruption continues.
# About 8 hours of decoding on this project's 2-core CPU; run it in the background on an otherwise idle machine:
#   nohup bash scripts/run_evaluation.sh > logs/evaluation.log 2>&1 &
# (SA=path/to/selfanchor and OUT=folder override the defaults, e.g. to run a frozen checkout of the code.)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
OUT=${OUT:-evals/qwen2.5-coder-1.5b-bfloat16}
SA=${SA:-.venv/bin/selfanchor}
COMMON=(--model qwen2.5-coder-1.5b --batch 8 --max-new-tokens 512 --out "$OUT" --no-progress)
# 1. The main table: GSM8K, Self-Anchor against CoT and Plan-and-Solve+.
$SA eval gsm8k --methods self-anchor,cot,ps --limit 200 "${COMMON[@]}"
# 2. The other five benchmarks: Self-Anchor against CoT (BBH round-robin over its tasks); first 32 items of each,
#    so that an interrupted run has covered every benchmark.
$SA eval aqua,math500,strategyqa,t4d,bbh --methods self-anchor,cot --limit 32 "${COMMON[@]}"
# 3. The other five benchmarks up to 60 items each.
$SA eval aqua,math500,strategyqa,t4d,bbh --methods self-anchor,cot --limit 60 "${COMMON[@]}"
# 4. Ablations on GSM8K: Self-Anchor's structure without steering, SPA's constant anchoring of the question, and
#    Self-Anchor with a constant ω.
$SA eval gsm8k --methods structure-only,spa,constant-omega --limit 100 "${COMMON[@]}"
$SA report "$OUT"
