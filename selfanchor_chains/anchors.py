"""Anchor markup: marking prompt regions to be hidden from the masked Self-Anchor branch.

Anchors travel through ordinary LangChain prompt strings as ``<anchor>…</anchor>`` markup. The steered
LLM strips the tags (:func:`parse_anchor_markup`), tokenises the clean text and maps each marked character
region onto token spans through the tokenizer's offset mapping (:func:`char_spans_to_token_spans`).

Escaping (security):
    Any text that is not under your control (retrieved passages, tool output, user uploads) is
    **untrusted** and must be passed through :func:`escape_anchor_markup` (or wrapped with
    :func:`anchor` / :func:`format_docs_anchored`, which escape for you) before it is placed into a
    prompt. Otherwise a passage containing ``</anchor>`` or ``<anchor>`` could move, split or remove the
    anchored spans.

    The escape puts the sentinel :data:`ESCAPE_CHAR` (U+E000, a private-use character that real text
    does not contain) before every character that can start a tag (``<`` for the default tags) and before
    every sentinel already in the text. The parser drops a sentinel that precedes such a character and
    keeps the character as text, so the clean text always holds the original characters; a sentinel
    before anything else is ordinary text, so trusted text is never altered. Because every tag start in
    escaped text is neutralised, escaped pieces may be concatenated with each other and with trusted text
    in any order: only trusted text that itself ends in half a tag (``"... <"`` followed by a passage
    starting ``anchor>``) could complete a tag. Tags are matched exactly (case- and whitespace-sensitive):
    ``</ANCHOR>`` or ``< anchor>`` is ordinary text.

    Escaped text is meant for the parser only: send the clean text from :func:`parse_anchor_markup` or
    :func:`strip_anchor_markup` to a model, never the markup string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MARKUP",
    "ESCAPE_CHAR",
    "NEUTRALIZER",
    "AnchorError",
    "AnchorMarkup",
    "AnchorMarkupError",
    "AnchorNotFoundError",
    "AnchorSpanError",
    "AnchorTemplateError",
    "AnchorTokenizerError",
    "Span",
    "anchor",
    "char_spans_to_token_spans",
    "check_whole_prompt",
    "escape_anchor_markup",
    "format_docs_anchored",
    "merge_spans",
    "neutralize_in_spans",
    "neutralize_special_tokens",
    "parse_anchor_markup",
    "render_chat_with_anchors",
    "resolve_anchor_strings",
    "special_token_strings",
    "strip_anchor_markup",
    "tokenize_with_anchors",
]

Span = tuple[int, int]
"""A half-open ``[start, end)`` range of character or token indices."""

ESCAPE_CHAR = "\ue000"
"""Private-use sentinel placed before a tag-starting character to make it literal text."""

_EXCERPT_RADIUS = 20


# --------------------------------------------------------------------------------------------- errors


class AnchorError(ValueError):
    """Base class of every anchor error; a ``ValueError`` so generic input validation still catches it."""


class AnchorMarkupError(AnchorError):
    """Anchor markup is malformed: unbalanced, nested, stray or empty tags."""


class AnchorNotFoundError(AnchorError):
    """A call-time anchor substring does not occur in the prompt."""


class AnchorSpanError(AnchorError):
    """A span is out of range or empty, maps to no token, or the anchors would hide the whole prompt."""


class AnchorTemplateError(AnchorError):
    """Anchors would overlap a chat template's special tokens, or the template lost anchor markup."""


class AnchorTokenizerError(AnchorError):
    """The tokenizer cannot report character offsets (a slow, pure-Python tokenizer)."""


def _excerpt(text: str, offset: int) -> str:
    """A short ``repr`` of the text around ``offset``, so error messages show where the problem is."""
    start = max(0, offset - _EXCERPT_RADIUS)
    end = min(len(text), offset + _EXCERPT_RADIUS)
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(text) else ""
    return f"(near {prefix}{text[start:end]!r}{suffix})"


