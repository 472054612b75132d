"""A real-question knowledge-conflict set with an imperfect ranker, built from NQ-Swap (issue #34).

NQ-Swap (Longpre et al. 2021, as packaged for context-aware decoding by Shi et al. 2023) pairs real Natural
Questions queries with their Wikipedia passage twice: as it is (``org_context``, answer ``org_answer``) and with the
answer entity replaced by another of the same type (``sub_context``, ``sub_answer``). A model that reads its context
answers a substituted passage with the substituted entity; one that follows its memory with the original.

NQ-Swap gives one passage per question. Real retrieval gives several, not always the right one first, so each item
here gets ``k − 1`` *distractors* retrieved from the pool of the **other** questions' passages against the question
(by BM25, or by an embedding model: the passages a vector store would have put beside it), and the evidence at a
random position. The method's own ranker (MiniLM embeddings, :meth:`~selfanchor_chains.eval.conflict_methods
.ShortAnswerChain.top_passages`) then ranks these ``k`` passages, and is wrong where a distractor about the same
topic looks closer to the question than the evidence: the imperfect ranker the issue asks for, measured per item.

Records follow :mod:`selfanchor_chains.eval.conflict_set`'s format, so ``selfanchor eval conflictqa --data-dir``
evaluates them with the same methods and graders; ``scripts/build_nqswap_set.py`` is the command.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..answers.mentions import content_tokens, fold, mentions

__all__ = ["NQSwapQuestion", "build_nqswap_set", "nqswap_questions", "plain_passage"]

_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*>")
_SPACES = re.compile(r"\s+")
# Tokenised NQ text puts spaces before punctuation ("May 17 , 2016 ."); rejoin for a passage that reads normally.
_SPACE_BEFORE = re.compile(r" ([,.;:!?%)\]])")
_SPACE_AFTER = re.compile(r"([(\[]) ")


def plain_passage(html: str) -> str:
    """NQ's passage markup (``<P>``, ``<Table>``, ``<Li>`` …) removed and its tokenised spacing undone."""
    text = _SPACES.sub(" ", _TAG.sub(" ", html)).strip()
    return _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text))


@dataclass(frozen=True)
class NQSwapQuestion:
    """One NQ-Swap question with its original and substituted passage (the first row of the question)."""

    question: str
    original: str
    original_answers: tuple[str, ...]
    substituted: str
    substituted_answers: tuple[str, ...]


def nqswap_questions(rows: Sequence[Mapping[str, Any]], max_words: int) -> list[NQSwapQuestion]:
    """One entry per distinct question (its first row), passages cleaned, longer ones than ``max_words`` dropped.

    A question is kept only if both its passages state their answer (the substitution worked) and the answers
    differ after folding (else it would not be a conflict).

    Raises:
        ValueError: A row lacks one of NQ-Swap's fields.
    """
    seen: set[str] = set()
    questions = []
    for number, row in enumerate(rows):
        missing = [
            key for key in ("question", "org_context", "org_answer", "sub_context", "sub_answer") if key not in row
        ]
        if missing:
            raise ValueError(f"NQ-Swap row {number} lacks {', '.join(missing)}")
        question = str(row["question"]).strip()
        if question in seen:
            continue
        seen.add(question)
        original, substituted = plain_passage(str(row["org_context"])), plain_passage(str(row["sub_context"]))
        org = tuple(str(a) for a in row["org_answer"] if str(a).strip())
        sub = tuple(str(a) for a in row["sub_answer"] if str(a).strip())
        if not org or not sub or len(original.split()) > max_words or len(substituted.split()) > max_words:
            continue
        if not any(fold(a) in fold(original) for a in org) or not any(fold(a) in fold(substituted) for a in sub):
            continue
        if {fold(a) for a in org} & {fold(a) for a in sub}:
            continue
        questions.append(NQSwapQuestion(question, original, org, substituted, sub))
    return questions


class _Dense:
    """Pool passages ranked by the dot product of L2-normalised embeddings (a vector store's cosine ranking)."""

    def __init__(self, passages: Sequence[str], embeddings: Any) -> None:
        self.embeddings = embeddings
        self.vectors = embeddings.embed_documents(list(passages))

    def ranked(self, query: str) -> list[int]:
        """All pool indices by descending similarity (ties by index)."""
        q = self.embeddings.embed_query(query)
        scores = [sum(a * b for a, b in zip(q, vector, strict=True)) for vector in self.vectors]
        return sorted(range(len(scores)), key=lambda index: (-scores[index], index))


