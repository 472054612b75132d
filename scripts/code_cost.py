"""Steered cost vs plain on the code prompts, side by side in one process: the same MBPP train problems decoded by
code-plain and code-anchored (batch 8, continuous batching, the code budget), alternating, on a quiet machine.

    python scripts/code_cost.py --problems 16 --rounds 2 --json results/code/cost-qwen2.5-coder-0.5b.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from selfanchor_chains import SteeredHFLLM
from selfanchor_chains.eval.code_methods import chain_input, make_code_chain
from selfanchor_chains.eval.datasets import load_problems


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="plain / anchored alternations")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--anchored", default="code-anchored@1.5")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    llm = SteeredHFLLM.from_model_id(args.model, batch_size=args.batch)
    inputs = [chain_input(p) for p in load_problems("mbpp", split="train", limit=args.problems)]
    make_code_chain("code-plain", llm, max_new_tokens=8).batch(inputs[:2])  # warm-up
    runs: dict[str, list[dict[str, float]]] = {"code-plain": [], args.anchored: []}
    for _ in range(args.rounds):
        for method in runs:
            chain = make_code_chain(method, llm)
            start = time.perf_counter()
            outputs = chain.batch(inputs)
            seconds = time.perf_counter() - start
            tokens = sum(int(o["usage"]["completion_tokens"] or 0) for o in outputs)
            runs[method].append({"seconds": seconds, "tokens": tokens})
            print(f"{method}: {seconds:.1f} s, {tokens} tokens, {tokens / seconds:.1f} tokens/s", flush=True)
    plain, anchored = (sum(r["seconds"] for r in runs[m]) for m in runs)
    plain_t, anchored_t = (sum(r["tokens"] for r in runs[m]) for m in runs)
    summary = {
        "model": args.model,
        "problems": args.problems,
        "batch": args.batch,
        "rounds": args.rounds,
        "runs": runs,
        "time_ratio": anchored / plain,
        "per_token_ratio": (anchored / anchored_t) / (plain / plain_t),
    }
    print(f"time ratio {summary['time_ratio']:.2f}; per generated token {summary['per_token_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