def _clip(text: str, limit: int = 2 * _EXCERPT_RADIUS) -> str:
    """A ``repr`` of the start of ``text``, cut to ``limit`` characters."""
    return f"{text[:limit]!r}…" if len(text) > limit else repr(text)


# --------------------------------------------------------------------------------------------- markup


@dataclass(frozen=True)
class AnchorMarkup:
    """The pair of tags that marks an anchor region.

    Attributes:
        open_tag: Starts an anchor region. Non-empty, without :data:`ESCAPE_CHAR`.
        close_tag: Ends an anchor region. Non-empty, without :data:`ESCAPE_CHAR`, and neither tag may
            contain the other (the parser could not tell them apart).
    """

    open_tag: str = "<anchor>"
    close_tag: str = "</anchor>"

    def __post_init__(self) -> None:
        for name, tag in (("open_tag", self.open_tag), ("close_tag", self.close_tag)):
            if not isinstance(tag, str) or not tag:
                raise ValueError(f"AnchorMarkup.{name} must be a non-empty string, got {tag!r}")
            if ESCAPE_CHAR in tag:
                raise ValueError(f"AnchorMarkup.{name} may not contain the escape sentinel {ESCAPE_CHAR!r}")
        if self.open_tag in self.close_tag or self.close_tag in self.open_tag:
            raise ValueError(
                f"AnchorMarkup tags must be distinct and not contain each other: {self.open_tag!r}, {self.close_tag!r}"
            )

    @property
    def leads(self) -> str:
        """The characters that can start a tag; the escape neutralises each of them."""
        return "".join(sorted({self.open_tag[0], self.close_tag[0]}))


DEFAULT_MARKUP = AnchorMarkup()


@lru_cache(maxsize=32)
def _escape_pattern(markup: AnchorMarkup) -> re.Pattern[str]:
    """Matches every character that :func:`escape_anchor_markup` must protect."""
    return re.compile(f"[{re.escape(ESCAPE_CHAR + markup.leads)}]")


@lru_cache(maxsize=32)
def _token_pattern(markup: AnchorMarkup) -> re.Pattern[str]:
    """Matches, leftmost first, an escaped character or a real tag.

    The escape alternative comes first and consumes the protected character, so a tag can never start at
    a character that the escaper protected.
    """
    protected = re.escape(ESCAPE_CHAR + markup.leads)
    return re.compile(
        f"{re.escape(ESCAPE_CHAR)}(?P<literal>[{protected}])"
        f"|(?P<open>{re.escape(markup.open_tag)})"
        f"|(?P<close>{re.escape(markup.close_tag)})"
    )


def escape_anchor_markup(text: str, markup: AnchorMarkup = DEFAULT_MARKUP) -> str:
    """Makes ``text`` inert for the anchor parser: it parses back to exactly ``text``, with no anchors.

    Use this on all untrusted text (retrieved passages, tool output) before placing it in a prompt that
    carries anchor markup; a passage containing ``</anchor>`` could otherwise end an anchor early or start
    a new one.

    Args:
        text: Untrusted text.
        markup: The tags to neutralise.

    Returns:
        ``text`` with :data:`ESCAPE_CHAR` before every tag-starting character and every sentinel.
    """
    return _escape_pattern(markup).sub(lambda m: ESCAPE_CHAR + m.group(), text)


def anchor(text: str, markup: AnchorMarkup = DEFAULT_MARKUP) -> str:
    """Escapes ``text`` and wraps it as one anchor; the one-call helper for prompt templates.

    Args:
        text: Text to anchor; untrusted text is safe because it is escaped.
        markup: The tags to use.

    Returns:
        ``open_tag + escape_anchor_markup(text) + close_tag``, or ``""`` for empty ``text`` (an empty
        region would hide nothing, and the parser rejects empty anchors).
    """
    if not text:
        return ""
    return markup.open_tag + escape_anchor_markup(text, markup) + markup.close_tag


