"""Retrieval-augmented reasoning with anchored passages, and a small QA set to measure it on.

The chain: ``anchored_retrieval(retriever) | SelfAnchorChain(llm=llm)``. Retrieved Documents become anchored (and
escaped) context, so while the model plans and reasons its attention is steered back to the passages as well as the
question. :func:`anchored_rag_chain` builds it (or the same pipeline with any other reasoning method, e.g. plain CoT
as the unsteered baseline). :func:`build_retriever` indexes passages in memory, or in a FAISS index on disk that is
built once and reopened (:func:`faiss_vector_store`, the ``rag`` extra).

The QA set (:func:`strategyqa_rag_set`) is made from public StrategyQA items in the shared data folder: the
``facts`` of many items are pooled into one passage corpus, so retrieving an item's own facts is not trivial, and
each item's yes/no question is a QA item whose gold passages are its facts. :func:`compare_rag_methods` runs
methods on the same retrieved passages and reports accuracy and retrieval recall@k.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from .methods import METHODS

__all__ = [
    "RAG_METHODS",
    "RagItem",
    "RagSet",
    "anchored_rag_chain",
    "build_retriever",
    "compare_rag_methods",
    "faiss_vector_store",
    "format_rag_table",
    "make_reasoner",
    "recall_at_k",
    "strategyqa_rag_set",
]

RAG_METHODS = METHODS
"""Reasoning methods that can read retrieved context (the names of ``selfanchor eval``)."""

PASSAGE_ID_KEY = "passage_id"
"""Document metadata key holding a passage's id in :func:`strategyqa_rag_set` corpora."""


@dataclass(frozen=True)
class RagItem:
    """One QA item of a retrieval set.

    Attributes:
        id: The source record id.
        question: The question.
        answer: Gold answer (``"yes"`` / ``"no"`` for StrategyQA).
        gold_passages: Ids of the corpus passages that support the answer.
        bench: Benchmark name used for answer extraction and grading.
    """

    id: str
    question: str
    answer: str
    gold_passages: tuple[str, ...]
    bench: str = "strategyqa"


@dataclass
class RagSet:
    """QA items plus the passage corpus they retrieve from.

    Attributes:
        items: The QA items.
        passages: The corpus; each Document has ``metadata["passage_id"]`` and ``metadata["sources"]`` (the ids of
            the records whose facts include the passage).
        info: How the set was built (data file, pool size, ...), for reports.
    """

    items: list[RagItem]
    passages: list[Document]
    info: dict[str, Any] = field(default_factory=dict)


def _normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def strategyqa_rag_set(
    n_items: int = 30,
    *,
    pool_items: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "dev",
) -> RagSet:
    """A retrieval QA set from StrategyQA: pooled ``facts`` are the corpus, the yes/no questions the items.

    Only records with at least one fact are used. Identical facts (after whitespace and case normalisation) are
    one passage, credited to every record that lists them.

    Args:
        n_items: QA items, the first ones of the split (in file order; the files are already shuffled).
        pool_items: Records whose facts form the corpus (the first ones, a superset of the QA items); default:
            every record of the split, so each question competes with all the other items' facts.
        data_dir: Benchmark data folder (default: :func:`~selfanchor_chains.eval.datasets.default_data_dir`).
        split: Data split.

    Returns:
        The items and the passage corpus.

    Raises:
        ValueError: ``n_items`` < 1, or ``pool_items`` smaller than ``n_items``.
        DatasetError: The data cannot be found or read.
    """
    from ..eval.datasets import load_problems

    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if pool_items is not None and pool_items < n_items:
        raise ValueError(f"pool_items ({pool_items}) must be >= n_items ({n_items})")
    records = [p for p in load_problems("strategyqa", data_dir=data_dir, split=split) if _facts(p.extra)]
    pool = records if pool_items is None else records[:pool_items]
    passages: list[Document] = []
    by_text: dict[str, Document] = {}
    gold: dict[str, list[str]] = {}
    for record in pool:
        for number, fact in enumerate(_facts(record.extra)):
            key = _normalise(fact)
            doc = by_text.get(key)
            if doc is None:
                doc = Document(
                    page_content=fact.strip(),
                    id=f"{record.id}#{number}",
                    metadata={PASSAGE_ID_KEY: f"{record.id}#{number}", "sources": []},
                )
                by_text[key] = doc
                passages.append(doc)
            if record.id not in doc.metadata["sources"]:
                doc.metadata["sources"].append(record.id)
            ids = gold.setdefault(record.id, [])
            if doc.metadata[PASSAGE_ID_KEY] not in ids:
                ids.append(doc.metadata[PASSAGE_ID_KEY])
    items = [
        RagItem(id=p.id, question=p.question, answer=p.answer, gold_passages=tuple(gold[p.id]))
        for p in records[:n_items]
    ]
    info = {
        "source": f"strategyqa/{split}.jsonl",
        "records_with_facts": len(records),
        "pool_records": len(pool),
        "passages": len(passages),
        "items": len(items),
        "yes_items": sum(i.answer == "yes" for i in items),
        "mean_gold_passages": round(sum(len(i.gold_passages) for i in items) / max(len(items), 1), 3),
    }
    return RagSet(items=items, passages=passages, info=info)


