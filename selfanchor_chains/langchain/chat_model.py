"""ChatSteeredHF: a LangChain chat model that decodes locally with Self-Anchor / SPA attention steering.

The messages are rendered with the tokenizer's own chat template; anchors written as ``<anchor>…</anchor>`` inside
message contents (or passed at call time as substrings) are located after templating, so whatever the template does
to a content is reflected in the anchored token spans. Decoding runs through :class:`~selfanchor_chains.langchain.runtime.
SteeredRuntime`: one engine session at a time per model, async calls in a worker thread.

Batching: LangChain hands a chat model one conversation per ``_generate`` call, even from ``generate([...])`` or
``batch([...])``. Those two entry points are overridden to publish a *plan* of every conversation (a ``ContextVar``
that the per-conversation calls, in this thread or the batch's worker threads/tasks, can see); the first
per-conversation call that finds its conversation in the plan decodes the whole group in one engine session and the
others read their rows' events from queues, so each conversation still reports its own tokens to its own run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import tenacity
import torch
from jinja2.exceptions import TemplateError
from langchain_core.caches import BaseCache
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun, Callbacks
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, field_validator

from ..engine.requests import RowRequest, SamplingConfig, TokenEvent, harmonic_mean
from ..engine.session import DecodeSession
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
from .params import NonNegativeInt, Omega, PositiveInt, Seconds, Temperature, TopP
from .runtime import DecodeSettings, SteeredRuntime, attach_runtime

__all__ = ["ChatSteeredHF"]

# Call-time options that change the output: folded into a model copy (validated like the fields).
_OVERRIDABLE = ("omega", "max_tokens", "temperature", "top_p", "top_k", "seed", "timeout")
_ALIASES = {"max_new_tokens": "max_tokens"}

_MESSAGE_TYPES = frozenset({"system", "human", "ai", "tool", "function", "chat"})
# Content blocks that carry no prompt text for a text-only model; dropped rather than rejected.
_SKIPPED_BLOCKS = frozenset(
    {"reasoning", "thinking", "redacted_thinking", "tool_use", "tool_call", "tool_call_chunk", "server_tool_call"}
)
_NO_TOOLS = (
    "ChatSteeredHF does not support tool calling or structured output: it decodes free text from a small local "
    "model. Parse the text yourself (e.g. with an output parser) or use a model with native tool calling."
)

# The conversations of the current generate()/batch() call; see the module docstring.
_PLAN: ContextVar[_Plan | None] = ContextVar("selfanchor_chat_plan", default=None)


# --------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class _Request:
    """One conversation, ready for the engine."""

    prompt: PreparedPrompt
    omega: float
    settings: DecodeSettings
    key: tuple[Any, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        spans = tuple((int(a), int(b)) for a, b in self.prompt.token_spans)
        object.__setattr__(self, "key", (tuple(self.prompt.ids), spans, self.omega, self.settings))

    def row(self) -> RowRequest:
        return RowRequest(self.prompt.ids, self.prompt.token_spans, self.omega)


@dataclass(frozen=True)
class _End:
    """A row ended without a final engine event: ``timeout``, ``cancelled``, or ``failed`` (with the error)."""

    reason: str
    error: BaseException | None = None


_Item = TokenEvent | _End


def _is_final(item: _Item) -> bool:
    return isinstance(item, _End) or item.finish_reason is not None


def _is_transient(exc: BaseException) -> bool:
    # Locally the only failure worth retrying is running out of accelerator memory while another job holds it.
    return isinstance(exc, torch.OutOfMemoryError)


def _raise_failed(error: BaseException) -> None:
    """Re-raise a shared session's failure in a conversation that had already received tokens from it."""
    if isinstance(error, Exception):
        raise error
    # GeneratorExit or an interrupt belongs to whichever consumer it hit, not to this one.
    raise RuntimeError("the batched decoding session stopped before this answer was complete") from error


def _release_memory(_: tenacity.RetryCallState) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------- sessions


@dataclass(eq=False)
class _Entry:
    request: _Request
    queue: Any
    claimed: bool = False
    done: bool = False  # its final item has been queued


