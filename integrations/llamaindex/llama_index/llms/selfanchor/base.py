"""SelfAnchorLLM: a LlamaIndex LLM over the selfanchor-chains steered decoding engine."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from selfanchor_chains.engine import RowRequest, RowResult, TokenEvent
from selfanchor_chains.langchain.llm import SteeredHFLLM
from selfanchor_chains.langchain.runtime import DecodeSettings
from selfanchor_chains.langchain.steering import decode_settings, with_overrides
from selfanchor_chains.prompting.inputs import PreparedPrompt, markup_from_spans, prepare_chat, prepare_prompt
from selfanchor_chains.prompting.markup import AnchorNotFoundError, parse_anchor_markup
from selfanchor_chains.prompting.spans import resolve_anchor_strings

__all__ = ["SelfAnchorLLM"]

# Call-time options (keyword arguments of complete/chat and their stream/async variants) that change decoding.
_OVERRIDABLE = ("omega", "max_new_tokens", "temperature", "top_p", "top_k", "seed")
_ALIASES = {"max_tokens": "max_new_tokens"}
# Chat roles of LlamaIndex mapped onto the roles Hugging Face chat templates know.
_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}


class SelfAnchorLLM(CustomLLM):
    """A local Hugging Face model with Self-Anchor / SPA attention steering, as a LlamaIndex LLM.

    Anchors are written into prompts and message contents as ``<anchor>…</anchor>`` (the markup of
    :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM`; escape untrusted text with
    :func:`selfanchor_chains.prompting.anchor`, or build query-engine prompts with
    :func:`~llama_index.llms.selfanchor.anchored_prompt`, which anchors and escapes template variables), or passed
    at call time as ``anchors=["substring", ...]``. While decoding, the logits are ``ω·l_orig + (1−ω)·l_masked``,
    where the masked branch cannot attend to the anchors.

    Every entry point streams from the engine: the async ones (``acomplete``, ``astream_complete``, ``achat``,
    ``astream_chat``) decode in a worker thread and never block the event loop. Calls on one model are serialised
    (one decoding session at a time), also across this class, ``SteeredHFLLM`` and ``ChatSteeredHF``.

    Args:
        llm: The steered LangChain LLM whose model, tokenizer and anchor markup are used; the decoding settings
            below default to its own.
        omega: Steering strength (1 = plain decoding, > 1 amplifies the anchors).
        max_new_tokens: Tokens generated per call (``metadata.num_output``).
        temperature: 0 = greedy.
        top_p: Nucleus sampling mass.
        top_k: Top-k sampling (0 = off).
        seed: Sampling seed.
        context_window: Prompt + output tokens; default: the model's ``max_position_embeddings``.
        use_chat_template: Render prompts and messages with the tokenizer's chat template (``is_chat_model``).

    Example:
        .. code-block:: python

            from llama_index.llms.selfanchor import SelfAnchorLLM

            llm = SelfAnchorLLM.from_model_id("qwen2.5-coder-0.5b", omega=1.5, max_new_tokens=128)
            llm.complete("Question: <anchor>What is 17 * 3?</anchor> Think step by step.").text
    """

    omega: float = Field(default=1.5, ge=0, description="Steering strength; 1 = plain decoding.")
    max_new_tokens: int = Field(default=256, ge=1, description="Tokens generated per call.")
    temperature: float = Field(default=0.0, ge=0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(default=0, ge=0, description="Top-k sampling; 0 = off.")
    seed: int | None = Field(default=None, description="Sampling seed.")
    context_window: int | None = Field(default=None, ge=1, description="Default: the model's position limit.")
    use_chat_template: bool = Field(default=True, description="Use the tokenizer's chat template if it has one.")
    model_name: str = Field(default="", description="Identity of the weights (default: the steered LLM's).")

    _steered: SteeredHFLLM = PrivateAttr()

    @field_validator("omega", "temperature")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        return value

    def __init__(self, llm: SteeredHFLLM, **kwargs: Any) -> None:
        if not isinstance(llm, SteeredHFLLM):
            raise TypeError(f"SelfAnchorLLM needs a selfanchor_chains SteeredHFLLM, got {type(llm).__name__}")
        for name in (*_OVERRIDABLE, "system_prompt"):
            if name not in kwargs and getattr(llm, name, None) is not None:
                kwargs[name] = getattr(llm, name)
        kwargs.setdefault("model_name", llm.model_id)
        kwargs.setdefault("use_chat_template", llm.chat)
        super().__init__(**kwargs)
        self._steered = llm

    @classmethod
    def from_model_id(
        cls,
        model_id: str,
        *,
        dtype: str = "auto",
        quantization: str | None = "auto",
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> SelfAnchorLLM:
        """Load a registry model (``smollm2-135m``, ``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``), a local
        safetensors directory or a hub id you already have, and wrap it.

        Args:
            model_id: Registry name, local path or hub id.
            dtype: Weights dtype: ``"auto"`` (default: bfloat16 where the hardware computes it natively, else
                float32 on a CPU), ``"bfloat16"``, ``"float16"`` or ``"float32"``.
            quantization: ``"auto"`` (default: the measured CPU default where it is faster, else dense weights),
                ``None`` (dense), ``"int8"`` or ``"int4"``: weight-only quantized CPU decoding through torchao
                (computes in bfloat16).
            trust_remote_code: Passed to ``from_pretrained``.
            **kwargs: Fields of this class (``omega``, ``max_new_tokens``, ``system_prompt``, ...).
        """
        steered = SteeredHFLLM.from_model_id(
            model_id, dtype=dtype, quantization=quantization, trust_remote_code=trust_remote_code
        )
        return cls(llm=steered, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "SelfAnchorLLM"

    @property
    def steered(self) -> SteeredHFLLM:
        """The underlying LangChain LLM (model, tokenizer, anchor markup, runtime)."""
        return self._steered

    @property
    def metadata(self) -> LLMMetadata:
        config = getattr(self._steered.model, "config", None)
        window = self.context_window or int(getattr(config, "max_position_embeddings", 0) or 2048)
        return LLMMetadata(
            context_window=window,
            num_output=self.max_new_tokens,
            is_chat_model=self._chat_template(),
            is_function_calling_model=False,
            model_name=self.model_name,
        )

    # -- preparing rows --------------------------------------------------------------------------------------------

    def _chat_template(self) -> bool:
        return self.use_chat_template and bool(getattr(self._steered.tokenizer, "chat_template", None))

    def _options(self, kwargs: dict[str, Any]) -> tuple[SelfAnchorLLM, list[str], list[Any]]:
        """Split call-time kwargs into a validated settings holder, stop strings and call-time anchors."""
        for alias, name in _ALIASES.items():
            if alias in kwargs:
                kwargs[name] = kwargs.pop(alias)
        stop = list(kwargs.pop("stop", None) or [])
        anchors = list(kwargs.pop("anchors", None) or [])
        overrides = {k: kwargs.pop(k) for k in _OVERRIDABLE if k in kwargs}
        if kwargs:
            raise TypeError(
                f"unexpected keyword arguments {sorted(kwargs)}; supported at call time: anchors, stop, max_tokens, "
                + ", ".join(_OVERRIDABLE)
            )
        if not overrides:
            return self, stop, anchors
        return with_overrides(self, overrides), stop, anchors

    def _settings(self, stop: Sequence[str]) -> DecodeSettings:
        return decode_settings(
            max_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed,
            stop=stop,
        )

    def _prepare_completion(self, prompt: str, formatted: bool, anchors: Sequence[Any]) -> PreparedPrompt:
        markup = self._steered.markup
        tokenizer = self._steered.tokenizer
        if formatted:
            # A formatted prompt is final text (LlamaIndex has already applied its templates): no chat wrapping.
            return prepare_prompt(tokenizer, prompt, anchors=anchors, chat=False, markup=markup)
        text = self.completion_to_prompt(prompt) if self.completion_to_prompt is not None else prompt
        if not self._chat_template():
            if self.system_prompt:
                text = self.system_prompt + "\n\n" + text
            return prepare_prompt(tokenizer, text, anchors=anchors, chat=False, markup=markup)
        return prepare_prompt(tokenizer, text, anchors=anchors, chat=True, system=self.system_prompt, markup=markup)

    def _prepare_chat(self, messages: Sequence[ChatMessage], anchors: Sequence[Any]) -> PreparedPrompt:
        markup = self._steered.markup
        if not self._chat_template():
            assert self.messages_to_prompt is not None  # LLM's validator sets the generic one
            text = self.messages_to_prompt(messages)
            return prepare_prompt(self._steered.tokenizer, text, anchors=anchors, chat=False, markup=markup)
        rendered = [{"role": _ROLES.get(m.role, "user"), "content": self._message_text(m)} for m in messages]
        if anchors:
            rendered = _anchor_messages(rendered, anchors, markup)
        return prepare_chat(self._steered.tokenizer, rendered, markup=markup)

    @staticmethod
    def _message_text(message: ChatMessage) -> str:
        texts = []
        for block in message.blocks:
            text = getattr(block, "text", None)
            if not isinstance(text, str):
                raise ValueError(
                    f"SelfAnchorLLM is text-only; a {message.role.value} message holds a {type(block).__name__}"
                )
            texts.append(text)
        return "".join(texts)

    def _row(self, prepared: PreparedPrompt) -> list[RowRequest]:
        return [RowRequest(prepared.ids, prepared.token_spans, self.omega)]

    # -- decoding --------------------------------------------------------------------------------------------------

    def _decode(self, prepared: PreparedPrompt, stop: Sequence[str]) -> RowResult:
        sessions: list[Any] = []
        for _ in self._steered.runtime.events(self._row(prepared), self._settings(stop), session_out=sessions):
            pass
        return sessions[0].results()[0]

    async def _adecode(self, prepared: PreparedPrompt, stop: Sequence[str]) -> RowResult:
        sessions: list[Any] = []
        async for _ in self._steered.runtime.aevents(self._row(prepared), self._settings(stop), session_out=sessions):
            pass
        return sessions[0].results()[0]

    def _events(self, prepared: PreparedPrompt, stop: Sequence[str]) -> Iterator[TokenEvent]:
        for step in self._steered.runtime.events(self._row(prepared), self._settings(stop)):
            yield from step

    async def _aevents(self, prepared: PreparedPrompt, stop: Sequence[str]) -> AsyncIterator[TokenEvent]:
        async for step in self._steered.runtime.aevents(self._row(prepared), self._settings(stop)):
            for event in step:
                yield event

    def _info(self, prepared: PreparedPrompt, result: RowResult | None = None, **extra: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "omega": self.omega,
            "prompt_tokens": len(prepared.ids),
            "anchors": prepared.anchored_texts(),
            **extra,
        }
        if result is not None:
            info.update(
                finish_reason=result.finish_reason,
                completion_tokens=len(result.token_ids),
                mean_confidence=result.mean_confidence,
            )
        return info

    # -- completion ------------------------------------------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Generate a completion.

        Args:
            prompt: The prompt; may hold ``<anchor>…</anchor>`` markup.
            formatted: The prompt is final text: do not apply ``completion_to_prompt``, the system prompt or the
                chat template.
            **kwargs: ``anchors`` (substrings or character spans to anchor), ``stop``, ``max_tokens`` /
                ``max_new_tokens``, ``omega``, ``temperature``, ``top_p``, ``top_k``, ``seed``.
        """
        target, stop, anchors = self._options(dict(kwargs))
        prepared = target._prepare_completion(prompt, formatted, anchors)
        result = target._decode(prepared, stop)
        return CompletionResponse(text=result.text, additional_kwargs=target._info(prepared, result))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Generate a completion, token by token (``delta`` is the new text, ``text`` the text so far)."""
        target, stop, anchors = self._options(dict(kwargs))
        # Prepared before the generator starts, so bad anchors raise at the call rather than at the first next().
        prepared = target._prepare_completion(prompt, formatted, anchors)

        def gen() -> CompletionResponseGen:
            text = ""
            for event in target._events(prepared, stop):
                if not event.text and event.finish_reason is None:
                    continue
                text += event.text
                info = target._info(prepared, finish_reason=event.finish_reason) if event.finish_reason else {}
                yield CompletionResponse(text=text, delta=event.text, additional_kwargs=info)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async :meth:`complete`; decoding runs in a worker thread, so the event loop stays free."""
        target, stop, anchors = self._options(dict(kwargs))
        prepared = target._prepare_completion(prompt, formatted, anchors)
        result = await target._adecode(prepared, stop)
        return CompletionResponse(text=result.text, additional_kwargs=target._info(prepared, result))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`; tokens arrive from a worker thread without blocking the event loop."""
        target, stop, anchors = self._options(dict(kwargs))
        prepared = target._prepare_completion(prompt, formatted, anchors)

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for event in target._aevents(prepared, stop):
                if not event.text and event.finish_reason is None:
                    continue
                text += event.text
                info = target._info(prepared, finish_reason=event.finish_reason) if event.finish_reason else {}
                yield CompletionResponse(text=text, delta=event.text, additional_kwargs=info)

        return gen()

    # -- chat ------------------------------------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Reply to a conversation, rendered with the model's chat template; anchors may sit in any message.

        Args:
            messages: The conversation (text content only).
            **kwargs: As :meth:`complete`; ``anchors`` are substrings, anchored wherever they occur in the messages.
        """
        target, stop, anchors = self._options(dict(kwargs))
        prepared = target._prepare_chat(messages, anchors)
        result = target._decode(prepared, stop)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=result.text),
            additional_kwargs=target._info(prepared, result),
        )

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """:meth:`chat`, token by token (``delta`` is the new text, ``message.content`` the text so far)."""
        target, stop, anchors = self._options(dict(kwargs))
        prepared = target._prepare_chat(messages, anchors)

        def gen() -> ChatResponseGen:
            text = ""
            for event in target._events(prepared, stop):
                if not event.text and event.finish_reason is None:
                    continue
                text += event.text
                info = target._info(prepared, finish_reason=event.finish_reason) if event.finish_reason else {}
                message = ChatMessage(role=MessageRole.ASSISTANT, content=text)
                yield ChatResponse(message=message, delta=event.text, additional_kwargs=info)

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`, decoding in a worker thread."""
        target, stop, anchors = self._options(dict(kwargs))
        prepared = target._prepare_chat(messages, anchors)
        result = await target._adecode(prepared, stop)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=result.text),
            additional_kwargs=target._info(prepared, result),
        )

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`, decoding in a worker thread."""
        target, stop, anchors = self._options(dict(kwargs))
        prepared = target._prepare_chat(messages, anchors)

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for event in target._aevents(prepared, stop):
                if not event.text and event.finish_reason is None:
                    continue
                text += event.text
                info = target._info(prepared, finish_reason=event.finish_reason) if event.finish_reason else {}
                message = ChatMessage(role=MessageRole.ASSISTANT, content=text)
                yield ChatResponse(message=message, delta=event.text, additional_kwargs=info)

        return gen()


def _anchor_messages(messages: list[dict[str, str]], anchors: Sequence[Any], markup: Any) -> list[dict[str, str]]:
    """Anchor every occurrence of each call-time substring in every message that contains it."""
    found = [False] * len(anchors)
    out = []
    for message in messages:
        clean, spans = parse_anchor_markup(message["content"], markup)
        extra = []
        for index, needle in enumerate(anchors):
            if not isinstance(needle, str):
                raise TypeError("chat anchors must be substrings; character spans only apply to complete()")
            if not needle or needle in clean:  # an empty one is rejected by resolve_anchor_strings
                extra.extend(resolve_anchor_strings(clean, [needle]))
                found[index] = True
        content = markup_from_spans(clean, [*spans, *extra], markup) if extra else message["content"]
        out.append({**message, "content": content})
    missing = [repr(a) for a, hit in zip(anchors, found, strict=True) if not hit]
    if missing:
        raise AnchorNotFoundError(f"anchor(s) {', '.join(missing)} occur in no message (matching is exact)")
    return out
