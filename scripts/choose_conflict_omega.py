"""Choose ω of the anchored conflictqa methods on the train split (never on dev).

    python scripts/choose_conflict_omega.py --model qwen2.5-coder-0.5b --limit 90 --grid 1.5,2,3
    python scripts/choose_conflict_omega.py --method rag-anchored-top1 ...   # the same rule for another method

Runs rag-plain and METHOD@ω (default rag-anchored) for each ω of the grid on the first LIMIT train items
(resumable; results in evals/conflictqa-train-<model>-<dtype>/), then applies the rule fixed before any dev run:

    the ω with the highest context-faithful rate on the train conflict items among those whose control accuracy is
    at least plain RAG's minus 2 points; ties go to the smaller ω; if none qualifies, the smallest ω of the grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selfanchor_chains.eval.conflict_methods import make_conflict_chain
from selfanchor_chains.eval.report import load_results
from selfanchor_chains.eval.runner import run_eval

CONTROL_TOLERANCE = 0.02


def rates(records: list[dict[str, Any]]) -> tuple[float, float, int, int]:
    """(context-faithful rate on conflict items, accuracy on control items, n conflict, n control)."""
    conflict = [r for r in records if r.get("kind") == "conflict"]
    control = [r for r in records if r.get("kind") == "control"]
    faithful = sum(bool(r["context_match"]) for r in conflict) / max(len(conflict), 1)
    accuracy = sum(bool(r["context_match"]) for r in control) / max(len(control), 1)
    return faithful, accuracy, len(conflict), len(control)


def choose(results: dict[str, list[dict[str, Any]]], grid: list[float], method: str = "rag-anchored") -> float:
    """The rule of the module docstring."""
    _, plain_control, _, _ = rates(results["rag-plain"])
    qualified = []
    for omega in grid:
        faithful, control, _, _ = rates(results[f"{method}@{omega:g}"])
        if control >= plain_control - CONTROL_TOLERANCE - 1e-9:
            qualified.append((-faithful, omega))
    return min(qualified)[1] if qualified else min(grid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--grid", default="1.5,2,3")
    parser.add_argument("--method", default="rag-anchored", help="the anchored method whose ω is chosen")
    parser.add_argument("--limit", type=int, default=90)
    parser.add_argument("--data-dir", default="evals/data")
    parser.add_argument("--out", default=None)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    grid = [float(x) for x in args.grid.split(",")]
    out = Path(args.out or f"evals/conflictqa-train-{args.model}-{args.dtype}")
    methods = ["rag-plain", *(f"{args.method}@{w:g}" for w in grid)]

    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM.from_model_id(args.model, dtype=args.dtype)
    run_eval(
        "conflictqa",
        methods,
        lambda method, bench: make_conflict_chain(method, llm),
        out,
        limit=args.limit,
        data_dir=args.data_dir,
        split="train",
        batch_size=args.batch,
        model_name=f"{args.model}@{args.dtype}",
        dtype=args.dtype,
        command="python scripts/choose_conflict_omega.py " + " ".join(argv or []),
    )
    results = load_results(out)["conflictqa"]
    print(f"{'method':<22} {'faithful (conflict)':>20} {'control acc':>12} {'n':>8}")
    for method in methods:
        faithful, control, n_conflict, n_control = rates(results[method])
        print(f"{method:<22} {100 * faithful:>19.1f}% {100 * control:>11.1f}% {n_conflict:>4}+{n_control:<3}")
    print(f"chosen ω = {choose(results, grid, args.method):g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
