"""Convert HumanEval and MBPP from their public sources into the data folder's layout (nothing is fetched here).

    python scripts/build_code_data.py --human-eval HumanEval.jsonl.gz --mbpp mbpp.jsonl --out ../shared/data

Writes ``OUT/humaneval/test.jsonl`` (164 problems) and ``OUT/mbpp/{prompt,test,validation,train}.jsonl`` (MBPP's
own split by task id: 1–10 prompt, 11–510 test, 511–600 validation, 601–974 train). The data stays out of the
repository; this script is how it is made again.

Sources, pinned (the script checks the sha256 of each input before converting it):

- HumanEval: ``openai/human-eval`` @ ``6d43fb980f9fee3c892a914eda09951f772ad10d``, ``data/HumanEval.jsonl.gz``;
  licence MIT (Copyright (c) OpenAI).
- MBPP: ``google-research/google-research`` ``mbpp/mbpp.jsonl`` (licence CC BY 4.0, as that folder's README
  states), taken from the verbatim copy in ``OckBench/OckBench`` @ ``b72752a0ba5989d3c212675ec60d3eedcd838628``,
  ``data/mbpp.jsonl`` (the google-research repository is too large to bring here whole); 974 tasks.

Record format (what :func:`selfanchor_chains.eval.datasets.load_problems` reads): ``id``, ``question`` (HumanEval:
the function signature and docstring; MBPP: the problem text), ``answer`` (the reference solution, never shown to
a model), and the fields needed to run the tests: ``entry_point`` and ``test`` (HumanEval), ``test_list``,
``test_setup_code`` and ``challenge_test_list`` (MBPP), plus ``source``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

HUMAN_EVAL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
MBPP_SHA256 = "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f"
HUMAN_EVAL_SOURCE = "openai/human-eval@6d43fb980f9f:data/HumanEval.jsonl.gz"
MBPP_SOURCE = "google-research/google-research:mbpp/mbpp.jsonl (via OckBench/OckBench@b72752a0ba59:data/mbpp.jsonl)"
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}


def _checked_bytes(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{path}: sha256 {digest} is not the pinned {sha256}; refusing to convert another file")
    return data


def human_eval_records(path: Path) -> list[dict[str, Any]]:
    text = gzip.decompress(_checked_bytes(path, HUMAN_EVAL_SHA256)).decode("utf-8")
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        records.append(
            {
                "id": item["task_id"],
                "question": item["prompt"],
                "answer": item["canonical_solution"],
                "entry_point": item["entry_point"],
                "test": item["test"],
                "source": HUMAN_EVAL_SOURCE,
            }
        )
    if len(records) != 164:
        raise SystemExit(f"expected 164 HumanEval problems, got {len(records)}")
    return records


def mbpp_splits(path: Path) -> dict[str, list[dict[str, Any]]]:
    items = [json.loads(line) for line in _checked_bytes(path, MBPP_SHA256).decode("utf-8").splitlines() if line]
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in MBPP_SPLITS}
    for item in items:
        task = int(item["task_id"])
        split = next(name for name, (lo, hi) in MBPP_SPLITS.items() if lo <= task <= hi)
        splits[split].append(
            {
                "id": f"mbpp/{task}",
                "question": item["text"],
                "answer": item["code"].replace("\r\n", "\n"),
                "test_list": item["test_list"],
                "test_setup_code": item["test_setup_code"],
                "challenge_test_list": item["challenge_test_list"],
                "source": MBPP_SOURCE,
            }
        )
    sizes = {name: len(records) for name, records in splits.items()}
    if sizes != {"prompt": 10, "test": 500, "validation": 90, "train": 374}:
        raise SystemExit(f"unexpected MBPP split sizes {sizes}")
    return splits


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)  # never a half-written data file
    print(f"{path}: {len(records)} problems")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--human-eval", type=Path, required=True, help="HumanEval.jsonl.gz of openai/human-eval")
    parser.add_argument("--mbpp", type=Path, required=True, help="mbpp.jsonl (974 tasks)")
    parser.add_argument("--out", type=Path, default=Path("../shared/data"))
    args = parser.parse_args(argv)
    human_eval = human_eval_records(args.human_eval)
    mbpp = mbpp_splits(args.mbpp)
    _write(args.out / "humaneval" / "test.jsonl", human_eval)
    for split, records in mbpp.items():
        _write(args.out / "mbpp" / f"{split}.jsonl", records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
