"""Copy the per-item records of an eval folder whose item number lies in [--start, --end) into a new folder, so that
``selfanchor report`` can be run on a slice of items (e.g. the items no choice was made on).

    python scripts/eval_subset.py evals/conflictqa-fresh-qwen2.5-coder-0.5b evals/fresh-61-204 --start 60 --end 204
    selfanchor report evals/fresh-61-204 --reference rag-anchored-top1

Item numbers are the last part of the ids (``conflictqa/train/0060`` is item 60, counted from 0); run.json is
copied as it is.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def item_number(line: str) -> int:
    import json

    return int(str(json.loads(line)["id"]).rsplit("/", 1)[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("dest")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--end", type=int, default=None)
    args = parser.parse_args(argv)
    source, dest = Path(args.source), Path(args.dest)
    if dest.exists():
        raise SystemExit(f"{dest} exists; choose a new folder")
    for path in sorted(source.glob("*/*.jsonl")):
        lines = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and args.start <= item_number(line) and (args.end is None or item_number(line) < args.end)
        ]
        target = dest / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        print(f"{target}: {len(lines)} records")
    if (source / "run.json").is_file():
        shutil.copy(source / "run.json", dest / "run.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