class _Group:
    """Conversations decoded together in one engine session; each entry's items go to its own queue."""

    def __init__(
        self,
        runtime: SteeredRuntime,
        requests: Sequence[_Request],
        *,
        deadline: float | None,
        max_retries: int,
        shared: bool,
    ) -> None:
        self.runtime = runtime
        self.rows = [r.row() for r in requests]
        self.settings = requests[0].settings
        self.deadline = deadline
        self.max_retries = max_retries
        self.shared = shared  # part of a plan: a failed session lets each conversation decode alone
        self.entries = [_Entry(r, self._new_queue()) for r in requests]
        self.distributed = False

    def _new_queue(self) -> Any:
        raise NotImplementedError

    def _enqueue(self, entry: _Entry, item: _Item) -> None:
        entry.queue.put_nowait(item)

    def _expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _put(self, index: int, item: _Item) -> None:
        entry = self.entries[index]
        if entry.done:
            return
        entry.done = _is_final(item)
        self._enqueue(entry, item)

    def _end_all(self, item: _End) -> None:
        for index in range(len(self.entries)):
            self._put(index, item)

    def _retry_if(self, exc: BaseException) -> bool:
        # Once any row has produced a token a retry would repeat tokens that consumers already have.
        return _is_transient(exc) and not self.distributed

    def _retry_kwargs(self) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(self.max_retries + 1),
            "wait": tenacity.wait_exponential(multiplier=0.5, max=8),
            "retry": tenacity.retry_if_exception(self._retry_if),
            "before_sleep": _release_memory,
            "reraise": True,
        }


