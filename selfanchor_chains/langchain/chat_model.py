"""ChatSteeredHF: a LangChain chat model that decodes locally with Self-Anchor / SPA attention steering.

The messages are rendered with the tokenizer's own chat template; anchors written as ``<anchor>…</anchor>`` inside
message contents (or passed at call time as substrings) are located after templating, so whatever the template does
to a content is reflected in the anchored token spans. Decoding runs through
:class:`~selfanchor_chains.langchain.runtime.SteeredRuntime`: one engine session at a time per model, async calls in a
worker thread.

Batching: LangChain hands a chat model one conversation per ``_generate`` call, even from ``generate([...])`` or
``batch([...])``. Those two entry points are overridden to publish a *plan* of every conversation (a ``ContextVar``
that the per-conversation calls, in this thread or the batch's worker threads/tasks, can see); the first
per-conversation call that finds its conversation in the plan decodes the whole group in one engine session and the
others read their rows' events from queues, so each conversation still reports its own tokens to its own run.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from langchain_core.caches import BaseCache
from langchain_core.callbacks import Callbacks
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
)
from langchain_core.outputs import ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, field_validator

from ..prompting.inputs import PreparedPrompt
from ..prompting.text_checks import check_encodable
from .chat_answer import ChatAnswer
from .chat_batching import (
    AsyncDecodeGroup,
    BatchPlan,
    ChatRequest,
    DecodeGroup,
    RowItem,
    SyncDecodeGroup,
    aplanned_or_single_items,
    planned_or_single_items,
    published,
)
from .chat_rendering import MESSAGE_TYPES, ChatRenderer
from .params import NonNegativeInt, Omega, PositiveInt, Seconds, Temperature, TopP
from .runtime import SteeredRuntime, attach_runtime
from .signatures import AsyncLLMRun, BatchConfig, ChatInputs, LLMRun
from .steering import SteeredModelMixin, with_overrides
from .streaming import areported, reported

__all__ = ["ChatSteeredHF"]

# Call-time options that change the output: folded into a model copy (validated like the fields).
_OVERRIDABLE = ("omega", "max_tokens", "temperature", "top_p", "top_k", "seed", "timeout")
_ALIASES = {"max_new_tokens": "max_tokens"}

_NO_TOOLS = (
    "ChatSteeredHF does not support tool calling or structured output: it decodes free text from a small local "
    "model. Parse the text yourself (e.g. with an output parser) or use a model with native tool calling."
)


class ChatSteeredHF(SteeredModelMixin, BaseChatModel):
    """Local Hugging Face chat model with anchored-prompt steering, as a LangChain chat model.

    Anchors are written into message contents as ``<anchor>…</anchor>`` (escape untrusted text with
    :func:`~selfanchor_chains.prompting.anchor` or :func:`~selfanchor_chains.prompting.format_docs_anchored`), or
    passed at call time as ``chat.invoke(messages, anchors=["substring"])`` (every occurrence in any message).
    While decoding, the logits are ``ω·l_orig + (1−ω)·l_masked`` where the masked branch cannot attend to the
    anchors.

    Markup is read only in the message types named by ``markup_message_types`` (system, human and generic chat
    messages by default); AI and tool message contents come from models and tools, not from a prompt author, so
    they are taken literally (a ``</anchor>`` in a tool result can never move an anchor).

    ``timeout`` bounds the wall time of one call (a batch is one call), waiting for the model included. It is
    checked between decode steps: rows still running are stopped and returned with what they have so far and
    ``finish_reason="timeout"`` instead of raising, so an agent can see the cut.

    ``max_retries`` retries a decode that failed with a transient error before any token was produced; locally the
    only such error is running out of accelerator memory (``torch.OutOfMemoryError``). Everything else (bad
    input, anchors not found) fails at once.

    Tool calling and structured output are not supported (``bind_tools`` raises ``NotImplementedError``). Tool
    messages in a history are rendered as text: with the template's ``tool`` role if it renders it, else as a user
    turn ``Tool result (name): …``.

    Example:
        .. code-block:: python

            from langchain_core.messages import HumanMessage, SystemMessage
            from selfanchor_chains.langchain.chat_model import ChatSteeredHF

            chat = ChatSteeredHF.from_model_id("smollm2-135m", omega=1.5, max_tokens=128)
            chat.invoke([
                SystemMessage("Answer briefly."),
                HumanMessage("<anchor>Answer with a single number.</anchor> What is 17 * 3?"),
            ])
    """

    model: Any = Field(default=None, exclude=True)
    """A loaded ``transformers`` causal LM."""
    tokenizer: Any = Field(default=None, exclude=True)
    """Its (fast) tokenizer, with a chat template."""
    model_id: str = ""
    """Identity of the weights (registry name, path or hub id); reported as ``model_name``."""
    omega: Omega = 1.5
    """Steering strength: 1 = plain decoding, > 1 amplifies the anchors."""
    max_tokens: PositiveInt = Field(default=256, validation_alias=AliasChoices("max_tokens", "max_new_tokens"))
    """Most new tokens per answer (``max_new_tokens`` is accepted as an alias)."""
    temperature: Temperature = 0.0
    """0 = greedy."""
    top_p: TopP = 1.0
    top_k: NonNegativeInt = 0
    seed: int | None = None
    stop: list[str] | None = None
    """Default stop strings; a call's own ``stop`` replaces them. The answer ends before the first one."""
    timeout: Seconds | None = None
    """Seconds per call; see the class docstring."""
    max_retries: NonNegativeInt = 2
    """Retries of a decode that failed with a transient error; see the class docstring."""
    streaming: bool = False
    """Route ``invoke`` through the streaming path (legacy LangChain flag)."""
    anchor_open_tag: str = "<anchor>"
    anchor_close_tag: str = "</anchor>"
    markup_message_types: tuple[str, ...] = ("system", "human", "chat")
    """LangChain message types (``message.type``) whose contents are parsed for anchor markup."""
    batch_size: PositiveInt = 8
    """Conversations decoded together in one engine session."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    _runtime: SteeredRuntime | None = PrivateAttr(default=None)
    llm_type_name: ClassVar[str] = "selfanchor-chat-steered-hf"
    budget_field: ClassVar[str] = "max_tokens"
    own_identifying_fields: ClassVar[tuple[str, ...]] = ("max_tokens", "stop", "markup_message_types")

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not all(value):
            raise ValueError("stop strings must be non-empty")
        return value

    @field_validator("markup_message_types")
    @classmethod
    def _check_markup_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - MESSAGE_TYPES)
        if unknown:
            raise ValueError(f"unknown message types {unknown}; choose from {sorted(MESSAGE_TYPES)}")
        return value

    def model_post_init(self, context: Any, /) -> None:
        self.model_id, self._runtime = attach_runtime(
            "ChatSteeredHF", self.model, self.tokenizer, self.model_id, self.anchor_open_tag, self.anchor_close_tag
        )
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                "ChatSteeredHF needs a tokenizer with a chat template; use SteeredHFLLM for plain completion"
            )

    @property
    def model_name(self) -> str:
        """The name reported in ``response_metadata`` and traces (``model_id``)."""
        return self.model_id

    def _resolve_model_profile(self) -> ModelProfile | None:
        # Agents and middleware read the profile to decide what to send; a small local text model has few powers.
        profile = ModelProfile(
            name=self.model_id,
            open_weights=True,
            text_inputs=True,
            image_inputs=False,
            image_url_inputs=False,
            pdf_inputs=False,
            audio_inputs=False,
            video_inputs=False,
            text_outputs=True,
            tool_calling=False,
            tool_choice=False,
            structured_output=False,
        )
        context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if isinstance(context, int):
            profile["max_input_tokens"] = context
        return profile

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "selfanchor"
        model = kwargs.get("model")
        params["ls_model_name"] = model if isinstance(model, str) and model else self.model_name
        if isinstance(kwargs.get("max_new_tokens"), int):
            params["ls_max_tokens"] = kwargs["max_new_tokens"]
        effective_stop = stop if stop is not None else self.stop
        if effective_stop:
            params["ls_stop"] = list(effective_stop)
        return params

    # -- tools (unsupported) ---------------------------------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Not supported: raises ``NotImplementedError``."""
        raise NotImplementedError(_NO_TOOLS)

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Not supported: raises ``NotImplementedError``."""
        raise NotImplementedError(_NO_TOOLS)

    # -- preparing prompts -----------------------------------------------------------------------------------------

    def prepare(self, messages: LanguageModelInput, anchors: Sequence[str] = ()) -> PreparedPrompt:
        """Render a conversation with the chat template and locate its anchors, as the model will see it.

        Args:
            messages: Anything ``invoke`` accepts (messages, ``(role, text)`` tuples, a string, a prompt value).
            anchors: Call-time anchors: substrings of message contents (every occurrence in every message).

        Returns:
            The rendered prompt text (no markup), its token ids and the anchored token and character spans.

        Raises:
            AnchorError: Bad markup, an anchor not found, or an anchor the template cannot carry.
            ValueError: A message type or content block this text-only model cannot render.
        """
        return self._render(self._convert_input(messages).to_messages(), anchors)

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` under the model's own tokenizer (no special tokens)."""
        return list(self.tokenizer.encode(check_encodable(text, "text"), add_special_tokens=False))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens of the conversation as rendered by the chat template (generation prompt included)."""
        if tools:
            raise NotImplementedError(_NO_TOOLS)
        return len(self._render(messages, ()).ids)

    def _render(self, messages: Sequence[BaseMessage], anchors: Sequence[str]) -> PreparedPrompt:
        return ChatRenderer(self.tokenizer, self.markup, self.markup_message_types).render(messages, anchors)

    # -- call options ----------------------------------------------------------------------------------------------

    def _split_overrides(self, kwargs: dict[str, Any]) -> tuple[ChatSteeredHF, dict[str, Any]]:
        for alias, name in _ALIASES.items():
            if alias in kwargs:
                if name in kwargs:
                    raise TypeError(f"pass either {name} or {alias}, not both")
                kwargs[name] = kwargs.pop(alias)
        overrides = {k: kwargs.pop(k) for k in _OVERRIDABLE if k in kwargs}
        return with_overrides(self, overrides), kwargs

    def _take_options(self, kwargs: dict[str, Any]) -> tuple[str, ...]:
        """Pop the call options other than overrides; returns the call-time anchors."""
        anchors = kwargs.pop("anchors", None) or ()
        kwargs.pop("stream", None)  # LangChain's own streaming switch, already acted on
        model = kwargs.pop("model", None)
        if model is not None and model not in (self.model_id, self.model_name):
            raise ValueError(
                f"ChatSteeredHF serves one loaded model ({self.model_name!r}); a call-time model={model!r} "
                "cannot switch weights. Build another ChatSteeredHF instead."
            )
        if "tools" in kwargs or "tool_choice" in kwargs or "functions" in kwargs:
            raise NotImplementedError(_NO_TOOLS)
        if kwargs:
            raise TypeError(
                f"unexpected keyword arguments {sorted(kwargs)}; supported at call time: anchors, stop, "
                + ", ".join([*_OVERRIDABLE, *_ALIASES])
            )
        if isinstance(anchors, str):
            raise TypeError("anchors must be a list of strings, not a single string")
        return tuple(anchors)

    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _request(self, messages: Sequence[BaseMessage], stop: list[str] | None, anchors: Sequence[str]) -> ChatRequest:
        return ChatRequest(self._render(messages, anchors), self.omega, self._settings(stop))

    def _resolve(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[ChatSteeredHF, ChatRequest]:
        target, rest = self._split_overrides(dict(kwargs))
        anchors = target._take_options(rest)
        return target, target._request(messages, stop, anchors)

    def _output(self, request: ChatRequest) -> ChatAnswer:
        return ChatAnswer(self.tokenizer, len(request.prompt.ids), request.omega, self.model_name)

    def _single(self, request: ChatRequest, group_type: type[DecodeGroup]) -> Any:
        return group_type(
            self.runtime, [request], deadline=self._deadline(), max_retries=self.max_retries, shared=False
        )

    # -- batching plans --------------------------------------------------------------------------------------------

    def _llm_cache_active(self) -> bool:
        if isinstance(self.cache, BaseCache):
            return True
        return self.cache is not False and get_llm_cache() is not None

    def _plan(
        self,
        conversations: Sequence[Sequence[BaseMessage]],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        *,
        is_async: bool,
    ) -> BatchPlan | None:
        """Prepare every conversation up front; None when there is nothing to gain.

        With an LLM cache active each conversation may be served from it, and decoding it anyway would waste the
        work, so no plan is made. Conversations that fail to prepare are left out: their own calls report the error.
        """
        if len(conversations) < 2 or self._llm_cache_active():
            return None
        try:
            target, rest = self._split_overrides(dict(kwargs))
            for key in ("tags", "metadata", "run_name", "run_id"):
                rest.pop(key, None)
            anchors = target._take_options(rest)
        except Exception:
            return None  # every call raises the same error itself
        context = target.runtime.decoder.context_length
        requests: list[ChatRequest] = []
        for messages in conversations:
            try:
                request = target._request(messages, stop, anchors)
            except Exception:
                continue
            if context is None or len(request.prompt.ids) < context:
                requests.append(request)
        if len(requests) < 2:
            return None
        group_type: type[DecodeGroup] = AsyncDecodeGroup if is_async else SyncDecodeGroup
        deadline = target._deadline()
        groups = [
            group_type(
                target.runtime,
                requests[i : i + target.batch_size],
                deadline=deadline,
                max_retries=target.max_retries,
                shared=True,
            )
            for i in range(0, len(requests), target.batch_size)
        ]
        return BatchPlan(target.runtime, groups, is_async)

    def _batch_plan(
        self, inputs: Sequence[LanguageModelInput], kwargs: dict[str, Any], *, is_async: bool
    ) -> BatchPlan | None:
        if len(inputs) < 2:
            return None
        options = dict(kwargs)
        stop = options.pop("stop", None)
        return self._plan(self._conversations(inputs), stop, options, is_async=is_async)

    def _conversations(self, inputs: Sequence[LanguageModelInput]) -> list[list[BaseMessage]]:
        conversations = []
        for item in inputs:
            try:
                conversations.append(self._convert_input(item).to_messages())
            except Exception:
                conversations.append([])  # rendered (and rejected) by its own call
        return conversations

    def generate(
        self, messages: list[list[BaseMessage]], stop: list[str] | None = None, callbacks: Callbacks = None, **kw: Any
    ) -> LLMResult:
        with published(self._plan(messages, stop, kw, is_async=False)):
            return super().generate(messages, stop=stop, callbacks=callbacks, **kw)

    async def agenerate(
        self, messages: list[list[BaseMessage]], stop: list[str] | None = None, callbacks: Callbacks = None, **kw: Any
    ) -> LLMResult:
        with published(self._plan(messages, stop, kw, is_async=True)):
            return await super().agenerate(messages, stop=stop, callbacks=callbacks, **kw)

    def batch(
        self, inputs: ChatInputs, config: BatchConfig = None, *, return_exceptions: bool = False, **kw: Any
    ) -> list[AIMessage]:
        # The batch's worker threads copy this context, so each invoke finds its conversation in the plan.
        with published(self._batch_plan(inputs, kw, is_async=False)):
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kw)

    async def abatch(
        self, inputs: ChatInputs, config: BatchConfig = None, *, return_exceptions: bool = False, **kw: Any
    ) -> list[AIMessage]:
        with published(self._batch_plan(inputs, kw, is_async=True)):
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kw)

    # -- decoding --------------------------------------------------------------------------------------------------

    def _items(self, request: ChatRequest) -> Iterator[RowItem]:
        return planned_or_single_items(self.runtime, request, lambda: self._single(request, SyncDecodeGroup))

    def _aitems(self, request: ChatRequest) -> AsyncGenerator[RowItem, None]:
        return aplanned_or_single_items(self.runtime, request, lambda: self._single(request, AsyncDecodeGroup))

    def _answer_chunks(
        self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any, kwargs: dict[str, Any]
    ) -> tuple[ChatAnswer, Iterator[ChatGenerationChunk]]:
        """The answer being assembled and its stream chunks, each reported to the callbacks (in invoke too, so
        astream_events and LangGraph can stream it)."""
        target, request = self._resolve(messages, stop, kwargs)
        output = target._output(request)
        return output, reported((output.chunk(output.feed(item)) for item in target._items(request)), run_manager)

    def _aanswer_chunks(
        self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any, kwargs: dict[str, Any]
    ) -> tuple[ChatAnswer, AsyncIterator[ChatGenerationChunk]]:
        """The async face of :meth:`_answer_chunks` (callbacks awaited; the decoding closed with the stream)."""
        target, request = self._resolve(messages, stop, kwargs)
        output = target._output(request)
        items = target._aitems(request)
        return output, areported((output.chunk(output.feed(item)) async for item in items), run_manager, items)

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: LLMRun = None, **kwargs: Any
    ) -> ChatResult:
        output, chunks = self._answer_chunks(messages, stop, run_manager, kwargs)
        for _ in chunks:
            pass
        return output.result()

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: AsyncLLMRun = None, **kwargs: Any
    ) -> ChatResult:
        output, chunks = self._aanswer_chunks(messages, stop, run_manager, kwargs)
        async for _ in chunks:
            pass
        return output.result()

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: LLMRun = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._answer_chunks(messages, stop, run_manager, kwargs)[1]

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: AsyncLLMRun = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self._aanswer_chunks(messages, stop, run_manager, kwargs)[1]:
            yield chunk
