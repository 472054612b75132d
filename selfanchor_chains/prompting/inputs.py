"""Turn a prompt (markup and/or call-time anchors, raw or chat) into token ids and anchored token spans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .chat import render_chat_with_anchors
from .control_tokens import neutralize_in_spans, special_token_strings
from .markup import DEFAULT_MARKUP, AnchorMarkup, Span, escape_anchor_markup, parse_anchor_markup
from .spans import check_whole_prompt, merge_spans, resolve_anchor_strings, tokenize_with_anchors
from .text_checks import check_encodable

__all__ = ["PreparedPrompt", "markup_from_spans", "prepare_chat", "prepare_prompt"]


@dataclass(frozen=True)
class PreparedPrompt:
    """What the engine needs for one row, plus the rendered text for inspection."""

    text: str
    ids: list[int]
    token_spans: list[Span]
    char_spans: list[Span]

    def anchored_texts(self) -> list[str]:
        return [self.text[a:b] for a, b in self.char_spans]


def markup_from_spans(clean: str, spans: Sequence[Span], markup: AnchorMarkup = DEFAULT_MARKUP) -> str:
    """Rebuild markup text in which exactly ``spans`` of ``clean`` are anchored (everything else escaped)."""
    pieces, cursor = [], 0
    for start, end in merge_spans(spans):
        pieces.append(escape_anchor_markup(clean[cursor:start], markup))
        pieces.append(markup.open_tag + escape_anchor_markup(clean[start:end], markup) + markup.close_tag)
        cursor = end
    pieces.append(escape_anchor_markup(clean[cursor:], markup))
    return "".join(pieces)


def _with_call_anchors(text: str, anchors: Sequence[str | Span], markup: AnchorMarkup) -> str:
    if not anchors:
        return text
    clean, spans = parse_anchor_markup(text, markup)
    return markup_from_spans(clean, [*spans, *resolve_anchor_strings(clean, anchors)], markup)


def prepare_prompt(
    tokenizer: Any,
    text: str,
    *,
    anchors: Sequence[str | Span] = (),
    chat: bool = False,
    system: str | None = None,
    markup: AnchorMarkup = DEFAULT_MARKUP,
) -> PreparedPrompt:
    """Tokenise a prompt whose anchors come from markup in ``text`` and/or call-time ``anchors``.

    Args:
        tokenizer: A fast tokenizer (offsets are needed to map characters to tokens).
        text: The prompt; may contain ``<anchor>…</anchor>`` markup.
        anchors: Extra anchors: substrings (every occurrence) or ``(start, end)`` character spans of the
            prompt with its markup removed.
        chat: Wrap the prompt as one user message in the tokenizer's chat template.
        system: Optional system message (chat only).
        markup: The anchor tags.

    Special-token strings inside anchors (untrusted text) are neutralised, so they are read as plain text; chat
    message contents are neutralised whole (see :func:`~selfanchor_chains.prompting.render_chat_with_anchors`).

    Raises:
        AnchorError: Bad markup, an anchor not found, or anchors that cover the whole prompt.
        UnencodableTextError: The prompt, an anchor or the system message holds a lone surrogate (the message
            names which text and the index in it).
    """
    # Positions are reported in the caller's own strings, before markup parsing or templating moves them.
    check_encodable(text, "prompt")
    for k, anchor in enumerate(anchors):
        if isinstance(anchor, str):
            check_encodable(anchor, f"anchor {k}")
    if system is not None:
        check_encodable(system, "system prompt")
    text = _with_call_anchors(text, anchors, markup)
    if chat:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return prepare_chat(tokenizer, messages, markup=markup)
    clean, char_spans = parse_anchor_markup(text, markup)
    # Anchored text is the untrusted kind (retrieved passages, tool output): its control-token strings are
    # neutralised; the rest of a plain prompt is the caller's own text (a hand-written template may use them).
    clean, char_spans = neutralize_in_spans(clean, char_spans, special_token_strings(tokenizer))
    ids, token_spans = tokenize_with_anchors(tokenizer, clean, char_spans, add_special_tokens=True)
    check_whole_prompt(token_spans, len(ids))
    return PreparedPrompt(clean, ids, token_spans, char_spans)


def prepare_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    markup: AnchorMarkup = DEFAULT_MARKUP,
) -> PreparedPrompt:
    """Apply the chat template to messages whose contents may hold anchor markup; spans found after templating.

    Raises:
        UnencodableTextError: A message's content holds a lone surrogate (named by message and index).
    """
    _check_messages(messages)
    clean, char_spans = render_chat_with_anchors(
        tokenizer, list(messages), add_generation_prompt=add_generation_prompt, markup=markup
    )
    ids, token_spans = tokenize_with_anchors(tokenizer, clean, char_spans, add_special_tokens=False)
    check_whole_prompt(token_spans, len(ids))
    return PreparedPrompt(clean, ids, token_spans, char_spans)


def _check_messages(messages: Sequence[dict[str, Any]]) -> None:
    for k, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str):
            check_encodable(content, f"message {k} content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    check_encodable(part["text"], f"message {k} content part {j}")
