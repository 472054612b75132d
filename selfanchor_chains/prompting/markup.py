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
    :func:`strip_anchor_markup` to a model, never the markup string."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from langchain_core.documents import Document

if TYPE_CHECKING:
    pass


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
    top: int | None = None,
) -> str:
    """Joins documents into one context string, each escaped and wrapped as its own anchor.

    A plain function, so ``retriever | format_docs_anchored`` works in LCEL (it is coerced to a
    ``RunnableLambda``). Page contents are untrusted and are escaped here.

    Args:
        docs: Retrieved documents or strings.
        separator: Placed between documents, outside the anchors.
        markup: The tags to use.
        top: Anchor only the first ``top`` documents (a retriever's best, in rank order); the rest are escaped
            plain text. None anchors every document.

    Returns:
        The joined text. Documents with empty content are skipped (an empty anchor is invalid).

    Raises:
        TypeError: For an item that is neither a ``Document`` nor a ``str``.
        ValueError: ``top`` < 1.
    """
    if top is not None and (isinstance(top, bool) or top < 1):
        raise ValueError(f"top must be a positive number of documents, got {top!r}")
    parts: list[str] = []
    for index, doc in enumerate(docs):
        if isinstance(doc, Document):
            content = doc.page_content
        elif isinstance(doc, str):
            content = doc
        else:
            raise TypeError(f"format_docs_anchored: item {index} is {type(doc).__name__}, not Document or str")
        if content:
            parts.append(
                anchor(content, markup) if top is None or index < top else escape_anchor_markup(content, markup)
            )
    return separator.join(parts)


"""Zero-width space put inside a special-token string found in untrusted text, so that the tokenizer reads it as
plain characters instead of a control token."""
