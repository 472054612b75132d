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
