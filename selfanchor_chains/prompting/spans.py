"""From anchored text to token spans: finding anchor strings, merging spans, and mapping character spans onto
tokens through the tokenizer's offset mapping."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
from .markup import (
    DEFAULT_MARKUP,
    AnchorMarkup,
    AnchorNotFoundError,
    AnchorSpanError,
    AnchorTokenizerError,
    Span,
    _clip,
    parse_anchor_markup,
)
from .text_checks import check_encodable

# --------------------------------------------------------------------------------------------- spans


def _validate_span(span: object, length: int | None, what: str) -> Span:
    """Checks that ``span`` is a non-empty ``(start, end)`` pair of ints inside ``[0, length]``.

    ``length=None`` only checks the pair itself (no upper bound).
    """
    if (
        not isinstance(span, tuple | list)
        or len(span) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)
    ):
        raise AnchorSpanError(f"{what} {span!r} is not a (start, end) pair of integers")
    start, end = span
    problem = None
    if start < 0:
        problem = "starts at a negative offset"
    elif end == start:
        problem = "is empty; an anchor must mark text"
    elif end < start:
        problem = "is reversed (end before start)"
    elif length is not None and end > length:
        problem = f"ends past the text (length {length})"
    if problem:
        raise AnchorSpanError(f"{what} {(start, end)!r} {problem}")
    return start, end


def resolve_anchor_strings(text: str, anchors: Sequence[str | Span]) -> list[Span]:
    """Turns call-time anchors into character spans of ``text``.

    A string anchor marks **every non-overlapping occurrence** of it, scanning left to right (like
    ``str.replace``), so a repeated constraint is hidden everywhere it appears. A ``(start, end)`` pair is
    taken as a character span of ``text`` as is.

    Args:
        text: The clean prompt text (no markup).
        anchors: Substrings and/or ``(start, end)`` spans.

    Returns:
        The spans in the order given (occurrences left to right); they may overlap, use
        :func:`merge_spans` for a union.

    Raises:
        TypeError: ``anchors`` is a single string (a list of one substring was meant).
        AnchorNotFoundError: A substring does not occur in ``text``.
        AnchorSpanError: An empty substring, or a span that is empty, reversed, not integers or out of
            range.
    """
    if isinstance(anchors, str):
        # Iterating a string would anchor its single characters ("B", "e", "r", ...) all over the prompt.
        raise TypeError(
            f"anchors must be a list of substrings or (start, end) spans, not one string: anchors=[{anchors!r}]"
        )
    spans: list[Span] = []
    for index, item in enumerate(anchors):
        if isinstance(item, str):
            spans.extend(_find_all(text, item, index))
        else:
            spans.append(_validate_span(item, len(text), f"anchor {index}: span"))
    return spans


def _find_all(text: str, needle: str, index: int) -> list[Span]:
    """All non-overlapping occurrences of ``needle`` in ``text``."""
    if not needle:
        raise AnchorSpanError(f"anchor {index} is an empty string; an anchor must mark text")
    found: list[Span] = []
    start = text.find(needle)
    while start != -1:
        found.append((start, start + len(needle)))
        start = text.find(needle, start + len(needle))
    if not found:
        raise AnchorNotFoundError(
            f"anchor {index} {_clip(needle)} does not occur in the prompt {_clip(text)} "
            f"(matching is exact: case and whitespace count)"
        )
    return found


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorts spans and merges those that overlap or touch.

    Raises:
        AnchorSpanError: A span is not a pair of integers, is negative or is empty.
    """
    checked = [_validate_span(span, None, "span") for span in spans]
    merged: list[Span] = []
    for start, end in sorted(checked):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def char_spans_to_token_spans(offsets: Sequence[tuple[int, int]], char_spans: Iterable[Span]) -> list[Span]:
    """Maps character spans onto token index spans through a tokenizer's offset mapping.

    A token is anchored when its characters overlap an anchor at all, so a token that is only partly
    inside an anchor (a merge across the anchor boundary, or one of the byte tokens of a multi-byte
    character) is hidden whole: hiding a little too much is safer than leaking part of the anchor.
    Tokens with empty offsets (special tokens report ``(0, 0)``) never match.

    Args:
        offsets: ``(start, end)`` character offsets per token, from ``return_offsets_mapping=True``.
        char_spans: Anchored character spans of the same text.

    Returns:
        Sorted, merged ``[start_token, end_token)`` spans.

    Raises:
        AnchorSpanError: A character span overlaps no token (e.g. text the tokenizer dropped).
    """
    token_spans: list[Span] = []
    for span_start, span_end in char_spans:
        hits = [
            index
            for index, (tok_start, tok_end) in enumerate(offsets)
            if tok_end > tok_start and tok_start < span_end and tok_end > span_start
        ]
        if not hits:
            raise AnchorSpanError(f"anchor span {(span_start, span_end)!r} covers no token")
        token_spans.append((hits[0], hits[-1] + 1))
    return merge_spans(token_spans)


def check_whole_prompt(token_spans: Iterable[Span], n_tokens: int) -> None:
    """Refuses anchors that would hide every prompt token from the masked branch.

    With nothing left visible, the masked branch has no context at all and the logit arithmetic is
    meaningless.

    Args:
        token_spans: Anchored token spans.
        n_tokens: Number of prompt tokens.

    Raises:
        AnchorSpanError: A span lies outside ``[0, n_tokens]``, or the spans cover every token.
    """
    merged = merge_spans(token_spans)
    for span in merged:
        _validate_span(span, n_tokens, "token span")
    if n_tokens > 0 and merged == [(0, n_tokens)]:
        raise AnchorSpanError(
            f"anchors cover the whole prompt ({n_tokens} tokens); leave some text visible, e.g. the "
            f"instruction or the chat template around the anchored content"
        )


# --------------------------------------------------------------------------------------------- tokenizers


def tokenize_with_anchors(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    char_spans: Sequence[Span] | None = None,
    *,
    add_special_tokens: bool = False,
    markup: AnchorMarkup = DEFAULT_MARKUP,
) -> tuple[list[int], list[Span]]:
    """Tokenises a prompt and maps its anchors onto token spans.

    Args:
        tokenizer: A fast (Rust ``tokenizers``-backed) tokenizer; only those report offsets.
        text: Clean text when ``char_spans`` is given, else text with anchor markup to parse.
        char_spans: Anchored character spans of ``text``; ``None`` parses them from markup.
        add_special_tokens: Passed to the tokenizer. Keep ``False`` for chat-templated text, which
            already has its special tokens.
        markup: The tags to parse when ``char_spans`` is ``None``.

    Returns:
        The token ids and the sorted, merged anchored token spans.

    Raises:
        AnchorTokenizerError: The tokenizer is not fast.
        AnchorMarkupError: Malformed markup (only when parsing).
        AnchorSpanError: A span is out of range or covers no token.
        UnencodableTextError: ``text`` holds a lone surrogate.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise AnchorTokenizerError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; anchors need return_offsets_mapping, "
            f"which only tokenizers backed by the Rust `tokenizers` library provide"
        )
    if char_spans is None:
        text, spans = parse_anchor_markup(text, markup)
    else:
        spans = [_validate_span(span, len(text), "anchor span") for span in char_spans]
    check_encodable(text, "text")  # the callers above check their own strings first, with better names
    encoding = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    offsets = [(int(start), int(end)) for start, end in encoding["offset_mapping"]]
    return input_ids, char_spans_to_token_spans(offsets, spans)