class _BM25:
    """Okapi BM25 over a fixed pool of passages (k1 = 1.2, b = 0.75), content tokens only."""

    def __init__(self, passages: Sequence[str]) -> None:
        self.docs = [Counter(content_tokens(p)) for p in passages]
        self.lengths = [sum(doc.values()) for doc in self.docs]
        self.average = sum(self.lengths) / max(len(self.docs), 1)
        frequency = Counter(token for doc in self.docs for token in doc)
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}
        self.postings: dict[str, list[int]] = {}
        for index, doc in enumerate(self.docs):
            for token in doc:
                self.postings.setdefault(token, []).append(index)

    def ranked(self, query: str) -> list[int]:
        """All pool indices by descending score (ties, and passages sharing no term, by index)."""
        scores: dict[int, float] = {}
        for term in set(content_tokens(query)):
            for index in self.postings.get(term, ()):
                doc = self.docs[index]
                norm = 1.2 * (0.25 + 0.75 * self.lengths[index] / self.average)
                scores[index] = scores.get(index, 0.0) + self.idf[term] * doc[term] * 2.2 / (doc[term] + norm)
        matched = sorted(scores, key=lambda index: (-scores[index], index))
        return matched + [index for index in range(len(self.docs)) if index not in scores]


def _record(
    entry: NQSwapQuestion, kind: str, distractors: list[str], rng: random.Random, source: str
) -> dict[str, Any]:
    evidence = entry.substituted if kind == "conflict" else entry.original
    context = entry.substituted_answers if kind == "conflict" else entry.original_answers
    passages = list(distractors)
    position = rng.randrange(len(passages) + 1)
    passages.insert(position, evidence)
    memory = entry.original_answers
    return {
        "question": entry.question[:1].upper() + entry.question[1:].rstrip(" ?") + "?",
        "answer": context[0],
        "kind": kind,
        "passages": passages,
        "evidence_index": position,
        "context_answer": context[0],
        "memory_answer": memory[0],
        "context_aliases": list(context[1:]),
        "memory_aliases": list(memory[1:]),
        "source": source,
    }


def build_nqswap_set(
    rows: Sequence[Mapping[str, Any]],
    *,
    splits: Mapping[str, tuple[int, int]],
    k: int = 4,
    max_words: int = 250,
    seed: int = 0,
    source: str = "NQ-Swap",
    embeddings: Any = None,
) -> dict[str, list[dict[str, Any]]]:
    """Conflict and control items per split, from NQ-Swap rows.

    Args:
        rows: NQ-Swap's rows (``question``, ``org_context``, ``org_answer``, ``sub_context``, ``sub_answer``).
        splits: ``{split: (conflict questions, control questions)}``, drawn in this order from one seeded shuffle
            of the questions, so splits never share a question.
        k: Passages per item (the evidence and ``k − 1`` BM25-retrieved distractors from other questions).
        max_words: Questions whose passage is longer are left out, and so are such distractors.
        seed: The shuffle and the evidence positions.
        source: Written into every record.
        embeddings: A LangChain ``Embeddings`` whose nearest passages become the distractors (None: BM25).

    Raises:
        ValueError: ``k < 2``, or more questions asked for than the rows hold.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2 (the evidence and a distractor), got {k}")
    questions = nqswap_questions(rows, max_words)
    wanted = sum(conflict + control for conflict, control in splits.values())
    if wanted > len(questions):
        raise ValueError(f"{wanted} questions asked for; NQ-Swap holds {len(questions)} usable ones")
    passages = [entry.original for entry in questions]
    pool = _BM25(passages) if embeddings is None else _Dense(passages, embeddings)
    rng = random.Random(seed)
    order = list(range(len(questions)))
    rng.shuffle(order)
    built: dict[str, list[dict[str, Any]]] = {}
    start = 0
    for split, (conflicts, controls) in splits.items():
        records: list[dict[str, Any]] = []
        for offset, index in enumerate(order[start : start + conflicts + controls]):
            entry = questions[index]
            answers = list(entry.original_answers + entry.substituted_answers)
            # Another question's passage about the same thing may state this question's answer (original or
            # substituted): such a distractor would be a second piece of evidence, so it is passed over.
            distractors = [
                questions[j].original
                for j in pool.ranked(entry.question)
                if j != index and not mentions(questions[j].original, answers)
            ][: k - 1]
            kind = "conflict" if offset < conflicts else "control"
            record = _record(entry, kind, distractors, rng, source)
            records.append({"id": f"nqswap/{split}/{len(records):04d}", **record})
        built[split] = records
        start += conflicts + controls
    return built


def read_jsonl(text: str) -> list[dict[str, Any]]:
    """NQ-Swap's ``merged.jsonl`` text as rows."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
