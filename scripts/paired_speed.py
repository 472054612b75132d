"""Eval throughput side by side: problems/min of two methods on the items both completed, per benchmark and pooled.

`selfanchor eval` runs the methods on the same batches one after the other, so on the items one command ran for
both methods the ratio of their seconds is a side-by-side measure. Pick benchmarks (and skip items) that were run
that way; items resumed from another run, on a busier machine, are not comparable.

    python scripts/paired_speed.py evals/qwen2.5-coder-1.5b-bfloat16 --benches aqua,math500,strategyqa,t4d,bbh \
        --skip-first aqua:24
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from selfanchor_chains.eval.report import load_results, paired_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the selfanchor eval output folder")
    parser.add_argument("--benches", required=True, help="comma-separated benchmarks to pool")
    parser.add_argument("--reference", default="self-anchor")
    parser.add_argument("--baseline", default="cot")
    parser.add_argument(
        "--skip-first",
        action="append",
        default=[],
        metavar="BENCH:N",
        help="leave out the first N items the baseline completed on BENCH (e.g. ones made by an earlier run)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    skip = {bench: int(n) for bench, n in (s.split(":") for s in args.skip_first)}
    results = load_results(args.out)
    rows: list[dict[str, Any]] = []
    for bench in args.benches.split(","):
        by_method = results.get(bench, {})
        if args.reference not in by_method or args.baseline not in by_method:
            raise SystemExit(f"{bench}: no results for both {args.reference} and {args.baseline} in {args.out}")
        pairs = paired_records(by_method[args.reference], by_method[args.baseline][skip.get(bench, 0) :])
        row: dict[str, Any] = {"bench": bench, "n": len(pairs)}
        for name, side in ((args.reference, 0), (args.baseline, 1)):
            records = [pair[side] for pair in pairs]
            row[name] = {
                "seconds": sum(float(r.get("seconds") or 0.0) for r in records),
                "tokens": sum(int(r.get("tokens") or 0) for r in records),
            }
        rows.append(row)

    def line(label: str, n: int, ref: dict[str, float], base: dict[str, float]) -> str:
        per_min = [60 * n / part["seconds"] if part["seconds"] else float("nan") for part in (ref, base)]
        ratio = ref["seconds"] / base["seconds"] if base["seconds"] else float("nan")
        return f"| {label} | {n} | {per_min[0]:.2f} | {per_min[1]:.2f} | {ratio:.3f} |"

    print(f"| benchmark | n | {args.reference} problems/min | {args.baseline} problems/min | time ratio |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(line(row["bench"], row["n"], row[args.reference], row[args.baseline]))
    pooled = {
        name: {key: sum(r[name][key] for r in rows) for key in ("seconds", "tokens")}
        for name in (args.reference, args.baseline)
    }
    total = sum(r["n"] for r in rows)
    print(line("pooled", total, pooled[args.reference], pooled[args.baseline]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"out": args.out, "rows": rows, "pooled": {"n": total, **pooled}}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
