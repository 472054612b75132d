"""SelfAnchorChain and the baselines, as LCEL runnables over one steered decoding pass per problem.

Self-Anchor: the model alternates ``Plan k:`` and ``Reasoning k:`` lines. While a plan is decoded the anchors are
the question (and retrieved context); while reasoning step k is decoded they are the question plus plan k; ω for
each step comes from the model's confidence on the step before. Boundaries are found on the token stream and the
engine re-syncs only the masked row, so a whole solve is ONE decoding pass (no re-prefill per step).

The baselines share the runnable interface, the answer-format instructions and the answer extraction, so an
evaluation compares like with like: :class:`CoTChain` (zero-shot CoT), :class:`PlanAndSolveChain` (PS+),
:class:`SPAChain` (CoT with the question anchored at a constant ω), and Self-Anchor ablations through
``schedule=ConstantOmega(1.0)`` (structure only) or ``ConstantOmega(ω)`` (no confidence schedule).
"""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..engine.requests import DecodingStats, RowRequest, RowResult
from ..langchain.llm import SteeredHFLLM
from ..langchain.runtime import DecodeSettings, iterate_in_thread
from ..langchain.signatures import BatchConfig
from ..prompting.inputs import markup_from_spans, prepare_chat
from ..prompting.templates import (
    COT,
    PLAN_AND_SOLVE,
    SELF_ANCHOR,
    ReasoningTemplate,
    plan_and_solve_template,
    render_user_message,
    worked_example,
)
from .llm_runs import ChildLLMRuns, settle
from .passes import BatchPass, ContinuousPass, Solve
from .schedules import ConfidenceOmega, ConstantOmega, OmegaSchedule
from .schema import ReasoningInput, ReasoningOutput, check_encodable_input
from .steps import StepLimits, StepTracker

FORMAT_REMINDER = (
    "Follow the format exactly: every line starts with 'Plan N:' or 'Reasoning N:', in turn, and the last line "
    "is 'Final Answer: <the answer only>'. Do not write code."
)


