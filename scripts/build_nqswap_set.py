"""Build the real-question knowledge-conflict set (NQ-Swap, BM25-retrieved distractors) from its pinned source.

    git --git-dir=/work/.mirror/kushalc+nd-lora/repo show ef0bf6514452:leaderboard/cli/xiaotang/nqswap.zip > nqswap.zip
    python scripts/build_nqswap_set.py --zip nqswap.zip --out ../shared/data/nqswap

Writes ``OUT/conflictqa/{train,test}.jsonl`` (the conflict eval's layout), then evaluate with
``selfanchor eval conflictqa --data-dir OUT --split test ...``. Nothing is fetched here, and the data stays out of
the repository (committed logs hold ids and predictions only).

Source, pinned (the script checks the sha256 before converting): NQ-Swap's ``nqswap/merged.jsonl`` (4,746 rows,
1,667 distinct questions) inside ``leaderboard/cli/xiaotang/nqswap.zip`` of ``kushalc/nd-lora`` @
``ef0bf6514452674d9cdc373825293e533712483b`` (a copy of the Hallucinations Leaderboard, which published it as
``pminervini/NQ-Swap``). Licences: the questions and passages are Natural Questions' (CC BY-SA 3.0, Google); the
entity substitution is Longpre et al. 2021's (``apple/ml-knowledge-conflicts``); the repository holding the zip is
MIT. Attribution: Kwiatkowski et al. 2019 (Natural Questions); Longpre et al. 2021 (Entity-Based Knowledge
Conflicts in Question Answering).

Distractors: the ``k − 1`` passages of other questions that MiniLM (the same embeddings the methods rank with)
puts nearest the question, passing over any that states the item's answer (``--retriever bm25`` for keyword
retrieval instead). The ranker then finds the evidence first on only part of the items, as in real retrieval.

Splits (one seeded shuffle of the usable questions, disjoint): ``train`` 150 conflict + 50 control items (for
choosing settings), ``test`` 300 conflict + 100 control items (the final run).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from collections import Counter
from pathlib import Path

from selfanchor_chains.bench.conflict_builder import write_conflict_set
from selfanchor_chains.bench.nqswap_builder import build_nqswap_set, read_jsonl

ZIP_SHA256 = "01bcbf3897ba138f3716b5ff783326601f7c8ccd6768e2c06fa3ab0aa180ce2f"
SOURCE = "NQ-Swap (kushalc/nd-lora@ef0bf6514452:leaderboard/cli/xiaotang/nqswap.zip, nqswap/merged.jsonl)"
SPLITS = {"train": (150, 50), "test": (300, 100)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--zip", required=True, help="nqswap.zip from the pinned commit")
    parser.add_argument("--out", required=True, help="data folder; files go to OUT/conflictqa/<split>.jsonl")
    parser.add_argument("-k", type=int, default=4, help="passages per item (the evidence and k-1 distractors)")
    parser.add_argument("--max-words", type=int, default=250, help="leave out longer passages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--retriever", choices=("minilm", "bm25"), default="minilm", help="what picks the distractors from the pool"
    )
    args = parser.parse_args(argv)
    data = Path(args.zip).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != ZIP_SHA256:
        raise SystemExit(f"{args.zip}: sha256 {digest} is not the pinned {ZIP_SHA256}; refusing to convert it")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        rows = read_jsonl(archive.read("nqswap/merged.jsonl").decode("utf-8"))
    embeddings = None
    if args.retriever == "minilm":
        from selfanchor_chains.langchain.embeddings import MiniLMEmbeddings

        embeddings = MiniLMEmbeddings()
    splits = build_nqswap_set(
        rows, splits=SPLITS, k=args.k, max_words=args.max_words, seed=args.seed, source=SOURCE, embeddings=embeddings
    )
    for path in write_conflict_set(splits, args.out):
        records = splits[path.stem]
        print(f"{path}: {len(records)} items {dict(Counter(r['kind'] for r in records))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