def parse_anchor_markup(text: str, markup: AnchorMarkup = DEFAULT_MARKUP) -> tuple[str, list[Span]]:
    """Removes anchor tags from ``text`` and reports where the anchored regions are in the clean text.

    Escaped text (see :func:`escape_anchor_markup`) is restored to its original characters.

    Args:
        text: Prompt text with anchor markup.
        markup: The tags to recognise.

    Returns:
        The clean text and the anchored character spans ``(start, end)`` in it, in order. Adjacent
        anchors stay separate spans.

    Raises:
        AnchorMarkupError: For a nested open tag, a close tag with no open tag, an open tag that is never
            closed, or an empty anchor. The message gives the offset in ``text`` and an excerpt.
    """
    pieces: list[str] = []
    spans: list[Span] = []
    clean_len = 0
    cursor = 0
    open_at: int | None = None  # offset of the pending open tag in ``text``, for error messages
    open_clean = 0
    for match in _token_pattern(markup).finditer(text):
        literal = text[cursor : match.start()] + (match.group("literal") or "")
        pieces.append(literal)
        clean_len += len(literal)
        cursor = match.end()
        if match.group("open") is not None:
            if open_at is not None:
                raise AnchorMarkupError(
                    f"nested {markup.open_tag!r} at offset {match.start()} {_excerpt(text, match.start())}; "
                    f"the anchor opened at offset {open_at} is not closed yet"
                )
            open_at, open_clean = match.start(), clean_len
        elif match.group("close") is not None:
            if open_at is None:
                raise AnchorMarkupError(
                    f"stray {markup.close_tag!r} at offset {match.start()} {_excerpt(text, match.start())} "
                    f"has no matching {markup.open_tag!r}"
                )
            if clean_len == open_clean:
                raise AnchorMarkupError(
                    f"empty anchor at offset {open_at} {_excerpt(text, open_at)}; an anchor must mark text"
                )
            spans.append((open_clean, clean_len))
            open_at = None
    if open_at is not None:
        raise AnchorMarkupError(
            f"unclosed {markup.open_tag!r} at offset {open_at} {_excerpt(text, open_at)}; expected {markup.close_tag!r}"
        )
    pieces.append(text[cursor:])
    return "".join(pieces), spans


def strip_anchor_markup(text: str, markup: AnchorMarkup = DEFAULT_MARKUP) -> str:
    """The clean text of :func:`parse_anchor_markup`, for models that do not steer.

    Raises:
        AnchorMarkupError: As :func:`parse_anchor_markup`.
    """
    return parse_anchor_markup(text, markup)[0]


def format_docs_anchored(
    docs: Sequence[Document | str],
    *,
    separator: str = "\n\n",
    markup: AnchorMarkup = DEFAULT_MARKUP,
) -> str:
    """Joins documents into one context string, each escaped and wrapped as its own anchor.

    A plain function, so ``retriever | format_docs_anchored`` works in LCEL (it is coerced to a
    ``RunnableLambda``). Page contents are untrusted and are escaped here.

    Args:
        docs: Retrieved documents or strings.
        separator: Placed between documents, outside the anchors.
        markup: The tags to use.

    Returns:
        The joined text. Documents with empty content are skipped (an empty anchor is invalid).

    Raises:
        TypeError: For an item that is neither a ``Document`` nor a ``str``.
    """
    parts: list[str] = []
    for index, doc in enumerate(docs):
        if isinstance(doc, Document):
            content = doc.page_content
        elif isinstance(doc, str):
            content = doc
        else:
            raise TypeError(f"format_docs_anchored: item {index} is {type(doc).__name__}, not Document or str")
        if content:
            parts.append(anchor(content, markup))
    return separator.join(parts)


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
    encoding = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    offsets = [(int(start), int(end)) for start, end in encoding["offset_mapping"]]
    return input_ids, char_spans_to_token_spans(offsets, spans)


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
"""Zero-width space put inside a special-token string found in untrusted text, so that the tokenizer reads it as
plain characters instead of a control token."""


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


