"""Prompting: anchor markup and its escaping, text and chat turned into token ids with anchored token spans, and
the reasoning templates (plan/reason format, CoT, Plan-and-Solve, worked examples)."""

from .chat import render_chat_with_anchors
from .control_tokens import NEUTRALIZER, neutralize_in_spans, neutralize_special_tokens, special_token_strings
from .markup import (
    DEFAULT_MARKUP,
    ESCAPE_CHAR,
    AnchorError,
    AnchorMarkup,
    AnchorMarkupError,
    AnchorNotFoundError,
    AnchorSpanError,
    AnchorTemplateError,
    AnchorTokenizerError,
    Span,
    anchor,
    escape_anchor_markup,
    format_docs_anchored,
    parse_anchor_markup,
    strip_anchor_markup,
)
from .spans import (
    char_spans_to_token_spans,
    check_whole_prompt,
    merge_spans,
    resolve_anchor_strings,
    tokenize_with_anchors,
)
from .text_checks import UnencodableTextError, check_encodable

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
    "UnencodableTextError",
    "anchor",
    "char_spans_to_token_spans",
    "check_encodable",
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
