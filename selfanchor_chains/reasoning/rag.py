"""Retrieval-augmented reasoning with anchored passages.

The chain: ``anchored_retrieval(retriever) | SelfAnchorChain(llm=llm)``. Retrieved Documents become anchored (and
escaped) context, so while the model plans and reasons its attention is steered back to the passages as well as the
question. :func:`anchored_rag_chain` builds it (or the same pipeline with any other reasoning method, e.g. plain CoT
as the unsteered baseline). :func:`build_retriever` indexes passages in memory, or in a FAISS index on disk that is
built once and reopened (:func:`faiss_vector_store`, the ``rag`` extra). The evaluation harness that measures it is
:mod:`selfanchor_chains.bench.rag_compare`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from .methods import METHODS

RAG_METHODS = METHODS
"""Reasoning methods that can read retrieved context (the names of ``selfanchor eval``)."""

PASSAGE_ID_KEY = "passage_id"
"""Document metadata key holding a passage's id in :func:`strategyqa_rag_set` corpora."""


def build_retriever(
    passages: Sequence[Document],
    embeddings: Embeddings | None = None,
    *,
    k: int = 3,
    persist_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Index passages and return the store's top-``k`` retriever.

    Args:
        passages: The corpus.
        embeddings: Embedding model; default :class:`~selfanchor_chains.langchain.embeddings.MiniLMEmbeddings`.
        k: Passages per query.
        persist_dir: A folder for a persistent FAISS index (:func:`faiss_vector_store`: built once, reopened
            afterwards); None keeps the index in memory (langchain-core's ``InMemoryVectorStore``).

    Returns:
        A ``VectorStoreRetriever`` (a LangChain runnable: question string -> list of Documents).

    Raises:
        ValueError: ``k`` < 1.
        MiniLMNotInstalledError: No ``embeddings`` given and the MiniLM package is missing.
        ImportError: ``persist_dir`` given and FAISS / langchain-community are missing.
    """
    from langchain_core.vectorstores import InMemoryVectorStore

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if embeddings is None:
        from ..langchain.embeddings import MiniLMEmbeddings

        embeddings = MiniLMEmbeddings()
    if persist_dir is not None:
        return faiss_vector_store(passages, embeddings, persist_dir).as_retriever(search_kwargs={"k": k})
    store = InMemoryVectorStore(embedding=embeddings)
    if passages:
        store.add_documents(list(passages))
    return store.as_retriever(search_kwargs={"k": k})


_FAISS_MANIFEST = "selfanchor-manifest.json"


def _corpus_digest(passages: Sequence[Document], embeddings: Embeddings) -> str:
    import hashlib
    import json

    payload = [repr(embeddings), [[d.id, d.page_content, d.metadata] for d in passages]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def faiss_vector_store(
    passages: Sequence[Document], embeddings: Embeddings, path: str | os.PathLike[str], *, rebuild: bool = False
) -> Any:
    """A FAISS vector store of ``passages`` persisted in ``path``: built and saved once, reopened afterwards.

    The folder holds FAISS's own ``index.faiss`` / ``index.pkl`` (so ``FAISS.load_local`` opens it too) and a
    manifest with a digest of the passages and the embedding model; when they change, the index is rebuilt.
    ``index.pkl`` is a pickle: point ``path`` only at folders this function wrote, never at one from elsewhere.

    Args:
        passages: The corpus (at least one passage).
        embeddings: The embedding model.
        path: The index folder (created if missing).
        rebuild: Rebuild even when the folder holds an index of the same corpus.

    Returns:
        A ``langchain_community.vectorstores.FAISS`` store.

    Raises:
        ValueError: No passages.
        ImportError: ``faiss-cpu`` or ``langchain-community`` is not installed (``pip install
            'selfanchor-chains[rag]'``).
    """
    import json
    import warnings
    from pathlib import Path

    if not passages:
        raise ValueError("a FAISS index needs at least one passage")
    try:
        with warnings.catch_warnings():  # langchain-community warns on import that it is being sunset
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_community.vectorstores import FAISS
        import faiss  # noqa: F401  (langchain-community imports it lazily; fail here with the install hint)
    except ImportError as exc:
        raise ImportError("the persistent vector store needs FAISS: pip install 'selfanchor-chains[rag]'") from exc
    folder = Path(path)
    digest = _corpus_digest(passages, embeddings)
    manifest = folder / _FAISS_MANIFEST
    if not rebuild and (folder / "index.faiss").is_file() and manifest.is_file():
        try:
            saved = json.loads(manifest.read_text(encoding="utf-8")).get("digest")
        except (OSError, ValueError):
            saved = None
        if saved == digest:
            return FAISS.load_local(str(folder), embeddings, allow_dangerous_deserialization=True)
    store = FAISS.from_documents(list(passages), embeddings)
    folder.mkdir(parents=True, exist_ok=True)
    store.save_local(str(folder))
    manifest.write_text(json.dumps({"digest": digest, "passages": len(passages)}) + "\n", encoding="utf-8")
    return store


def make_reasoner(method: str, llm: Any, *, bench: str | None = None, **chain_kwargs: Any) -> Any:
    """The reasoning chain of a method, set up for retrieved context.

    Self-Anchor (and its ablations, and SPA) anchor the passages; CoT and PS+ read them as plain text, since they do
    not steer (with ω = 1 an anchor would change nothing but the cache key). No method shows the worked example
    unless ``worked_example=True`` is passed: it solves a problem without passages.

    Args:
        method: One of :data:`RAG_METHODS`.
        llm: A :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM`.
        bench: Benchmark name for the answer-format hint and the answer extractor (None: free-form answers).
        **chain_kwargs: Further fields of the chain (``max_new_tokens``, ``schedule``, ...).

    Raises:
        ValueError: Unknown method.
    """
    from .methods import PROMPTED_METHODS, make_chain

    if method not in RAG_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(RAG_METHODS)}")
    chain_kwargs.setdefault("anchor_context", method not in PROMPTED_METHODS)
    # The worked example solves a problem without passages; every method reads retrieved context without one
    # unless asked (the RAG and knowledge-conflict results were measured that way).
    chain_kwargs.setdefault("worked_example", False)
    return make_chain(method, llm, bench=bench, **chain_kwargs)


def anchored_rag_chain(
    retriever: Any,
    llm: Any,
    *,
    method: str = "self-anchor",
    bench: str | None = None,
    include_context: bool = False,
    anchor_top: int | None = None,
    **chain_kwargs: Any,
) -> Any:
    """``anchored_retrieval(retriever) | <reasoning chain>``: RAG whose passages are anchored while it reasons.

    Input: ``{"question": ...}`` (other keys such as ``task`` pass through). Output: the reasoning chain's dict
    (``answer``, ``text``, ``steps``, ``finish_reason``, ``usage``, ...), plus ``context`` (the retrieved
    Documents) when ``include_context`` is true.

    Args:
        retriever: Any LangChain retriever / runnable from a question string to Documents.
        llm: A :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM`.
        method: ``"self-anchor"`` (default) or another of :data:`RAG_METHODS` (``"cot"``: the unsteered baseline).
        bench: Benchmark name for answer extraction (``"strategyqa"`` for yes/no).
        include_context: Add the retrieved Documents to the output.
        anchor_top: Anchor only the retriever's first ``anchor_top`` Documents (the rest stay plain context).
            Anchoring every passage also amplifies the distractors among them; on the knowledge-conflict set,
            anchoring only the top-ranked one kept control accuracy higher and was as faithful or more on dev, but
            it costs more (the masked branch recomputes the passages after it; ``results/conflictqa/README.md``).
            None: all.
        **chain_kwargs: Further fields of the reasoning chain.

    Raises:
        ValueError: ``anchor_top`` < 1, or an unknown method.

    Example:
        .. code-block:: python

            retriever = build_retriever(passages, k=3, persist_dir="rag-index")  # FAISS on disk, reopened next time
            chain = anchored_rag_chain(retriever, SteeredHFLLM.from_model_id("qwen2.5-coder-0.5b"))
            chain.invoke({"question": "Could a llama birth twice during the War in Vietnam?"})["answer"]
    """
    from langchain_core.runnables import RunnableLambda, RunnableParallel

    from .retrieval import anchored_retrieval

    if anchor_top is not None:
        if isinstance(anchor_top, bool) or anchor_top < 1:
            raise ValueError(f"anchor_top must be a positive number of documents, got {anchor_top!r}")
        chain_kwargs["anchor_context"] = anchor_top
    reasoner = make_reasoner(method, llm, bench=bench, **chain_kwargs)
    if not include_context:
        return anchored_retrieval(retriever) | reasoner
    both = RunnableParallel(output=reasoner, context=RunnableLambda(lambda x: x["context"]))
    return anchored_retrieval(retriever) | both | RunnableLambda(lambda d: {**d["output"], "context": d["context"]})