class _SyncGroup(_Group):
    """The first claimer decodes the session in its own thread; the others block on their queues."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._started = False

    def _new_queue(self) -> Any:
        return queue.Queue()

    def items(self, entry: _Entry) -> Iterator[_Item]:
        with self._lock:
            lead, self._started = not self._started, True
        return self._lead(entry) if lead else self._follow(entry)

    def _lead(self, own: _Entry) -> Iterator[_Item]:
        try:
            for attempt in tenacity.Retrying(**self._retry_kwargs()):
                with attempt:
                    yield from self._run(own)
        except Exception as exc:
            self._end_all(_End("failed", exc))
            if not self.shared:
                raise
            # Like the followers, the leader's own conversation gets the failure as an item (decode it alone).
            yield from self._drain(own)
        except BaseException as exc:  # the consumer stopped early (GeneratorExit), or an interrupt
            self._end_all(_End("failed", exc))
            raise

    def _run(self, own: _Entry) -> Iterator[_Item]:
        sessions: list[DecodeSession] = []
        timed_out = False
        steps = self.runtime.events(self.rows, self.settings, session_out=sessions)
        try:
            for step in steps:
                self.distributed = True
                for event in step:
                    self._put(event.row, event)
                if not timed_out and self._expired():
                    timed_out = True
                    for index, entry in enumerate(self.entries):
                        if not entry.done:
                            sessions[0].cancel(index)
                yield from self._drain(own)
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()  # releases the runtime lock now, not when the generator is collected
        self._end_all(_End("timeout" if timed_out else "cancelled"))
        yield from self._drain(own)

    @staticmethod
    def _drain(entry: _Entry) -> Iterator[_Item]:
        while True:
            try:
                yield entry.queue.get_nowait()
            except queue.Empty:
                return

    @staticmethod
    def _follow(entry: _Entry) -> Iterator[_Item]:
        while True:
            item = entry.queue.get()
            yield item
            if _is_final(item):
                return


class _AsyncGroup(_Group):
    """The session runs as an event-loop task (decoding itself in the runtime's worker thread)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._task: asyncio.Task[None] | None = None

    def _new_queue(self) -> Any:
        return asyncio.Queue()

    async def items(self, entry: _Entry) -> AsyncGenerator[_Item, None]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            while True:
                item = await entry.queue.get()
                yield item
                if _is_final(item):
                    return
        finally:
            if not self.shared:
                self.cancel()  # a lone consumer that stops (break, cancellation) stops the decoding

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        try:
            async for attempt in tenacity.AsyncRetrying(**self._retry_kwargs()):
                with attempt:
                    await self._run_once()
        except asyncio.CancelledError:
            self._end_all(_End("cancelled"))
            raise
        except BaseException as exc:  # handed to the consumers, who raise it or decode alone
            self._end_all(_End("failed", exc))

    async def _run_once(self) -> None:
        timed_out = False
        steps = self.runtime.aevents(self.rows, self.settings)
        try:
            async for step in steps:
                self.distributed = True
                for event in step:
                    self._put(event.row, event)
                if self._expired():
                    timed_out = True
                    break
        finally:
            aclose = getattr(steps, "aclose", None)
            if aclose is not None:
                await aclose()  # tells the worker thread to stop after its current step
        self._end_all(_End("timeout" if timed_out else "cancelled"))


class _Plan:
    """Every conversation of one generate()/batch() call, in groups of at most ``batch_size``."""

    def __init__(self, runtime: SteeredRuntime, groups: list[_Group], is_async: bool) -> None:
        self.runtime = runtime
        self.groups = groups
        self.is_async = is_async
        self._lock = threading.Lock()

    def claim(self, runtime: SteeredRuntime, key: tuple[Any, ...], is_async: bool) -> tuple[_Group, _Entry] | None:
        if runtime is not self.runtime or is_async != self.is_async:
            return None
        with self._lock:
            for group in self.groups:
                for entry in group.entries:
                    if not entry.claimed and entry.request.key == key:
                        entry.claimed = True
                        return group, entry
        return None

    def cancel(self) -> None:
        for group in self.groups:
            if isinstance(group, _AsyncGroup):
                group.cancel()


# --------------------------------------------------------------------------------------------- output


class _RowOutput:
    """One conversation's answer, built from its engine events."""

    def __init__(self, tokenizer: Any, prompt_tokens: int, omega: float, model_name: str) -> None:
        self._tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        self.omega = omega
        self.model_name = model_name
        self.text = ""
        self.token_ids: list[int] = []
        self.confidences: list[float] = []
        self.finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def feed(self, item: _Item) -> str:
        """Record one item; returns the new text it adds."""
        if isinstance(item, TokenEvent):
            if item.finish_reason != "eos":  # the EOS token is not part of the answer
                self.token_ids.append(item.token_id)
            self.confidences.append(item.confidence)
            self.text += item.text
            self.finish_reason = item.finish_reason
            return item.text
        self.finish_reason = item.reason
        rest = self._held_back()
        self.text += rest
        return rest

    def _held_back(self) -> str:
        # A row stopped from outside (timeout) never got its final flush: the engine may still hold back a tail
        # that could have grown into a stop string, or an unfinished multi-byte character (dropped).
        if not self.token_ids:
            return ""
        full = self._tokenizer.decode(self.token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        full = full.rstrip("\ufffd")
        return full[len(self.text) :] if full.startswith(self.text) else ""

    def usage(self) -> UsageMetadata:
        output_tokens = len(self.token_ids)
        return UsageMetadata(
            input_tokens=self.prompt_tokens,
            output_tokens=output_tokens,
            total_tokens=self.prompt_tokens + output_tokens,
        )

    def response_metadata(self) -> dict[str, Any]:
        return {"finish_reason": self.finish_reason, "model_name": self.model_name}

    def generation_info(self) -> dict[str, Any]:
        return {**self.response_metadata(), "omega": self.omega, "mean_confidence": harmonic_mean(self.confidences)}

    def chunk(self, text: str) -> ChatGenerationChunk | None:
        """The stream chunk for new text: plain while decoding, the one carrying usage and metadata at the end."""
        if self.finished:
            message = AIMessageChunk(
                content=text,
                usage_metadata=self.usage(),
                response_metadata=self.response_metadata(),
                chunk_position="last",
            )
            return ChatGenerationChunk(message=message, generation_info=self.generation_info())
        if not text:
            return None
        return ChatGenerationChunk(message=AIMessageChunk(content=text))

    def result(self) -> ChatResult:
        usage = self.usage()
        message = AIMessage(content=self.text, usage_metadata=usage, response_metadata=self.response_metadata())
        token_usage = {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        }
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info=self.generation_info())],
            llm_output={"token_usage": token_usage, "model_name": self.model_name},
        )


# --------------------------------------------------------------------------------------------- rendering


