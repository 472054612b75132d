"""SteeredHFLLM: a LangChain LLM that decodes locally with Self-Anchor / SPA attention steering."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, ClassVar, Literal

from langchain_core.language_models.llms import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from pydantic import ConfigDict, Field, PrivateAttr

from ..engine.requests import RowRequest, RowResult, TokenEvent
from ..engine.session import DecodeSession
from ..prompting.inputs import PreparedPrompt, markup_from_spans, prepare_prompt
from ..prompting.markup import Span
from .params import NonNegativeInt, Omega, PositiveInt, Temperature, TopP
from .runtime import DecodeSettings, SteeredRuntime, attach_runtime, iterate_in_thread
from .signatures import AsyncLLMRun, LLMRun, PerPromptCallbacks
from .steering import SteeredModelMixin, with_overrides
from .streaming import areported, reported

__all__ = ["SteeredHFLLM"]

# Call-time options that change the output: they are folded into a model copy so the LLM cache key sees them.
_OVERRIDABLE = ("omega", "omega_scaling", "max_new_tokens", "temperature", "top_p", "top_k", "seed")

# langchain-core hands ``_generate`` only the first prompt's run manager; the helpers below stash all of them
# here so that every prompt of a batch reports its own tokens to its own run.
_RUN_MANAGERS: ContextVar[list[Any] | None] = ContextVar("selfanchor_run_managers", default=None)


class SteeredHFLLM(SteeredModelMixin, BaseLLM):
    """Local Hugging Face causal LM with anchored-prompt steering, as a LangChain LLM.

    Anchors are written into the prompt as ``<anchor>…</anchor>`` (escape untrusted text with
    :func:`~selfanchor_chains.prompting.anchor` or :func:`~selfanchor_chains.prompting.format_docs_anchored`), or
    passed at call time as ``llm.invoke(prompt, anchors=["substring", (start, end)])``. While decoding, the
    logits are ``ω·l_orig + (1−ω)·l_masked`` where the masked branch cannot attend to the anchors.

    Example:
        .. code-block:: python

            from selfanchor_chains import SteeredHFLLM

            llm = SteeredHFLLM.from_model_id("qwen2.5-coder-0.5b", omega=1.5, max_new_tokens=128)
            llm.invoke("Question: <anchor>What is 17 * 3?</anchor> Think step by step.")
    """

    model: Any = Field(default=None, exclude=True)
    """A loaded ``transformers`` causal LM."""
    tokenizer: Any = Field(default=None, exclude=True)
    """Its (fast) tokenizer."""
    model_id: str = ""
    """Identity of the weights (registry name, path or hub id); part of the cache key."""
    omega: Omega = 1.5
    """Steering strength: 1 = plain decoding, > 1 amplifies the anchors."""
    omega_scaling: Literal["constant", "probability", "divergence"] = "constant"
    """``"constant"``: the same ω for every token; ``"probability"``: SPA's probability-modulated strength (each
    token's move scaled by its original probability over the top one's, the ``anchoring`` package's
    ``modulated_by_prob``); ``"divergence"``: AdaCAD's adaptive strength, ``ω_t = 1 + (ω−1)·JSD/ln 2`` from how much
    the two branches' next-token distributions disagree (ω is the cap; ``1 + ln 2`` is AdaCAD's own weight)."""
    max_new_tokens: PositiveInt = 256
    temperature: Temperature = 0.0
    """0 = greedy."""
    top_p: TopP = 1.0
    top_k: NonNegativeInt = 0
    seed: int | None = None
    chat: bool = True
    """Wrap each prompt as a user message in the tokenizer's chat template (if it has one)."""
    system_prompt: str | None = None
    anchor_open_tag: str = "<anchor>"
    anchor_close_tag: str = "</anchor>"
    batch_size: PositiveInt = 8
    """At most this many prompts of a ``batch()`` call decode at once; the rest wait, and each takes the place of a
    finished one at the next decode step (continuous batching, one engine session per call)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    _runtime: SteeredRuntime | None = PrivateAttr(default=None)
    llm_type_name: ClassVar[str] = "selfanchor-steered-hf"
    own_identifying_fields: ClassVar[tuple[str, ...]] = ("max_new_tokens", "chat", "system_prompt", "omega_scaling")

    def model_post_init(self, context: Any, /) -> None:
        self.model_id, self._runtime = attach_runtime(
            "SteeredHFLLM", self.model, self.tokenizer, self.model_id, self.anchor_open_tag, self.anchor_close_tag
        )

    # -- preparing prompts ---------------------------------------------------------------------------------------

    def _use_chat(self) -> bool:
        return self.chat and bool(getattr(self.tokenizer, "chat_template", None))

    def prepare(self, prompt: str, anchors: Sequence[str | Span] = ()) -> PreparedPrompt:
        """Tokenise one prompt and locate its anchors (markup plus call-time anchors); raises AnchorError."""
        return prepare_prompt(
            self.tokenizer,
            prompt,
            anchors=anchors,
            chat=self._use_chat(),
            system=self.system_prompt,
            markup=self.markup,
        )

    def with_anchor_markup(self, prompt: str, anchors: Sequence[str | Span]) -> str:
        """Rewrite call-time anchors into the prompt's own markup (so cache keys and traces show them)."""
        from ..prompting.markup import parse_anchor_markup
        from ..prompting.spans import resolve_anchor_strings

        clean, spans = parse_anchor_markup(prompt, self.markup)
        return markup_from_spans(clean, [*spans, *resolve_anchor_strings(clean, anchors)], self.markup)

    def _rows(self, prompts: Sequence[str], anchors: Sequence[str | Span]) -> list[RowRequest]:
        # Every prompt is validated before any forward pass, so bad input never leaves half a batch decoded.
        prepared = [self.prepare(p, anchors) for p in prompts]
        return [RowRequest(p.ids, p.token_spans, self.omega, omega_scaling=self.omega_scaling) for p in prepared]

    def _split_overrides(self, kwargs: dict[str, Any]) -> tuple[SteeredHFLLM, dict[str, Any]]:
        overrides = {k: kwargs.pop(k) for k in _OVERRIDABLE if k in kwargs}
        return with_overrides(self, overrides), kwargs

    def _fold_call_options(
        self, prompts: list[str], kwargs: dict[str, Any]
    ) -> tuple[SteeredHFLLM, list[str], dict[str, Any]]:
        """Call-time anchors go into the prompts' markup and overrides into a model copy, so that both are part of
        the LLM cache key; returns the model to call, the prompts and the remaining options."""
        anchors = kwargs.pop("anchors", None)
        if anchors:
            prompts = [self.with_anchor_markup(p, anchors) for p in prompts]
        target, kwargs = self._split_overrides(kwargs)
        return target, prompts, kwargs

    # -- LangChain entry points ----------------------------------------------------------------------------------

    # The model copy (when there are overrides) decodes through BaseLLM's own entry point, so the cache key and
    # the callbacks see the folded options.
    def generate(
        self, prompts: list[str], stop: list[str] | None = None, callbacks: PerPromptCallbacks = None, **kw: Any
    ) -> LLMResult:
        target, prompts, kw = self._fold_call_options(prompts, kw)
        return super(SteeredHFLLM, target).generate(prompts, stop=stop, callbacks=callbacks, **kw)

    async def agenerate(
        self, prompts: list[str], stop: list[str] | None = None, callbacks: PerPromptCallbacks = None, **kw: Any
    ) -> LLMResult:
        target, prompts, kw = self._fold_call_options(prompts, kw)
        return await super(SteeredHFLLM, target).agenerate(prompts, stop=stop, callbacks=callbacks, **kw)

    def _generate_helper(self, prompts: list[str], stop: Any, run_managers: list[Any], **kwargs: Any) -> LLMResult:
        token = _RUN_MANAGERS.set(list(run_managers))
        try:
            return super()._generate_helper(prompts, stop, run_managers, **kwargs)
        finally:
            _RUN_MANAGERS.reset(token)

    async def _agenerate_helper(
        self, prompts: list[str], stop: Any, run_managers: list[Any], **kwargs: Any
    ) -> LLMResult:
        token = _RUN_MANAGERS.set(list(run_managers))
        try:
            return await super()._agenerate_helper(prompts, stop, run_managers, **kwargs)
        finally:
            _RUN_MANAGERS.reset(token)

    @staticmethod
    def _managers_for(prompts: Sequence[str], run_manager: Any) -> list[Any]:
        managers = _RUN_MANAGERS.get()
        if managers is not None and len(managers) == len(prompts):
            return managers
        return [run_manager] + [None] * (len(prompts) - 1)

    def _plan(
        self, prompts: list[str], stop: list[str] | None, run_manager: Any, kwargs: dict[str, Any]
    ) -> tuple[DecodeSettings, _Refill, list[Any]]:
        """Settings, the rows with their refill policy, and one run manager per prompt; validates every prompt
        first."""
        self._reject_unknown(kwargs)
        return (
            self._settings(stop),
            _Refill(self._rows(prompts, ()), self.batch_size),
            self._managers_for(prompts, run_manager),
        )

    def _decode(
        self, refill: _Refill, settings: DecodeSettings, cancel: Any, results: list[RowResult]
    ) -> Iterator[list[TokenEvent]]:
        """A call's decode steps; its results land in ``results``. Calls of at most ``batch_size`` prompts join the
        session another call is running with the same settings (they share its forwards); larger ones refill
        ``batch_size`` places of a session of their own."""
        if not refill.pending:
            yield from self.runtime.joined_events(
                refill.first, settings, cancel, results_out=results, slots=self.batch_size
            )
            return
        sessions: list[DecodeSession] = []
        yield from self.runtime.events(refill.first, settings, cancel, session_out=sessions, on_step=refill.on_step)
        results.extend(sessions[0].results())

    @staticmethod
    def _token_calls(step: list[TokenEvent], managers: list[Any]) -> list[tuple[Any, str]]:
        return [(managers[e.row], e.text) for e in step if e.text and managers[e.row] is not None]

    def _generate(
        self, prompts: list[str], stop: list[str] | None = None, run_manager: LLMRun = None, **kwargs: Any
    ) -> LLMResult:
        settings, refill, managers = self._plan(prompts, stop, run_manager, kwargs)
        results: list[RowResult] = []
        for step in self._decode(refill, settings, None, results):
            # Every token reaches the callbacks in invoke too, so astream_events and LangGraph can stream it.
            for manager, text in self._token_calls(step, managers):
                manager.on_llm_new_token(text, chunk=GenerationChunk(text=text))
        return self._to_llm_result(results)

    async def _agenerate(
        self, prompts: list[str], stop: list[str] | None = None, run_manager: AsyncLLMRun = None, **kwargs: Any
    ) -> LLMResult:
        settings, refill, managers = self._plan(prompts, stop, run_manager, kwargs)
        results: list[RowResult] = []
        async for step in iterate_in_thread(lambda cancel: self._decode(refill, settings, cancel, results)):
            for manager, text in self._token_calls(step, managers):
                await manager.on_llm_new_token(text, chunk=GenerationChunk(text=text))
        return self._to_llm_result(results)

    def _stream(
        self, prompt: str, stop: list[str] | None = None, run_manager: LLMRun = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        target, rows, settings = self._one_prompt(prompt, stop, kwargs)
        steps = target.runtime.events(rows, settings)
        yield from reported((target._chunk(event) for step in steps for event in step), run_manager)

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, run_manager: AsyncLLMRun = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        target, rows, settings = self._one_prompt(prompt, stop, kwargs)
        steps = target.runtime.aevents(rows, settings)
        async for chunk in areported((target._chunk(e) async for step in steps for e in step), run_manager, steps):
            yield chunk

    # -- helpers -------------------------------------------------------------------------------------------------

    def _one_prompt(
        self, prompt: str, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[SteeredHFLLM, list[RowRequest], DecodeSettings]:
        """A streamed call's model (overrides applied), its row and its settings; raises on a bad option."""
        target, options = self._split_overrides(dict(kwargs))
        anchors = options.pop("anchors", ())
        target._reject_unknown(options)
        return target, target._rows([prompt], anchors), target._settings(stop)

    @staticmethod
    def _reject_unknown(kwargs: dict[str, Any]) -> None:
        if kwargs:
            raise TypeError(
                f"unexpected keyword arguments {sorted(kwargs)}; supported at call time: anchors, stop, "
                + ", ".join(_OVERRIDABLE)
            )

    def _chunk(self, event: TokenEvent) -> GenerationChunk | None:
        if not event.text and event.finish_reason is None:
            return None
        info = {"finish_reason": event.finish_reason} if event.finish_reason else None
        return GenerationChunk(text=event.text, generation_info=info)

    def _to_llm_result(self, results: list[RowResult]) -> LLMResult:
        generations = []
        prompt_tokens = completion_tokens = 0
        for r in results:
            prompt_tokens += r.prompt_tokens
            completion_tokens += len(r.token_ids)
            info = {
                "finish_reason": r.finish_reason,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": len(r.token_ids),
                "omega": self.omega,
                "mean_confidence": r.mean_confidence,
            }
            generations.append([Generation(text=r.text, generation_info=info)])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return LLMResult(generations=generations, llm_output={"token_usage": usage, "model_id": self.model_id})


class _Refill:
    """Continuous batching of a ``batch()`` call: at most ``slots`` prompts decode at once, and each row that
    finishes hands its place to the next prompt at the next decode step. Prompts join in order, so a prompt's
    row index in the session is its index in the call."""

    def __init__(self, rows: list[RowRequest], slots: int) -> None:
        self.first, self._waiting = rows[:slots], deque(rows[slots:])
        self._running = len(self.first)

    @property
    def pending(self) -> bool:
        """Prompts wait for a place (the call has more prompts than places)."""
        return bool(self._waiting)

    def on_step(self, session: DecodeSession, step: list[TokenEvent]) -> None:
        """Runs in the decoding thread between forwards: admit waiting prompts into freed places."""
        self._running -= sum(e.finish_reason is not None for e in step)
        while self._waiting and self._running < len(self.first):
            session.add_rows([self._waiting.popleft()])
            self._running += 1