def _neutralized_messages(messages: Sequence[dict[str, Any]], specials: Sequence[str]) -> list[dict[str, Any]]:
    """Messages whose text contents have their special-token strings neutralised (chat content is untrusted)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            message = {**message, "content": neutralize_special_tokens(content, specials)}
        elif isinstance(content, list):
            parts = [
                {**part, "text": neutralize_special_tokens(part["text"], specials)}
                if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
            message = {**message, "content": parts}
        out.append(message)
    return out


def _special_token_ranges(text: str, specials: Sequence[str]) -> list[tuple[int, int, str]]:
    """Every occurrence of every special-token string in ``text`` (occurrences may overlap)."""
    ranges = []
    for token in specials:
        start = text.find(token)
        while start != -1:
            ranges.append((start, start + len(token), token))
            start = text.find(token, start + 1)
    return ranges


def render_chat_with_anchors(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    markup: AnchorMarkup = DEFAULT_MARKUP,
    **template_kwargs: Any,
) -> tuple[str, list[Span]]:
    """Applies the chat template to messages carrying anchor markup and locates the anchors.

    The tags pass through the template as ordinary text and are parsed from the rendered string, so
    whatever the template does to the content (trimming, prefixes) is reflected in the spans. Tokenise
    the result with ``add_special_tokens=False``: the template already placed its special tokens.
    Message contents should already have untrusted parts escaped (:func:`anchor`).

    Args:
        tokenizer: A tokenizer with a chat template.
        messages: ``{"role": ..., "content": ...}`` dicts; string contents may hold anchor markup.
        add_generation_prompt: Passed to ``apply_chat_template``.
        markup: The tags to recognise.
        **template_kwargs: Extra arguments for ``apply_chat_template`` (e.g. ``enable_thinking``).

    Returns:
        The clean rendered prompt and the anchored character spans in it.

    Raises:
        AnchorMarkupError: A message's markup is malformed (the message index and offset are named).
        AnchorTemplateError: An anchor overlaps a special token of the tokenizer, or the template
            dropped or altered anchor markup so that fewer anchors survive rendering.
    """
    specials = special_token_strings(tokenizer)
    messages = _neutralized_messages(messages, specials)
    expected = 0
    for index, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str):
            try:
                expected += len(parse_anchor_markup(content, markup)[1])
            except AnchorMarkupError as exc:
                raise AnchorMarkupError(f"message {index} ({message.get('role')!r}): {exc}") from exc
    rendered = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, **template_kwargs
    )
    if not isinstance(rendered, str):
        raise AnchorTemplateError(f"apply_chat_template returned {type(rendered).__name__}, expected str")
    try:
        clean, spans = parse_anchor_markup(rendered, markup)
    except AnchorMarkupError as exc:
        raise AnchorTemplateError(f"the chat template broke the anchor markup: {exc}") from exc
    if len(spans) < expected:
        raise AnchorTemplateError(
            f"the messages hold {expected} anchors but only {len(spans)} survive the chat template; "
            f"it drops or rewrites message content"
        )
    _check_special_overlap(clean, spans, specials)
    return clean, spans


def _check_special_overlap(clean: str, spans: Sequence[Span], specials: Sequence[str]) -> None:
    """Raises if any anchor overlaps a special-token string of the rendered prompt.

    Hiding a special token (``<|im_end|>`` …) would hide the conversation's structure from the masked
    branch, and an anchor edge inside one cannot be mapped onto whole tokens faithfully.
    """
    for tok_start, tok_end, token in _special_token_ranges(clean, specials):
        for span_start, span_end in spans:
            if tok_start < span_end and tok_end > span_start:
                raise AnchorTemplateError(
                    f"anchor {(span_start, span_end)!r} overlaps special token {token!r} at offset "
                    f"{tok_start} of the rendered prompt {_excerpt(clean, tok_start)}; keep anchors inside "
                    f"message text and escape or remove special tokens from untrusted content"
                )
