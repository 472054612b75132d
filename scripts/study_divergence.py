"""Where a steered variant's text first leaves another variant's on the same item, and what that did to the answer.

    python scripts/study_divergence.py sa-default structure [--bench gsm8k] [--out RUN_FOLDER]

For every item both variants solved, the first character where their texts differ falls in some step (the last step
label before it: Plan, Reasoning or Final Answer); the table counts those steps by outcome (right / wrong under each
variant). Greedy decoding makes the texts identical up to the first token whose choice differs, so this locates
where the steering (or the option) first changed a choice that mattered to the text.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

LABEL = re.compile(r"(?m)^(Plan|Reasoning|Final Answer)\b")


def load(folder: Path, bench: str, variant: str) -> dict[str, dict[str, Any]]:
    path = folder / bench / f"{variant}.jsonl"
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def first_divergence(a: str, b: str) -> int | None:
    """The first index where ``a`` and ``b`` differ (the shorter one's length when one extends the other)."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def step_at(text: str, index: int) -> str:
    """The kind of step whose text holds ``index`` (the text before the first label counts as the first plan)."""
    labels = LABEL.findall(text[:index])
    return labels[-1].lower() if labels else "plan"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant")
    parser.add_argument("other")
    parser.add_argument("--bench", default="gsm8k")
    parser.add_argument("--out", type=Path, default=Path("evals/study/qwen2.5-coder-1.5b-bfloat16"))
    args = parser.parse_args()
    a, b = load(args.out, args.bench, args.variant), load(args.out, args.bench, args.other)
    table: Counter[tuple[str, bool, bool]] = Counter()
    same = 0
    for item in sorted(set(a) & set(b)):
        index = first_divergence(a[item]["text"], b[item]["text"])
        if index is None:
            same += 1
            continue
        table[(step_at(a[item]["text"], index), bool(a[item]["correct"]), bool(b[item]["correct"]))] += 1
    print(f"{args.variant} vs {args.other} on {args.bench}: {same} items with the same text")
    print(f"| first differs in | both right | only {args.variant} | only {args.other} | both wrong |")
    print("| --- | --- | --- | --- | --- |")
    for kind in ("plan", "reasoning", "final answer"):
        cells = [table[(kind, True, True)], table[(kind, True, False)], table[(kind, False, True)]]
        cells.append(table[(kind, False, False)])
        if any(cells):
            print(f"| {kind} | " + " | ".join(map(str, cells)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
