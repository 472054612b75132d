"""Whether a short answer mentions an expected one: whole words, case, accents and punctuation ignored (conflictqa)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def fold(text: str) -> str:
    """Lower case, accents stripped, punctuation turned into spaces, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text).replace("'", "").replace("\u2019", "")
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    return " ".join("".join(ch if ch.isalnum() else " " for ch in plain).split())


def mentions(prediction: str | None, aliases: Sequence[str]) -> bool:
    """Whether any alias occurs in the prediction as whole words (case, accents and punctuation ignored).

    Args:
        prediction: The model's short answer (None: nothing was answered).
        aliases: Accepted spellings of one answer.

    Returns:
        True when some non-empty alias is found.
    """
    if not prediction:
        return False
    text = f" {fold(prediction)} "
    return any(folded and f" {folded} " in text for folded in (fold(a) for a in aliases))


# Words that carry no answer content: articles, prepositions, auxiliaries (what SQuAD-style normalisation drops,
# plus a few function words), so "The upper hindquarters." and "upper hindquarters" have the same content.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
    ]
)


def content_tokens(text: str | None) -> list[str]:
    """The folded words of a text, stop words dropped (all words when every one is a stop word)."""
    words = fold(text or "").split()
    kept = [w for w in words if w not in STOPWORDS]
    return kept or words


def containment(prediction: str | None, answer: str) -> float:
    """The share of the answer's content tokens that occur in the prediction (0 when either is empty).

    ``containment("Lake James", "Lake James, Nevada") == 2/3``; ``containment("upper hindquarters",
    "The upper hindquarters.") == 1``. Never raises.
    """
    wanted = content_tokens(answer)
    if not prediction or not wanted:
        return 0.0
    have = set(content_tokens(prediction))
    return sum(w in have for w in wanted) / len(wanted)


def best_containment(prediction: str | None, aliases: Sequence[str]) -> float:
    """:func:`containment` of the best-matching alias."""
    return max((containment(prediction, a) for a in aliases), default=0.0)
