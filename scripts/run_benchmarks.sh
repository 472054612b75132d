#!/usr/bin/env bash
# Speed and cost benchmarks behind the numbers in results/; each command prints its ratios and writes JSON.
# Run on an otherwise idle machine: methods are interleaved, but another busy process still skews them.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
OUT=${OUT:-results/bench}
mkdir -p "$OUT"
SA=.venv/bin/selfanchor
$SA bench speed --model qwen2.5-coder-0.5b --new-tokens 256 --batch 1 --repeats 3 --json "$OUT/speed_qwen05_b1.json"
$SA bench speed --model smollm2-135m --new-tokens 256 --batch 1 --repeats 3 --json "$OUT/speed_smollm2_b1.json"
$SA bench llm-overhead --model qwen2.5-coder-0.5b --new-tokens 256 --repeats 3 --json "$OUT/llm_overhead_qwen05.json"
$SA bench solve-cost --model qwen2.5-coder-0.5b --problems 10 --json "$OUT/solve_cost_qwen05.json"
$SA bench speed --model qwen2.5-coder-0.5b --new-tokens 256 --batch 8 --repeats 1 --json "$OUT/speed_qwen05_b8.json"
$SA bench speed --model smollm2-135m --new-tokens 256 --batch 8 --repeats 2 --json "$OUT/speed_smollm2_b8.json"