def _facts(extra: Mapping[str, Any]) -> list[str]:
    facts = extra.get("facts")
    if not isinstance(facts, list):
        return []
    return [str(f) for f in facts if isinstance(f, str) and f.strip()]


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
    not steer (with ω = 1 an anchor would change nothing but the cache key).

    Args:
        method: One of :data:`RAG_METHODS`.
        llm: A :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM`.
        bench: Benchmark name for the answer-format hint and the answer extractor (None: free-form answers).
        **chain_kwargs: Further fields of the chain (``max_new_tokens``, ``schedule``, ...).

    Raises:
        ValueError: Unknown method.
    """
    from .methods import make_chain

    if method not in RAG_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(RAG_METHODS)}")
    chain_kwargs.setdefault("anchor_context", method not in ("cot", "ps"))
    return make_chain(method, llm, bench=bench, **chain_kwargs)


def anchored_rag_chain(
    retriever: Any,
    llm: Any,
    *,
    method: str = "self-anchor",
    bench: str | None = None,
    include_context: bool = False,
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
        **chain_kwargs: Further fields of the reasoning chain.

    Example:
        .. code-block:: python

            retriever = build_retriever(passages, k=3, persist_dir="rag-index")  # FAISS on disk, reopened next time
            chain = anchored_rag_chain(retriever, SteeredHFLLM.from_model_id("qwen2.5-coder-0.5b"))
            chain.invoke({"question": "Could a llama birth twice during the War in Vietnam?"})["answer"]
    """
    from langchain_core.runnables import RunnableLambda, RunnableParallel

    from .retrieval import anchored_retrieval

    reasoner = make_reasoner(method, llm, bench=bench, **chain_kwargs)
    if not include_context:
        return anchored_retrieval(retriever) | reasoner
    both = RunnableParallel(output=reasoner, context=RunnableLambda(lambda x: x["context"]))
    return anchored_retrieval(retriever) | both | RunnableLambda(lambda d: {**d["output"], "context": d["context"]})


def recall_at_k(retrieved: Iterable[Document], gold: Collection[str], *, id_key: str = PASSAGE_ID_KEY) -> float:
    """The fraction of an item's gold passages that were retrieved.

    Args:
        retrieved: The retrieved Documents (their ``metadata[id_key]``, or ``Document.id``, identifies them).
        gold: Gold passage ids.
        id_key: Metadata key of the passage id.

    Returns:
        ``|retrieved ∩ gold| / |gold|``; 1.0 when there is no gold passage (nothing could be missed).
    """
    if not gold:
        return 1.0
    found = {doc.metadata.get(id_key, doc.id) for doc in retrieved}
    return len(found & set(gold)) / len(set(gold))


def compare_rag_methods(
    items: Sequence[RagItem],
    retriever: Any,
    llm: Any,
    *,
    methods: Sequence[str] = ("cot", "self-anchor"),
    batch_size: int = 8,
    max_new_tokens: int = 256,
    on_batch: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run RAG methods on the same retrieved passages; accuracy per method and retrieval recall@k.

    Retrieval runs once per item (``anchored_retrieval(retriever)``) and every method reasons over exactly those
    passages, so the methods differ only in how they read them. Each method then decodes ``batch_size`` items per
    engine session.

    Args:
        items: QA items.
        retriever: Retriever over the items' corpus (its ``k`` is the one reported).
        llm: A :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM`.
        methods: Methods of :data:`RAG_METHODS`, in the order they are run and reported.
        batch_size: Items decoded together.
        max_new_tokens: Decoding budget per item.
        on_batch: Called as ``on_batch(method, done, total)`` after each batch (progress reporting).

    Returns:
        ``{"n", "recall_at_k", "methods": {name: {"n", "correct", "accuracy", "no_answer", "truncated", "seconds",
        "mean_tokens"}}, "records": [...]}``; a record per (item, method) with the prediction, grade, recall and
        trace. ``no_answer``: outputs with no extractable answer (graded wrong); ``truncated``: outputs cut by the
        token budget.
    """
    from ..answers.grading import is_correct
    from .retrieval import anchored_retrieval

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not items:
        raise ValueError("no items to evaluate")
    inputs = anchored_retrieval(retriever).batch([{"question": item.question} for item in items])
    recalls = [recall_at_k(inp["context"], item.gold_passages) for inp, item in zip(inputs, items, strict=True)]
    summary: dict[str, Any] = {"n": len(items), "recall_at_k": sum(recalls) / len(recalls), "methods": {}}
    records: list[dict[str, Any]] = []
    for method in methods:
        reasoner = make_reasoner(method, llm, bench=items[0].bench, max_new_tokens=max_new_tokens)
        correct = tokens = no_answer = truncated = 0
        started = time.perf_counter()
        for start in range(0, len(items), batch_size):
            chunk = slice(start, start + batch_size)
            outputs = reasoner.batch(inputs[chunk])
            for item, inp, recall, out in zip(items[chunk], inputs[chunk], recalls[chunk], outputs, strict=True):
                ok = bool(is_correct(item.bench, out["answer"], item.answer))
                correct += ok
                tokens += int(out["usage"].get("completion_tokens", 0))
                no_answer += out["answer"] is None
                truncated += out["finish_reason"] == "length"
                records.append(
                    {
                        "id": item.id,
                        "method": method,
                        "question": item.question,
                        "gold": item.answer,
                        "prediction": out["answer"],
                        "correct": ok,
                        "recall": recall,
                        "retrieved": [d.metadata.get(PASSAGE_ID_KEY, d.id) for d in inp["context"]],
                        "gold_passages": list(item.gold_passages),
                        "finish_reason": out["finish_reason"],
                        "tokens": out["usage"].get("completion_tokens"),
                        "steps": [{k: s[k] for k in ("kind", "omega", "confidence", "tokens")} for s in out["steps"]],
                        "text": out["text"],
                    }
                )
            if on_batch is not None:
                on_batch(method, min(start + batch_size, len(items)), len(items))
        summary["methods"][method] = {
            "n": len(items),
            "correct": correct,
            "accuracy": correct / len(items),
            "no_answer": no_answer,
            "truncated": truncated,
            "seconds": round(time.perf_counter() - started, 1),
            "mean_tokens": round(tokens / len(items), 1),
        }
    summary["records"] = records
    return summary


def format_rag_table(summary: Mapping[str, Any], *, k: int | None = None) -> str:
    """A Markdown table of :func:`compare_rag_methods`'s summary: n, accuracy per method, recall@k, failure counts.

    Args:
        summary: The summary dict.
        k: Passages retrieved per question, for the column title.
    """
    recall_title = f"recall@{k}" if k is not None else "recall@k"
    lines = [
        f"| method | n | correct | accuracy | {recall_title} | no answer | truncated | mean tokens | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in summary["methods"].items():
        lines.append(
            f"| {name} | {row['n']} | {row['correct']} | {100 * row['accuracy']:.1f}% | "
            f"{summary['recall_at_k']:.3f} | {row.get('no_answer', '–')} | {row.get('truncated', '–')} | "
            f"{row['mean_tokens']} | {row['seconds']} |"
        )
    return "\n".join(lines)
