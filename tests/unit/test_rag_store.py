"""The persistent FAISS store of the RAG helpers: built once, reopened from disk, rebuilt when the corpus changes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.embeddings.fake import DeterministicFakeEmbedding

from selfanchor_chains.reasoning.rag import build_retriever, faiss_vector_store

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None or importlib.util.find_spec("langchain_community") is None,
    reason="pip install 'selfanchor-chains[rag]'",
)


class CountingEmbedding(Embeddings):
    """Hash-seeded vectors (the same text always gets the same vector) that count the documents embedded."""

    def __init__(self, size: int) -> None:
        self.inner = DeterministicFakeEmbedding(size=size)
        self.documents_embedded = 0

    def __repr__(self) -> str:  # what identifies the model in the index manifest
        return f"CountingEmbedding({self.inner.size})"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents_embedded += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


PASSAGES = [Document(page_content=text, id=str(i)) for i, text in enumerate(("Paris is in France.", "Lima", "Oslo"))]


def test_index_is_saved_and_reopened_without_re_embedding(tmp_path: Path) -> None:
    embeddings = CountingEmbedding(size=16)
    store = faiss_vector_store(PASSAGES, embeddings, tmp_path / "index")
    assert embeddings.documents_embedded == 3
    assert (tmp_path / "index" / "index.faiss").is_file()
    reopened = faiss_vector_store(PASSAGES, embeddings, tmp_path / "index")
    assert embeddings.documents_embedded == 3  # loaded from disk
    assert type(reopened) is type(store)
    assert reopened.similarity_search("Lima", k=1)[0].page_content == "Lima"


def test_changed_corpus_or_rebuild_re_embeds(tmp_path: Path) -> None:
    embeddings = CountingEmbedding(size=16)
    faiss_vector_store(PASSAGES, embeddings, tmp_path)
    faiss_vector_store([*PASSAGES, Document(page_content="Rome", id="3")], embeddings, tmp_path)
    assert embeddings.documents_embedded == 3 + 4
    faiss_vector_store(PASSAGES, embeddings, tmp_path, rebuild=True)
    assert embeddings.documents_embedded == 3 + 4 + 3


def test_persistent_retriever(tmp_path: Path) -> None:
    retriever = build_retriever(PASSAGES, CountingEmbedding(size=16), k=2, persist_dir=tmp_path)
    found = retriever.invoke("Oslo")
    assert len(found) == 2 and found[0].page_content == "Oslo" and found[0].id == "2"
    with pytest.raises(ValueError, match="at least one passage"):
        faiss_vector_store([], CountingEmbedding(size=16), tmp_path / "empty")


@pytest.mark.parametrize("method", ["self-anchor", "structure-only", "cot", "ps"])
def test_rag_reasoners_show_no_worked_example_unless_asked(tiny_model, byte_tokenizer, method: str) -> None:  # type: ignore[no-untyped-def]
    # The worked example solves a problem without passages; the RAG results were measured without it, whatever
    # SelfAnchorChain's closed-book default is.
    from selfanchor_chains import SteeredHFLLM
    from selfanchor_chains.reasoning.rag import make_reasoner

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    assert make_reasoner(method, llm, bench="strategyqa").worked_example is False
    assert make_reasoner(method, llm, bench="strategyqa", worked_example=True).worked_example is True