@dataclass
class _Turn:
    """One message as template input: role, clean text and its anchored character spans."""

    role: str
    clean: str
    spans: list[Span]
    name: str | None = None


def _content_text(index: int, message: BaseMessage) -> str:
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


def _role(index: int, message: BaseMessage) -> tuple[str, str]:
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


def _tool_calls_text(message: AIMessage) -> str:
    return "\n".join(
        f"Tool call: {call['name']}({json.dumps(call['args'], ensure_ascii=False, sort_keys=True)})"
        for call in message.tool_calls
    )


# --------------------------------------------------------------------------------------------- the model


class ChatSteeredHF(BaseChatModel):
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

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not all(value):
            raise ValueError("stop strings must be non-empty")
        return value

    @field_validator("markup_message_types")
    @classmethod
    def _check_markup_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - _MESSAGE_TYPES)
        if unknown:
            raise ValueError(f"unknown message types {unknown}; choose from {sorted(_MESSAGE_TYPES)}")
        return value

    def model_post_init(self, context: Any, /) -> None:
        self.model_id, self._runtime = attach_runtime(
            "ChatSteeredHF", self.model, self.tokenizer, self.model_id, self.anchor_open_tag, self.anchor_close_tag
        )
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                "ChatSteeredHF needs a tokenizer with a chat template; use SteeredHFLLM for plain completion"
            )

    @classmethod
    def from_model_id(
        cls,
        model_id: str,
        *,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        device: str | None = None,
        quantization: str | None = None,
        **kwargs: Any,
    ) -> ChatSteeredHF:
        """Load a registry model (``smollm2-135m``, ``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``), a local
        directory of safetensors weights, or a hub id, and wrap it.

        Args:
            model_id: Registry name, local path or hub id.
            dtype: Weights dtype. ``"auto"`` (default) is bfloat16 where the hardware computes it natively
                (CPUs with AVX-512 BF16 or AMX, GPUs) and float32 on other CPUs (see
                :func:`~selfanchor_chains.models.resolve_dtype`); or ``"bfloat16"``, ``"float16"``, ``"float32"``
                (exact, and batch-invariant on the CPU).
            trust_remote_code: Passed to ``from_pretrained``; keep ``False`` unless you trust the repository.
            device: Where to put the weights (default the CPU); decoding runs there.
            quantization: ``None`` (dense), ``"int8"`` or ``"int4"``: weight-only quantized linear layers for CPU
                decoding through torchao (``pip install 'selfanchor-chains[quant]'``); computes in bfloat16.
            **kwargs: Fields of this class (``omega``, ``max_tokens``, ...).

        Returns:
            The chat model, with ``model_id`` set to ``"{model_id}@{dtype}"`` (the concrete dtype ``"auto"`` chose),
            plus ``"+{quantization}"`` when quantized.
        """
        from ..models.dtypes import resolve_dtype
        from ..models.loading import load_model_and_tokenizer, model_tag

        # "auto" is named by what it chose: caches and evaluation folders key on the model id.
        concrete = resolve_dtype(dtype, device, quantization=quantization).dtype
        model, tokenizer = load_model_and_tokenizer(
            model_id, dtype=concrete, trust_remote_code=trust_remote_code, device=device, quantization=quantization
        )
        return cls(model=model, tokenizer=tokenizer, model_id=model_tag(model_id, concrete, quantization), **kwargs)

    @property
    def runtime(self) -> SteeredRuntime:
        """The model's runtime (engine plus the lock that serialises decoding)."""
        assert self._runtime is not None
        return self._runtime

    @property
    def model_name(self) -> str:
        """The name reported in ``response_metadata`` and traces (``model_id``)."""
        return self.model_id

    @property
    def markup(self) -> AnchorMarkup:
        return AnchorMarkup(self.anchor_open_tag, self.anchor_close_tag)

    @property
    def _llm_type(self) -> str:
        return "selfanchor-chat-steered-hf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "omega": self.omega,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "stop": self.stop,
            "anchor_tags": (self.anchor_open_tag, self.anchor_close_tag),
            "markup_message_types": self.markup_message_types,
        }

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
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens of the conversation as rendered by the chat template (generation prompt included)."""
        if tools:
            raise NotImplementedError(_NO_TOOLS)
        return len(self._render(messages, ()).ids)

    def _turns(self, messages: Sequence[BaseMessage], anchors: Sequence[str]) -> list[_Turn]:
        markup = self.markup
        turns: list[_Turn] = []
        for index, message in enumerate(messages):
            role, kind = _role(index, message)
            text = _content_text(index, message)
            if kind in self.markup_message_types:
                try:
                    clean, spans = parse_anchor_markup(text, markup)
                except AnchorMarkupError as exc:
                    raise AnchorMarkupError(f"message {index} ({kind}): {exc}") from exc
            else:
                clean, spans = text, []
            if isinstance(message, AIMessage) and message.tool_calls:
                clean = "\n".join(p for p in (clean, _tool_calls_text(message)) if p)
            name = getattr(message, "name", None) if role == "tool" else None
            turns.append(_Turn(role, clean, list(spans), name))
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

    def _render(self, messages: Sequence[BaseMessage], anchors: Sequence[str]) -> PreparedPrompt:
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

    def _render_plain(self, turns: list[_Turn], contents: list[str], error: BaseException | None) -> PreparedPrompt:
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

    # -- call options ----------------------------------------------------------------------------------------------

    def _split_overrides(self, kwargs: dict[str, Any]) -> tuple[ChatSteeredHF, dict[str, Any]]:
        for alias, name in _ALIASES.items():
            if alias in kwargs:
                if name in kwargs:
                    raise TypeError(f"pass either {name} or {alias}, not both")
                kwargs[name] = kwargs.pop(alias)
        overrides = {k: kwargs.pop(k) for k in _OVERRIDABLE if k in kwargs}
        if not overrides:
            return self, kwargs
        copy = self.model_copy(update=overrides)
        for name, value in overrides.items():  # model_copy skips validation; run the field validators
            type(self).__pydantic_validator__.validate_assignment(copy, name, value)
        return copy, kwargs

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

    def _settings(self, stop: list[str] | None) -> DecodeSettings:
        sampling = SamplingConfig(
            do_sample=self.temperature > 0,
            temperature=self.temperature if self.temperature > 0 else 1.0,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed,
        )
        effective_stop = stop if stop is not None else (self.stop or [])
        return DecodeSettings(self.max_tokens, sampling, tuple(effective_stop))

    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _request(self, messages: Sequence[BaseMessage], stop: list[str] | None, anchors: Sequence[str]) -> _Request:
        return _Request(self._render(messages, anchors), self.omega, self._settings(stop))

    def _resolve(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[ChatSteeredHF, _Request]:
        target, rest = self._split_overrides(dict(kwargs))
        anchors = target._take_options(rest)
        return target, target._request(messages, stop, anchors)

    def _output(self, request: _Request) -> _RowOutput:
        return _RowOutput(self.tokenizer, len(request.prompt.ids), request.omega, self.model_name)

    def _single(self, request: _Request, group_type: type[_Group]) -> Any:
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
    ) -> _Plan | None:
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
        requests: list[_Request] = []
        for messages in conversations:
            try:
                request = target._request(messages, stop, anchors)
            except Exception:
                continue
            if context is None or len(request.prompt.ids) < context:
                requests.append(request)
        if len(requests) < 2:
            return None
        group_type: type[_Group] = _AsyncGroup if is_async else _SyncGroup
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
        return _Plan(target.runtime, groups, is_async)

    def _conversations(self, inputs: Sequence[LanguageModelInput]) -> list[list[BaseMessage]]:
        conversations = []
        for item in inputs:
            try:
                conversations.append(self._convert_input(item).to_messages())
            except Exception:
                conversations.append([])  # rendered (and rejected) by its own call
        return conversations

    def generate(
        self,
        messages: list[list[BaseMessage]],
        stop: list[str] | None = None,
        callbacks: Callbacks = None,
        **kwargs: Any,
    ) -> LLMResult:
        plan = self._plan(messages, stop, kwargs, is_async=False)
        if plan is None:
            return super().generate(messages, stop=stop, callbacks=callbacks, **kwargs)
        token = _PLAN.set(plan)
        try:
            return super().generate(messages, stop=stop, callbacks=callbacks, **kwargs)
        finally:
            _PLAN.reset(token)

    async def agenerate(
        self,
        messages: list[list[BaseMessage]],
        stop: list[str] | None = None,
        callbacks: Callbacks = None,
        **kwargs: Any,
    ) -> LLMResult:
        plan = self._plan(messages, stop, kwargs, is_async=True)
        if plan is None:
            return await super().agenerate(messages, stop=stop, callbacks=callbacks, **kwargs)
        token = _PLAN.set(plan)
        try:
            return await super().agenerate(messages, stop=stop, callbacks=callbacks, **kwargs)
        finally:
            _PLAN.reset(token)
            plan.cancel()

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        options = dict(kwargs)
        stop = options.pop("stop", None)
        plan = self._plan(self._conversations(inputs), stop, options, is_async=False) if len(inputs) > 1 else None
        if plan is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        # The batch's worker threads copy this context, so each invoke finds its conversation in the plan.
        token = _PLAN.set(plan)
        try:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        finally:
            _PLAN.reset(token)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        options = dict(kwargs)
        stop = options.pop("stop", None)
        plan = self._plan(self._conversations(inputs), stop, options, is_async=True) if len(inputs) > 1 else None
        if plan is None:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        token = _PLAN.set(plan)
        try:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        finally:
            _PLAN.reset(token)
            plan.cancel()

    # -- decoding --------------------------------------------------------------------------------------------------

    def _items(self, request: _Request) -> Iterator[_Item]:
        plan = _PLAN.get()
        claim = plan.claim(self.runtime, request.key, is_async=False) if plan is not None else None
        if claim is not None:
            group, entry = claim
            assert isinstance(group, _SyncGroup)
            produced = False
            for item in group.items(entry):
                if isinstance(item, _End) and item.reason == "failed" and item.error is not None:
                    if produced:
                        _raise_failed(item.error)
                    break  # the shared session failed before this row began: decode it alone below
                produced = produced or isinstance(item, TokenEvent)
                yield item
            else:
                return
        group = self._single(request, _SyncGroup)
        yield from group.items(group.entries[0])

    async def _aitems(self, request: _Request) -> AsyncGenerator[_Item, None]:
        plan = _PLAN.get()
        claim = plan.claim(self.runtime, request.key, is_async=True) if plan is not None else None
        if claim is not None:
            group, entry = claim
            assert isinstance(group, _AsyncGroup)
            produced = False
            fallback = False
            items = group.items(entry)
            try:
                async for item in items:
                    if isinstance(item, _End) and item.reason == "failed" and item.error is not None:
                        if produced:
                            _raise_failed(item.error)
                        fallback = True
                        break
                    produced = produced or isinstance(item, TokenEvent)
                    yield item
            finally:
                await items.aclose()
            if not fallback:
                return
        single = self._single(request, _AsyncGroup)
        items = single.items(single.entries[0])
        try:
            async for item in items:
                if isinstance(item, _End) and item.reason == "failed" and item.error is not None:
                    raise item.error
                yield item
        finally:
            await items.aclose()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        target, request = self._resolve(messages, stop, kwargs)
        output = target._output(request)
        for item in target._items(request):
            text = output.feed(item)
            # Every token reaches the callbacks in invoke too, so astream_events and LangGraph can stream it.
            if text and run_manager is not None:
                run_manager.on_llm_new_token(text, chunk=ChatGenerationChunk(message=AIMessageChunk(content=text)))
        return output.result()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        target, request = self._resolve(messages, stop, kwargs)
        output = target._output(request)
        items = target._aitems(request)
        try:
            async for item in items:
                text = output.feed(item)
                if text and run_manager is not None:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    await run_manager.on_llm_new_token(text, chunk=chunk)
        finally:
            await items.aclose()
        return output.result()

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        target, request = self._resolve(messages, stop, kwargs)
        output = target._output(request)
        for item in target._items(request):
            chunk = output.chunk(output.feed(item))
            if chunk is None:
                continue
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        target, request = self._resolve(messages, stop, kwargs)
        output = target._output(request)
        # Closed explicitly so that a consumer breaking out of the stream stops the decoding at once.
        items = target._aitems(request)
        try:
            async for item in items:
                chunk = output.chunk(output.feed(item))
                if chunk is None:
                    continue
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            await items.aclose()