class ReasoningChain(RunnableSerializable[Any, dict]):
    """A reasoning method over :class:`SteeredHFLLM`: template + anchors + ω schedule + answer extraction.

    Use the subclasses (:class:`SelfAnchorChain`, :class:`CoTChain`, ...) rather than this class directly.
    """

    llm: SteeredHFLLM
    template: ReasoningTemplate = SELF_ANCHOR
    schedule: OmegaSchedule | None = None
    """Per-step ω (Self-Anchor). ``None``: fixed anchors and a constant ``omega`` for the whole answer."""
    omega: float = 1.0
    """Constant ω when ``schedule`` is None."""
    anchor_question: bool = True
    anchor_context: bool | int = True
    """Anchor the retrieved documents: all (True), none (False), or only the first n, a retriever's best n."""
    anchor_plan_in_final: bool = True
    bench: str | None = None
    """Benchmark name: selects the answer-format hint and the answer extractor."""
    max_new_tokens: int = Field(default=512, ge=1)
    limits: StepLimits = Field(default_factory=StepLimits)
    format_retries: int = 1
    """Self-Anchor: re-decode a solve whose output ignored the plan/reasoning format, with a reminder."""
    step_strength: dict[str, float] = Field(default_factory=dict)
    """Per step kind (``plan``, ``reasoning``, ``final``): the share of the schedule's steering that applies,
    ω_kind = 1 + s·(ω − 1); 0 leaves that kind unsteered; kinds not given get 1."""
    reasoning_scope: Literal["question+plan", "plan", "question+plans"] = "question+plan"
    """What a reasoning step anchors: the question (and context) plus its own plan, its plan alone, or the
    question plus every plan so far."""
    midline_labels: bool = False
    """Also take a numbered ``Reasoning k:`` / ``Plan k:`` label inside a line as a step boundary."""
    anchor_masking: Literal["attention", "replace"] = "attention"
    """The masked branch's counterfactual: anchors hidden from attention, or replaced by a neutral token at the
    same positions (SPA's paper setting)."""
    steer_below: float | None = Field(default=None, gt=0.0, le=1.0)
    """Steer a token only when the original branch's top probability is below this (None: every token)."""
    batch_size: int | None = Field(default=None, ge=1)
    """At most this many problems decode at once; the others wait and each takes the place of a finished one at
    the next decode step (continuous batching). None: all problems of a ``batch()`` call decode together."""
    trace_tokens: bool = False
    """Add each generated token's steering trace to the output (``tokens``), for the steering view."""
    worked_example: bool = False
    """Show one worked example in the method's own format (Self-Anchor: plan/reason; CoT: a plain trace of the
    same solution) in the system message, with its answer line in the benchmark's (for BBH, the task's) answer
    format; a BBH request without a task gets none."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    @field_validator("omega")
    @classmethod
    def _check_omega(cls, value: float) -> float:
        # A validator, not Field bounds: the baselines redefine the field's default, which would drop the bounds.
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"omega must be a finite number >= 0, got {value!r}")
        return value

    @field_validator("format_retries")
    @classmethod
    def _check_retries(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"format_retries must be >= 0, got {value!r}")
        return value

    @field_validator("bench")
    @classmethod
    def _check_bench(cls, value: str | None) -> str | None:
        if value is not None:
            from ..answers.formats import answer_hint

            answer_hint(value)  # raises ValueError naming the known benchmarks
        return value

    @field_validator("step_strength")
    @classmethod
    def _check_step_strength(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, strength in value.items():
            if kind not in ("plan", "reasoning", "final"):
                raise ValueError(f"step_strength keys are plan, reasoning and final; got {kind!r}")
            if not (strength >= 0 and strength < float("inf")):
                raise ValueError(f"step_strength[{kind!r}] must be a finite number >= 0, got {strength!r}")
        return value

    @property
    def adaptive(self) -> bool:
        return self.schedule is not None

    @property
    def assistant_prefix(self) -> str:
        """Text the reply starts with; it is part of the prompt, and ``output["text"]`` begins with it."""
        return self._template_for().assistant_prefix

    @property
    def InputType(self) -> Any:
        return ReasoningInput | str

    @property
    def OutputType(self) -> Any:
        return dict

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return ReasoningInput

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return ReasoningOutput

    # -- building a solve ------------------------------------------------------------------------------------------

    def _coerce(self, value: Any) -> ReasoningInput:
        if isinstance(value, ReasoningInput):
            return value
        if isinstance(value, str):
            check_encodable_input({"question": value})
            return ReasoningInput(question=value)
        if isinstance(value, Mapping):
            check_encodable_input(value)
            return ReasoningInput.model_validate(dict(value))
        raise TypeError(f"expected a question string or a mapping with 'question', got {type(value).__name__}")

    def _template_for(self) -> ReasoningTemplate:
        return self.template

    def _hint(self, request: ReasoningInput) -> str:
        if self.bench is None:
            return ""
        from ..answers.formats import answer_hint

        return answer_hint(self.bench, request.task)

    def _messages(self, request: ReasoningInput, reminder: bool) -> list[dict[str, str]]:
        template = self._template_for()
        anchor_q = self.anchor_question and (self.adaptive or self.omega != 1.0)
        user = render_user_message(
            template, request.question, request.context, anchor_question=anchor_q, anchor_context=self.anchor_context
        )
        if request.anchors:
            from ..prompting.markup import parse_anchor_markup
            from ..prompting.spans import resolve_anchor_strings

            clean, spans = parse_anchor_markup(user)
            user = markup_from_spans(clean, [*spans, *resolve_anchor_strings(clean, request.anchors)])
        system = template.system_message(self._hint(request))
        example = worked_example(self.bench, request.task) if self.worked_example else None
        if example is not None:
            system += "\n\n" + example.render(template)
        if reminder:
            system += "\n" + FORMAT_REMINDER
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def prompt_ids(self, input: Any) -> list[int]:
        """The token ids a solve of ``input`` starts decoding from (chat template, question and hint, the
        assistant prefix such as ``"Plan 1:"``): what a plain ``model.generate`` baseline is given."""
        return list(self._build(0, self._coerce(input)).ids)

    def _build(self, index: int, request: ReasoningInput, reminder: bool = False) -> Solve:
        template = self._template_for()
        tokenizer = self.llm.tokenizer
        prepared = prepare_chat(tokenizer, self._messages(request, reminder), markup=self.llm.markup)
        prefix_ids = tokenizer(template.assistant_prefix, add_special_tokens=False)["input_ids"]
        ids = prepared.ids + list(prefix_ids)
        tracker = StepTracker(
            row=index,
            prompt_len=len(ids),
            base_spans=list(prepared.token_spans),
            base_texts=prepared.anchored_texts(),
            schedule=self.schedule,
            markers=template.markers,
            prefix_tokens=len(prefix_ids),
            first_kind="plan",
            first_prefix_text=template.assistant_prefix,
            anchor_plan_in_final=self.anchor_plan_in_final,
            limits=self.limits,
            fixed_omega=self.omega,
            step_strength=dict(self.step_strength),
            reasoning_scope=self.reasoning_scope,
            midline_labels=self.midline_labels,
        )
        return Solve(index, prepared, ids, tracker, request)

    def _settings(self) -> DecodeSettings:
        base = self.llm._settings(None)
        return DecodeSettings(self.max_new_tokens, base.sampling, ())

    def _rows(self, solves: Sequence[Solve]) -> list[RowRequest]:
        return [
            RowRequest(
                s.ids,
                s.tracker.initial_spans(),
                s.tracker.initial_omega(),
                anchor_masking=self.anchor_masking,
                steer_below=self.steer_below,
                omega_scaling=getattr(self.llm, "omega_scaling", "constant"),  # the LLM's option carries over
            )
            for s in solves
        ]

    # -- one batched pass ------------------------------------------------------------------------------------------

    def _output(
        self, solve: Solve, result: RowResult, retried: bool, stats: DecodingStats | None = None
    ) -> dict[str, Any]:
        tracker = solve.tracker
        text = self._template_for().assistant_prefix + tracker.text
        return ReasoningOutput(
            answer=self._extract(text, tracker, solve.request),
            text=text,
            steps=list(tracker.steps),
            finish_reason=tracker.finish_reason or result.finish_reason,
            usage={
                "prompt_tokens": len(solve.ids),
                "completion_tokens": len(result.token_ids),
                # Tokens pushed through the model outside one-token decode steps: the prompt (the masked branch
                # from its first hidden token on) and the masked-branch re-syncs at step boundaries; prompt tokens
                # whose keys and values came from the engine's cache of shared prompt prefixes are counted apart.
                "prefill_tokens": stats.row_prefill_tokens.get(solve.index, 0) if stats else 0,
                "reused_prefix_tokens": stats.row_reused_prefix_tokens.get(solve.index, 0) if stats else 0,
                "resync_tokens": stats.row_resync_tokens.get(solve.index, 0) if stats else 0,
            },
            retried=retried,
            tokens=self._token_trace(result) if self.trace_tokens else None,
        ).model_dump()

    def _token_trace(self, result: RowResult) -> list[dict[str, Any]]:
        """Per generated token: its text (as the cumulative decode grows, so multi-byte characters stay whole),
        and what steering did to it."""
        tokenizer = self.llm.tokenizer
        ids = result.token_ids
        texts, shown = [], ""
        for k in range(len(ids)):
            now = tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
            # An incomplete multi-byte character decodes to U+FFFD until its last byte arrives: hold it back.
            safe = now if k == len(ids) - 1 else now.rstrip("\ufffd")
            texts.append(safe[len(shown) :] if safe.startswith(shown) else "")
            shown = safe if safe.startswith(shown) else shown
        originals = result.original_tokens or [-1] * len(ids)
        return [
            {
                "text": texts[k],
                "omega": result.omegas[k],
                "confidence": result.confidences[k],
                "kl": result.kls[k] if k < len(result.kls) else 0.0,
                "flipped": bool(result.flips[k]) if k < len(result.flips) else False,
                "original": tokenizer.decode([originals[k]]) if originals[k] >= 0 else None,
            }
            for k in range(len(ids))
        ]

    def _extract(self, text: str, tracker: StepTracker, request: ReasoningInput) -> str | None:
        if self.bench is not None:
            from ..answers.grading import extract_answer

            return extract_answer(self.bench, text, task=request.task, options=request.options)
        answer = tracker.answer_text()
        if answer:
            return answer
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else None

    def _broken(self, output: dict[str, Any]) -> bool:
        """Self-Anchor output that never used the plan/reasoning format (and found no answer)."""
        if not self.adaptive:
            return False
        kinds = {s["kind"] for s in output["steps"]}
        return "reasoning" not in kinds and "final" not in kinds

    def _iter_solve(
        self, requests: Sequence[ReasoningInput], cancel: threading.Event | None = None
    ) -> Iterator[tuple[str, int, Any]]:
        """Decode all problems as one batch (or through ``batch_size`` slots); yields ("token"|"step"|"retry"|
        "output", problem index, payload)."""
        if self.batch_size is not None and len(requests) > self.batch_size:
            flow = ContinuousPass(self, requests, self.batch_size)
            for step in self.llm.runtime.events(
                flow.rows, self._settings(), cancel, session_out=flow.sessions, on_step=flow.on_step
            ):
                yield from flow.emit(step)
            yield from flow.finish()
            return
        pending = list(range(len(requests)))
        for attempt in range(1 + max(self.format_retries, 0)):
            one = BatchPass(self, requests, pending, attempt)
            for step in self.llm.runtime.events(
                one.rows, self._settings(), cancel, session_out=one.sessions, on_step=one.on_step
            ):
                yield from one.emit(step)
            finished, pending = one.finish()
            yield from finished
            if not pending:
                return

    def _aiter_solve(self, requests: Sequence[ReasoningInput]) -> AsyncGenerator[tuple[str, int, Any], None]:
        """The async face of :meth:`_iter_solve`: the same loop in a worker thread, the event loop stays free."""
        return iterate_in_thread(lambda cancel: self._iter_solve(requests, cancel))

    # -- tracing: one child LLM run per problem, fed its tokens (the sync core and its async twin) ---------------

    def _child_runs(self) -> ChildLLMRuns:
        serialized = {"lc": 1, "type": "not_implemented", "id": ["selfanchor_chains", "SteeredHFLLM"]}
        return ChildLLMRuns({**serialized, "name": self.llm.model_id}, {"omega_schedule": repr(self.schedule)})

    def _solve_events(
        self, requests: Sequence[ReasoningInput], managers: Sequence[CallbackManagerForChainRun | None]
    ) -> Iterator[tuple[str, int, Any]]:
        """:meth:`_iter_solve`'s events, each reported to its problem's child LLM run first."""
        runs = self._child_runs()
        runs.started(runs.start(managers, [r.question for r in requests]))
        try:
            for kind, index, payload in self._iter_solve(requests):
                runs.event(kind, index, payload)
                yield kind, index, payload
        except BaseException as exc:
            runs.error(exc)
            raise

    async def _asolve_events(
        self, requests: Sequence[ReasoningInput], managers: Sequence[AsyncCallbackManagerForChainRun | None]
    ) -> AsyncIterator[tuple[str, int, Any]]:
        """The async face of :meth:`_solve_events`: decoding in a worker thread, callbacks awaited on the loop."""
        runs = self._child_runs()
        runs.started(await settle(runs.start(managers, [r.question for r in requests])))
        events = self._aiter_solve(requests)
        try:
            async for kind, index, payload in events:
                await settle(runs.event(kind, index, payload))
                yield kind, index, payload
        except BaseException as exc:
            await settle(runs.error(exc))
            raise
        finally:
            await events.aclose()  # a consumer that stops listening stops the decoding now

    # -- runnable API ----------------------------------------------------------------------------------------------

    def _run(
        self, inputs: list[Any], run_manager: list[CallbackManagerForChainRun], config: list[RunnableConfig]
    ) -> list[dict[str, Any]]:
        requests = [self._coerce(i) for i in inputs]
        outputs = {i: out for kind, i, out in self._solve_events(requests, run_manager) if kind == "output"}
        return [outputs[i] for i in range(len(requests))]

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.batch([input], config)[0]

    def as_completed(self, inputs: Sequence[Any]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Solve ``inputs``, yielding ``(index, output)`` as each problem finishes (with ``batch_size`` set, through
        that many continuously refilled slots). No callbacks; for evaluations that write results as they come."""
        requests = [self._coerce(i) for i in inputs]
        for kind, index, payload in self._iter_solve(requests):
            if kind == "output":
                yield index, payload

    def batch(
        self, inputs: list[Any], config: BatchConfig = None, *, return_exceptions: bool = False, **kwargs: Any
    ) -> list[dict[str, Any]]:
        # Runnable's helper opens one chain run per input and hands _run the whole batch (none for no input).
        return self._batch_with_config(self._run, inputs, config, return_exceptions=return_exceptions)  # type: ignore[arg-type]

    async def _arun(
        self, inputs: list[Any], run_manager: list[AsyncCallbackManagerForChainRun], config: list[RunnableConfig]
    ) -> list[dict[str, Any]]:
        requests = [self._coerce(i) for i in inputs]
        outputs = {i: out async for kind, i, out in self._asolve_events(requests, run_manager) if kind == "output"}
        return [outputs[i] for i in range(len(requests))]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return (await self.abatch([input], config))[0]

    async def abatch(
        self, inputs: list[Any], config: BatchConfig = None, *, return_exceptions: bool = False, **kwargs: Any
    ) -> list[dict[str, Any]]:
        return await self._abatch_with_config(self._arun, inputs, config, return_exceptions=return_exceptions)  # type: ignore[arg-type]

    def _stream_one(
        self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Iterator[dict[str, Any]]:
        request = self._coerce(next(iter(inputs)))
        for kind, _, payload in self._solve_events([request], [run_manager]):
            yield {kind: payload}

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yields ``{"token": text}`` as tokens are decoded, ``{"step": {...}}`` as each step completes, and
        finally ``{"output": {...}}`` (the same dict ``invoke`` returns)."""
        yield from self._transform_stream_with_config(iter([input]), self._stream_one, config)

    async def _astream_one(
        self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> AsyncIterator[dict[str, Any]]:
        request = self._coerce([i async for i in inputs][-1])
        async for kind, _, payload in self._asolve_events([request], [run_manager]):
            yield {kind: payload}

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream_one, config):
            yield chunk


class SelfAnchorChain(ReasoningChain):
    """Self-Anchor: plan/reason steps, step-wise anchors, confidence-driven ω.

    Example:
        .. code-block:: python

            from selfanchor_chains import SelfAnchorChain, SteeredHFLLM

            chain = SelfAnchorChain(llm=SteeredHFLLM.from_model_id("qwen2.5-coder-0.5b"))
            chain.invoke("A pen costs $2 and a book 4 times as much. What do 3 books and 2 pens cost?")["answer"]
    """

    template: ReasoningTemplate = SELF_ANCHOR
    schedule: OmegaSchedule | None = Field(default_factory=ConfidenceOmega)
    worked_example: bool = True
    """Show one worked plan/reason example in the system message (on by default: the steering study's winner,
    ``results/study/README.md``; without it the 1.5B model's reasoning steps often restate their plan)."""


class CoTChain(ReasoningChain):
    """Zero-shot chain of thought ("Let's think step by step."), no steering."""

    template: ReasoningTemplate = COT
    schedule: OmegaSchedule | None = None
    omega: float = 1.0
    format_retries: int = 0


class PlanAndSolveChain(ReasoningChain):
    """Plan-and-Solve+ (Wang et al. 2023), no steering; the commonsense variant for StrategyQA."""

    template: ReasoningTemplate = PLAN_AND_SOLVE
    schedule: OmegaSchedule | None = None
    omega: float = 1.0
    format_retries: int = 0

    def _template_for(self) -> ReasoningTemplate:
        return plan_and_solve_template(self.bench, self.template)


class SPAChain(ReasoningChain):
    """SPA alone: CoT with the question anchored at a constant ω for the whole answer."""

    template: ReasoningTemplate = COT
    schedule: OmegaSchedule | None = None
    omega: float = 1.5
    format_retries: int = 0


def structure_only(llm: SteeredHFLLM, **kwargs: Any) -> SelfAnchorChain:
    """Self-Anchor's plan/reason format with no steering (ω = 1): the structure ablation."""
    return SelfAnchorChain(llm=llm, schedule=ConstantOmega(1.0), **kwargs)


def constant_omega(llm: SteeredHFLLM, omega: float = 1.5, **kwargs: Any) -> SelfAnchorChain:
    """Self-Anchor with step-wise anchors but a constant ω (no confidence schedule)."""
    return SelfAnchorChain(llm=llm, schedule=ConstantOmega(omega), **kwargs)
