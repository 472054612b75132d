"""Derive screened variants from sa-default's per-item logs where decoding them cannot differ (results/study/README.md,
session 8): the record is sa-default's (marked ``derived_from``) on every item where the variant's one change never
comes into play; the items left are decoded as usual (the runner skips the items already in a variant's log).

    python scripts/study_derive.py                 # write the derived records, name the items left to decode
    python scripts/study_derive.py --check         # only say what would be derived

A variant's log that already exists is left alone (the derivation runs before the variant is decoded).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = Path("evals/study/qwen2.5-coder-1.5b-bfloat16")
SOURCE = "sa-default"

Record = dict[str, Any]


def _no_retry(record: Record) -> str | None:
    if record.get("retried"):
        return None
    return "sa-default did not retry the format, so format_retries=0 decodes the same"


def _final_none(record: Record) -> str | None:
    finals = [s for s in record.get("steps") or [] if s.get("kind") == "final"]
    if any(s.get("changed") for s in finals):
        return None
    return "no token of the final-answer line was steered to another choice, so ω = 1 there decodes the same"


def _midline(record: Record) -> str | None:
    from selfanchor_chains.reasoning.steps import StepMarkers, marker_pattern

    markers = StepMarkers()
    text = record.get("text") or ""
    at_line_start = [m.span() for m in marker_pattern(markers).finditer(text)]
    with_midline = [m.span() for m in marker_pattern(markers, midline=True).finditer(text)]
    if at_line_start != with_midline:
        return None
    return "the text has no label inside a line, so mid-line detection finds the same steps"


def _unsteered_final(record: Record) -> Record:
    """A final-answer line decoded at ω = 1: the steered logits are the original ones."""
    steps = [dict(s, omega=1.0, kl=0.0, changed=0) if s.get("kind") == "final" else s for s in record["steps"]]
    return {**record, "steps": steps}


DERIVABLE: dict[str, tuple[Callable[[Record], str | None], Callable[[Record], Record]]] = {
    "sa-noretry": (_no_retry, lambda r: r),
    "sa-final-none": (_final_none, _unsteered_final),
    "sa-midline": (_midline, lambda r: r),
}


def derive(out: Path, variant: str, *, write: bool) -> tuple[int, list[str]]:
    """Derived records written (or that would be) and the item ids left to decode."""
    source = [json.loads(line) for line in (out / "gsm8k" / f"{SOURCE}.jsonl").read_text().splitlines() if line]
    holds, rewrite = DERIVABLE[variant]
    derived, left = [], []
    for record in source:
        reason = holds(record)
        if reason is None:
            left.append(record["id"])
            continue
        derived.append({**rewrite(record), "method": variant, "derived_from": SOURCE, "derivation": reason})
    target = out / "gsm8k" / f"{variant}.jsonl"
    if write:
        if target.exists():
            raise SystemExit(f"{target} exists: {variant} was decoded (or derived) already; nothing written")
        target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in derived))
    return len(derived), left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="say what would be derived; write nothing")
    parser.add_argument("--variants", default=",".join(DERIVABLE))
    args = parser.parse_args()
    for variant in [v for v in args.variants.split(",") if v]:
        if variant not in DERIVABLE:
            raise SystemExit(f"{variant!r} is not derivable; choose from {', '.join(DERIVABLE)}")
        n, left = derive(args.out, variant, write=not args.check)
        print(f"{variant}: {n} records from {SOURCE}; {len(left)} left to decode: {', '.join(left) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
