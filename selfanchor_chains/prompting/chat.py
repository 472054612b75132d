"""Rendering chat messages through the tokenizer's chat template with anchored spans kept, and the chat content's
control tokens neutralised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
from .control_tokens import _special_token_ranges, neutralize_special_tokens, special_token_strings
from .markup import (
    DEFAULT_MARKUP,
    AnchorMarkup,
    AnchorMarkupError,
    AnchorTemplateError,
    Span,
    _excerpt,
    parse_anchor_markup,
)


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
