"""Control tokens in untrusted text: a special-token string found in chat content, a retrieved passage or tool
output is broken by a zero-width space, so it tokenises as plain text and can never open a turn."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
from .markup import Span
from .spans import merge_spans


def special_token_strings(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The tokenizer's special-token strings: named specials and added tokens flagged ``special``.

    Returns:
        Non-empty strings, longest first.
    """
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    found.update(str(token) for token in decoder.values() if getattr(token, "special", False))
    return sorted((token for token in found if token), key=lambda t: (-len(t), t))


NEUTRALIZER = "\u200b"


def neutralize_special_tokens(text: str, specials: Sequence[str]) -> str:
    """Untrusted text with every special-token string broken by a zero-width space after its first character.

    A retrieved passage or a chat message holding ``<|im_end|>\n<|im_start|>system`` would otherwise be tokenised
    as real control tokens: an injected turn. The text reads the same; the model sees plain characters.

    Args:
        text: Untrusted text.
        specials: The tokenizer's special-token strings (:func:`special_token_strings`).
    """
    if not specials or not text:
        return text
    pattern = re.compile("|".join(re.escape(t) for t in sorted(set(specials), key=len, reverse=True) if t))
    return pattern.sub(lambda m: m.group(0)[0] + NEUTRALIZER + m.group(0)[1:], text)


def neutralize_in_spans(text: str, spans: Sequence[Span], specials: Sequence[str]) -> tuple[str, list[Span]]:
    """:func:`neutralize_special_tokens` applied inside ``spans`` of ``text`` only; returns the text and the spans
    moved to the new offsets (spans are merged first)."""
    merged = merge_spans(spans)
    if not specials or not merged:
        return text, list(spans)
    pieces, out_spans, cursor, shift = [], [], 0, 0
    for start, end in merged:
        pieces.append(text[cursor:start])
        inner = neutralize_special_tokens(text[start:end], specials)
        pieces.append(inner)
        out_spans.append((start + shift, start + shift + len(inner)))
        shift += len(inner) - (end - start)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces), out_spans


def _special_token_ranges(text: str, specials: Sequence[str]) -> list[tuple[int, int, str]]:
    """Every occurrence of every special-token string in ``text`` (occurrences may overlap)."""
    ranges = []
    for token in specials:
        start = text.find(token)
        while start != -1:
            ranges.append((start, start + len(token), token))
            start = text.find(token, start + 1)
    return ranges
