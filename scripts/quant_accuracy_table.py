"""Accuracy cost of int8 / int4 weights against bfloat16, paired on the items every folder has (issue #11).

    python scripts/quant_accuracy_table.py [--bench gsm8k] [--method cot] evals/quant-bf16 evals/quant-int8 ...

The first folder is the reference. Prints a Markdown table: n (items all folders have), accuracy with its Wilson
interval, and the paired difference to the reference (bootstrap interval, exact McNemar p with b / c counts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selfanchor_chains.eval.stats import mcnemar_exact, paired_bootstrap, wilson_interval
from selfanchor_chains.eval.store import read_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="eval folders; the first is the reference")
    parser.add_argument("--bench", default="gsm8k")
    parser.add_argument("--method", default="cot")
    args = parser.parse_args()
    correct: dict[Path, dict[str, bool]] = {}
    for folder in args.folders:
        path = folder / args.bench / f"{args.method}.jsonl"
        records = read_records(path) if path.is_file() else []
        correct[folder] = {r["id"]: bool(r["correct"]) for r in records}
    common = sorted(set.intersection(*(set(c) for c in correct.values())))
    print(f"{args.bench}, {args.method}: {len(common)} items in every folder")
    print("| weights | n | accuracy % [Wilson 95%] | Δ vs reference, points [bootstrap 95%] | McNemar p (b / c) |")
    print("| --- | --- | --- | --- | --- |")
    reference = [correct[args.folders[0]][i] for i in common]
    for folder in args.folders:
        row = [correct[folder][i] for i in common]
        if not row:
            print(f"| {folder.name} | 0 | – | – | – |")
            continue
        k = sum(row)
        low, high = wilson_interval(k, len(row)) or (0.0, 0.0)
        cell = f"{100 * k / len(row):.1f} [{100 * low:.1f}, {100 * high:.1f}]"
        if folder == args.folders[0]:
            print(f"| {folder.name} (reference) | {len(row)} | {cell} | – | – |")
            continue
        diff, lo, hi = paired_bootstrap(row, reference, key=folder.name)
        b = sum(1 for x, y in zip(row, reference, strict=True) if x and not y)
        c = sum(1 for x, y in zip(row, reference, strict=True) if y and not x)
        print(
            f"| {folder.name} | {len(row)} | {cell} | {100 * diff:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | "
            f"{mcnemar_exact(b, c):.2f} ({b} / {c}) |"
        )


if __name__ == "__main__":
    main()
