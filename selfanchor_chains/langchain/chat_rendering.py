"""Chat messages as chat-template input: text contents, roles, tool calls as text, anchors located after
templating, and the fallbacks for templates that reject some roles."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import TemplateError
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from ..prompting.inputs import PreparedPrompt, markup_from_spans, prepare_chat
from ..prompting.markup import (
    AnchorMarkup,
    AnchorMarkupError,
    AnchorNotFoundError,
    AnchorSpanError,
    AnchorTemplateError,
    Span,
    escape_anchor_markup,
    parse_anchor_markup,
)
from ..prompting.spans import resolve_anchor_strings

MESSAGE_TYPES = frozenset({"system", "human", "ai", "tool", "function", "chat"})
# Content blocks that carry no prompt text for a text-only model; dropped rather than rejected.
_SKIPPED_BLOCKS = frozenset(
    {"reasoning", "thinking", "redacted_thinking", "tool_use", "tool_call", "tool_call_chunk", "server_tool_call"}
)


@dataclass
class TemplateTurn:
    """One message as template input: role, clean text and its anchored character spans."""

    role: str
    clean: str
    spans: list[Span]
    name: str | None = None


def content_text(index: int, message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind not in _SKIPPED_BLOCKS:
            raise ValueError(
                f"message {index} ({message.type}): content blocks of type {kind!r} are not supported; "
                "ChatSteeredHF reads text only"
            )
    return "".join(parts)


def message_role(index: int, message: BaseMessage) -> tuple[str, str]:
    """The template role and the LangChain message type (chunks count as their message type)."""
    if isinstance(message, SystemMessage):
        return "system", "system"
    if isinstance(message, HumanMessage):
        return "user", "human"
    if isinstance(message, AIMessage):
        return "assistant", "ai"
    if isinstance(message, ToolMessage):
        return "tool", "tool"
    if isinstance(message, FunctionMessage):
        return "tool", "function"
    if isinstance(message, ChatMessage):
        return message.role, "chat"
    raise ValueError(f"message {index}: unsupported message type {type(message).__name__}")


def tool_calls_text(message: AIMessage) -> str:
    return "\n".join(
        f"Tool call: {call['name']}({json.dumps(call['args'], ensure_ascii=False, sort_keys=True)})"
        for call in message.tool_calls
    )


class ChatRenderer:
    """Renders a conversation through a tokenizer's chat template with its anchors, falling back for strict
    templates (tool results as user turns, then the system prompt folded into the first user turn).

    Args:
        tokenizer: A tokenizer with a chat template.
        markup: The anchor tags.
        markup_message_types: Message types whose contents are parsed for anchor markup (others are literal).
    """

    def __init__(self, tokenizer: Any, markup: AnchorMarkup, markup_message_types: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.markup = markup
        self.markup_message_types = tuple(markup_message_types)

    def _turns(self, messages: Sequence[BaseMessage], anchors: Sequence[str]) -> list[TemplateTurn]:
        markup = self.markup
        turns: list[TemplateTurn] = []
        for index, message in enumerate(messages):
            role, kind = message_role(index, message)
            text = content_text(index, message)
            if kind in self.markup_message_types:
                try:
                    clean, spans = parse_anchor_markup(text, markup)
                except AnchorMarkupError as exc:
                    raise AnchorMarkupError(f"message {index} ({kind}): {exc}") from exc
            else:
                clean, spans = text, []
            if isinstance(message, AIMessage) and message.tool_calls:
                clean = "\n".join(p for p in (clean, tool_calls_text(message)) if p)
            name = getattr(message, "name", None) if role == "tool" else None
            turns.append(TemplateTurn(role, clean, list(spans), name))
        for index, item in enumerate(anchors):
            if not isinstance(item, str):
                raise AnchorSpanError(
                    f"anchor {index}: ChatSteeredHF takes call-time anchors as substrings of message contents, "
                    f"got {item!r}"
                )
            found = False
            for turn in turns:
                try:
                    turn.spans.extend(resolve_anchor_strings(turn.clean, [item]))
                    found = True
                except AnchorNotFoundError:
                    continue
            if not found:
                raise AnchorNotFoundError(
                    f"anchor {index} {item[:40]!r} does not occur in any message (matching is exact: case and "
                    "whitespace count)"
                )
        return turns

    def render(self, messages: Sequence[BaseMessage], anchors: Sequence[str]) -> PreparedPrompt:
        if not messages:
            raise ValueError("ChatSteeredHF needs at least one message")
        if isinstance(anchors, str):
            raise TypeError("anchors must be a list of strings, not a single string")
        turns = self._turns(messages, anchors)
        markup = self.markup
        contents = [markup_from_spans(t.clean, t.spans, markup) for t in turns]
        has_tools = any(t.role == "tool" for t in turns)
        try:
            native = prepare_chat(
                self.tokenizer,
                [{"role": t.role, "content": c} for t, c in zip(turns, contents, strict=True)],
                markup=markup,
            )
        except (TemplateError, AnchorTemplateError) as exc:
            return self._render_plain(turns, contents, exc)
        # Some templates silently drop roles they do not know; a tool result must reach the model.
        if has_tools and not all(t.clean.strip() in native.text for t in turns if t.role == "tool"):
            return self._render_plain(turns, contents, None)
        return native

    def _render_plain(
        self, turns: list[TemplateTurn], contents: list[str], error: BaseException | None
    ) -> PreparedPrompt:
        """Fallbacks for strict templates: tool results as user turns, then the system prompt folded in too."""
        markup = self.markup
        for fold_system in (False, True):
            merged: list[dict[str, str]] = []
            pending_system: list[str] = []
            for turn, content in zip(turns, contents, strict=True):
                role = turn.role
                if role == "tool":
                    label = escape_anchor_markup(turn.name or "tool", markup)
                    role, content = "user", f"Tool result ({label}):\n{content}"
                if fold_system and role == "system":
                    pending_system.append(content)
                    continue
                if fold_system and role == "user" and pending_system:
                    content = "\n\n".join([*pending_system, content])
                    pending_system = []
                # Templates that insist on alternating roles reject two turns of one role in a row.
                if merged and merged[-1]["role"] == role:
                    merged[-1]["content"] += "\n\n" + content
                else:
                    merged.append({"role": role, "content": content})
            if pending_system:
                merged.insert(0, {"role": "user", "content": "\n\n".join(pending_system)})
            try:
                return prepare_chat(self.tokenizer, merged, markup=markup)
            except (TemplateError, AnchorTemplateError) as exc:
                error = error or exc
        assert error is not None
        raise error
