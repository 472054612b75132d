"""Step tracking on the token stream: finds plan / reasoning / final-answer boundaries while a row decodes, and
switches that row's anchors and ω at each boundary (Self-Anchor), or only watches for the final answer (baselines).

It runs in the decoding thread between two forward passes, so the new anchors apply from the very next token.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any, cast

from ..engine.requests import TokenEvent, harmonic_mean
from ..engine.session import DecodeSession
from ..prompting.templates import StepMarkers
from .schedules import OmegaSchedule
from .schema import ReasoningStep, StepKind

__all__ = ["REASONING_SCOPES", "StepLimits", "StepTracker", "marker_pattern"]

Span = tuple[int, int]

REASONING_SCOPES = ("question+plan", "plan", "question+plans")
"""What a reasoning step anchors: the question (and context) plus its own plan (the paper's choice), its plan
alone, or the question plus every plan so far."""


@dataclass(frozen=True)
class StepLimits:
    """Guards that end a runaway solve.

    Args:
        max_step_tokens: A step longer than this without a new marker ends the solve ("step_too_long").
        max_steps: More plan + reasoning steps than this ends the solve ("max_steps").
        max_answer_tokens: Tokens allowed after ``Final Answer:``.
        answer_line_words: A ``Final Answer:`` line of at most this many words ends the solve at its line break.
            A longer one is the model still reasoning under that label (small models do this): decoding goes on
            to EOS, a blank line, or ``max_answer_tokens``, so the answer that follows is not cut off.
    """

    max_step_tokens: int = 320
    max_steps: int = 24
    max_answer_tokens: int = 128
    answer_line_words: int = 16

    def __post_init__(self) -> None:
        for name in ("max_step_tokens", "max_steps", "max_answer_tokens", "answer_line_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def marker_pattern(markers: StepMarkers, midline: bool = False) -> re.Pattern[str]:
    """A line that opens a step: optional markdown decoration, the label, an optional number, then a colon.

    With ``midline``, a numbered label after a space inside a line opens a step too (``... = 15. Reasoning 2:``);
    an unnumbered one must start its line (``the plan: ...`` is prose).
    """
    labels = "|".join(re.escape(m) for m in (markers.final, markers.reasoning, markers.plan))
    at_line_start = rf"^[ \t>#*_-]*(?P<label>{labels})(?:[ \t]*(?P<number>\d+))?"
    if midline:
        numbered = rf"(?<=[ \t])[*_]*(?P<mlabel>{markers.reasoning}|{markers.plan})[ \t]*(?P<mnumber>\d+)"
        final = rf"(?<=[.!?][ \t])[*_]*(?P<flabel>{re.escape(markers.final)})"
        at_line_start = rf"(?:{at_line_start}|{numbered}|{final})"
    return re.compile(rf"{at_line_start}[ \t]*[*_]*[ \t]*:[*_]*", re.IGNORECASE | re.MULTILINE)


def _label(match: re.Match[str]) -> tuple[str, str | None, int]:
    """The label, number and label start of a marker match (from whichever alternative matched)."""
    groups = match.groupdict()
    for label, number in (("label", "number"), ("mlabel", "mnumber"), ("flabel", None)):
        if groups.get(label):
            return groups[label], groups.get(number) if number else None, match.start(label)
    raise AssertionError("a marker match without a label")


@dataclass
class _OpenStep:
    kind: str
    index: int
    start_token: int  # generated-token index where it starts; negative when it starts in the prompt prefix
    start_char: int  # in the generated text
    omega: float
    anchors: list[str]


@dataclass
class StepTracker:
    """Follows one row of a decode session.

    Args:
        row: The row's index in the session.
        prompt_len: Prompt tokens of the row (the generated text starts after them).
        base_spans: Token spans anchored in every step (the question, retrieved context).
        base_texts: Their texts, for the step records.
        schedule: ω per step; ``None`` keeps the row's initial ω and anchors throughout (baselines).
        markers: Step labels of the template.
        prefix_tokens: Tokens of the assistant prefix at the end of the prompt (e.g. ``Plan 1:``); the first
            step starts there.
        first_kind: Kind of the step the prefix opens.
        anchor_plan_in_final: Anchor the last plan while the final answer is written.
        limits: Runaway guards.
        fixed_omega: ω of the whole answer when there is no schedule (baselines).
        step_strength: Per step kind (``plan``, ``reasoning``, ``final``), how much of the schedule's steering
            applies: ω_kind = 1 + s·(ω − 1); 0 leaves that kind unsteered. Kinds not given use 1.
        reasoning_scope: What reasoning steps anchor; one of :data:`REASONING_SCOPES`.
        midline_labels: Also take numbered labels inside a line as step boundaries.
    """

    row: int
    prompt_len: int
    base_spans: list[Span]
    base_texts: list[str]
    schedule: OmegaSchedule | None
    markers: StepMarkers = field(default_factory=StepMarkers)
    prefix_tokens: int = 0
    first_kind: str = "plan"
    first_prefix_text: str = ""
    anchor_plan_in_final: bool = True
    limits: StepLimits = field(default_factory=StepLimits)
    fixed_omega: float = 1.0
    step_strength: dict[str, float] = field(default_factory=dict)
    reasoning_scope: str = "question+plan"
    midline_labels: bool = False

    def __post_init__(self) -> None:
        if self.reasoning_scope not in REASONING_SCOPES:
            raise ValueError(f"reasoning_scope must be one of {REASONING_SCOPES}, got {self.reasoning_scope!r}")
        for kind, strength in self.step_strength.items():
            if kind not in ("plan", "reasoning", "final") or not (strength >= 0):
                raise ValueError(
                    f"step_strength takes plan/reasoning/final -> a number >= 0, got {kind!r}: {strength!r}"
                )
        self._pattern = marker_pattern(self.markers, midline=self.midline_labels)
        self.text = ""
        self._ends: list[int] = []  # generated text length after each token
        self._confidences: list[float] = []
        self._flips: list[bool] = []
        self._kls: list[float] = []
        self._plan_spans: list[Span] = []  # every closed plan, for the "question+plans" scope
        self._plan_texts: list[str] = []
        self._scan_from = 0
        self.steps: list[ReasoningStep] = []
        self.finish_reason: str | None = None
        self.plan_span: Span | None = None
        self._plan_text = ""
        self._answer_from: int | None = None  # char where the final answer's text starts
        self._answer_token: int | None = None
        adaptive = self.schedule is not None
        omega = self.schedule.initial() if self.schedule is not None else self.fixed_omega
        if not self.base_spans:
            omega = 1.0  # nothing to anchor: steering would change nothing
        kind = self.first_kind if adaptive else "text"
        if adaptive:
            omega = self._strength(kind, omega)
        self._current = _OpenStep(kind, 1, -self.prefix_tokens, 0, omega, list(self.base_texts))

    @property
    def adaptive(self) -> bool:
        return self.schedule is not None

    def initial_omega(self) -> float:
        return self._current.omega

    def initial_spans(self) -> list[Span]:
        return list(self.base_spans)

    # -- feeding tokens --------------------------------------------------------------------------------------------

    def on_event(self, event: TokenEvent, session: DecodeSession) -> None:
        """Take one decoded token; at a step boundary, switch the row's anchors and ω in ``session``."""
        if self.finish_reason is not None:
            return
        self._confidences.append(event.confidence)
        self._flips.append(event.flipped)
        self._kls.append(event.kl)
        self.text += event.text
        self._ends.append(len(self.text))
        if event.finish_reason is not None:
            # EOS right after the answer line is the normal end of a solve.
            reached = self._answer_from is not None and event.finish_reason == "eos" and self.answer_text()
            self._finish("final_answer" if reached else event.finish_reason, len(self.text))
            return
        if self._answer_from is not None:
            self._watch_answer(session)
            return
        for match in self._new_markers():
            self._boundary(match, session)
            if self.finish_reason is not None or self._answer_from is not None:
                break
        if self._answer_from is not None:
            self._watch_answer(session)
            return
        # Only Self-Anchor has steps to bound; a baseline's one long answer is bounded by max_new_tokens alone.
        n_tokens = len(self._confidences) - max(self._current.start_token, 0)
        if self.adaptive and n_tokens > self.limits.max_step_tokens:
            self._stop(session, "step_too_long")

    def _new_markers(self) -> list[re.Match[str]]:
        matches = []
        pos = self._scan_from
        while (m := self._pattern.search(self.text, pos)) is not None:
            matches.append(m)
            pos = m.end()
        if matches:
            self._scan_from = matches[-1].end()
        else:
            # A marker not yet complete starts at or after the last line break: search again from there.
            self._scan_from = max(self._scan_from, self.text.rfind("\n") + 1)
        return matches

    def _token_at(self, char: int) -> int:
        """Index of the generated token that holds character ``char``."""
        return bisect.bisect_right(self._ends, char)

    def _strength(self, kind: str, omega: float) -> float:
        """The schedule's ω scaled for a step kind: 1 + s·(ω − 1)."""
        return 1.0 + self.step_strength.get(kind, 1.0) * (omega - 1.0)

    def _boundary(self, match: re.Match[str], session: DecodeSession) -> None:
        label_text, number, start_char = _label(match)
        label = label_text.lower()
        kind = (
            "final"
            if label == self.markers.final.lower()
            else "reasoning"
            if label == self.markers.reasoning.lower()
            else "plan"
        )
        if not self.adaptive and kind != "final":
            return
        boundary = min(self._token_at(start_char), len(self._confidences) - 1)
        closed_from = self._current.start_token
        closed = self._close(start_char, boundary)
        if closed.kind == "plan":
            # The plan's own tokens, prefix included, in sequence coordinates: the next reasoning step's anchor.
            self.plan_span = (self.prompt_len + closed_from, self.prompt_len + boundary)
            self._plan_text = closed.text
            if self.plan_span[1] > self.plan_span[0]:
                self._plan_spans.append(self.plan_span)
                self._plan_texts.append(closed.text)
        index = int(number) if number else self._next_index(kind)
        done = len([s for s in self.steps if s.kind in ("plan", "reasoning")])
        if self.adaptive and kind != "final" and done >= self.limits.max_steps:
            session.cancel(self.row)  # the step just closed is complete; nothing new is opened
            self.finish_reason = "max_steps"
            return
        if self.schedule is not None:
            omega = self._strength(kind, self.schedule.next(self.steps[-1].confidence))
        else:
            omega = closed.omega
        spans, texts = self._anchors_for(kind)
        self._current = _OpenStep(kind, index, boundary, start_char, omega, texts)
        if self.adaptive:
            session.set_anchors(self.row, spans)
            session.set_omega(self.row, omega)
        if kind == "final":
            self._answer_from = match.end()
            self._answer_token = len(self._confidences)

    def _next_index(self, kind: str) -> int:
        return 1 + sum(1 for s in self.steps if s.kind == kind)

    def _anchors_for(self, kind: str) -> tuple[list[Span], list[str]]:
        spans, texts = list(self.base_spans), list(self.base_texts)
        with_plan = kind == "reasoning" or (kind == "final" and self.anchor_plan_in_final)
        if not with_plan or self.plan_span is None or self.plan_span[1] <= self.plan_span[0]:
            return spans, texts
        if kind == "reasoning" and self.reasoning_scope == "plan":
            return [self.plan_span], [self._plan_text]
        if kind == "reasoning" and self.reasoning_scope == "question+plans":
            return [*spans, *self._plan_spans], [*texts, *self._plan_texts]
        return [*spans, self.plan_span], [*texts, self._plan_text]

    def _close(self, end_char: int, end_token: int) -> ReasoningStep:
        step = self._current
        text = self.text[step.start_char : end_char]
        if step.start_token < 0 and self.first_prefix_text:
            text = self.first_prefix_text + text
        first, last = max(step.start_token, 0), max(end_token, 0)
        confidences = self._confidences[first:last]
        kls = self._kls[first:last]
        record = ReasoningStep(
            kind=cast(StepKind, step.kind),  # the tracker only opens steps of these kinds
            index=step.index,
            text=text.strip(),
            omega=step.omega,
            confidence=harmonic_mean(confidences),
            anchors=list(step.anchors),
            tokens=len(confidences),
            changed=sum(self._flips[first:last]),
            kl=sum(kls) / len(kls) if kls else 0.0,
        )
        self.steps.append(record)
        return record

    def _watch_answer(self, session: DecodeSession) -> None:
        assert self._answer_from is not None and self._answer_token is not None
        raw = self.text[self._answer_from :]
        lead = len(raw) - len(raw.lstrip())
        answer = raw[lead:]
        first_line, line_break, _ = answer.partition("\n")
        end: int | None = None
        if line_break and len(first_line.split()) <= self.limits.answer_line_words:
            end = len(first_line)
        elif line_break and (blank := answer.find("\n\n")) >= 0:
            end = blank
        if end is not None:
            # The token that ended the answer may carry the start of the next line: it is not part of the solve.
            self.text = self.text[: self._answer_from + lead + end]
            self._stop(session, "final_answer")
        elif len(self._confidences) - self._answer_token > self.limits.max_answer_tokens:
            self._stop(session, "final_answer")

    def _stop(self, session: DecodeSession, reason: str) -> None:
        session.cancel(self.row)
        self._finish(reason, len(self.text))

    def _finish(self, reason: str, end_char: int) -> None:
        if self.finish_reason is not None:
            return
        self.finish_reason = reason
        self._close(end_char, len(self._confidences))

    # -- results ---------------------------------------------------------------------------------------------------

    def answer_text(self) -> str | None:
        """The final answer line's text, if the solve reached one."""
        if self._answer_from is None:
            return None
        return self.text[self._answer_from :].strip().split("\n", 1)[0].strip()

    def records(self) -> list[dict[str, Any]]:
        return [s.model_dump() for s in self.steps]
