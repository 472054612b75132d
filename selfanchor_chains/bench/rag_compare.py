"""Measuring anchored RAG: a small QA set and a comparison of reasoning methods on the same retrieved passages.

The QA set (:func:`strategyqa_rag_set`) is made from public StrategyQA items in the shared data folder: the
``facts`` of many items are pooled into one passage corpus, so retrieving an item's own facts is not trivial, and
each item's yes/no question is a QA item whose gold passages are its facts. :func:`compare_rag_methods` runs
methods on the same retrieved passages and reports accuracy and retrieval recall@k."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.documents import Document

from ..reasoning.rag import PASSAGE_ID_KEY, make_reasoner


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
    from ..reasoning.retrieval import anchored_retrieval

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
        started = time.perf_counter()
        method_records: list[dict[str, Any]] = []
        for start in range(0, len(items), batch_size):
            chunk = slice(start, start + batch_size)
            outputs = reasoner.batch(inputs[chunk])
            for item, inp, recall, out in zip(items[chunk], inputs[chunk], recalls[chunk], outputs, strict=True):
                method_records.append(_rag_record(item, method, inp, recall, out))
            if on_batch is not None:
                on_batch(method, min(start + batch_size, len(items)), len(items))
        summary["methods"][method] = _rag_summary(method_records, time.perf_counter() - started)
        records += method_records
    summary["records"] = records
    return summary


def _rag_record(item: RagItem, method: str, inp: Mapping[str, Any], recall: float, out: Mapping[str, Any]) -> dict:
    """One (item, method) record: prediction, grade, retrieval recall and the trace."""
    from ..answers.grading import is_correct

    return {
        "id": item.id,
        "method": method,
        "question": item.question,
        "gold": item.answer,
        "prediction": out["answer"],
        "correct": bool(is_correct(item.bench, out["answer"], item.answer)),
        "recall": recall,
        "retrieved": [d.metadata.get(PASSAGE_ID_KEY, d.id) for d in inp["context"]],
        "gold_passages": list(item.gold_passages),
        "finish_reason": out["finish_reason"],
        "tokens": out["usage"].get("completion_tokens"),
        "steps": [{k: s[k] for k in ("kind", "omega", "confidence", "tokens")} for s in out["steps"]],
        "text": out["text"],
    }


def _rag_summary(records: Sequence[Mapping[str, Any]], seconds: float) -> dict[str, Any]:
    n = len(records)
    correct = sum(r["correct"] for r in records)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n,
        "no_answer": sum(r["prediction"] is None for r in records),
        "truncated": sum(r["finish_reason"] == "length" for r in records),
        "seconds": round(seconds, 1),
        "mean_tokens": round(sum(int(r["tokens"] or 0) for r in records) / n, 1),
    }


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
