"""Decoding passes of a reasoning chain over a batch of problems: one batched pass (the first try, then the format
retries), or a continuous pass that streams every problem through a fixed number of decoding rows."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..engine.requests import TokenEvent
from ..engine.session import DecodeSession
from ..prompting.inputs import PreparedPrompt
from .schema import ReasoningInput
from .steps import StepTracker

if TYPE_CHECKING:
    from .chains import ReasoningChain


@dataclass
class Solve:
    """One problem inside a batched pass."""

    index: int
    prepared: PreparedPrompt
    ids: list[int]
    tracker: StepTracker
    request: ReasoningInput
    reported_steps: int = 0


class BatchPass:
    """One batched decoding pass over some of a batch's problems (the first try, or the format retries)."""

    def __init__(
        self, chain: ReasoningChain, requests: Sequence[ReasoningInput], pending: list[int], attempt: int
    ) -> None:
        self.chain, self.pending, self.attempt = chain, pending, attempt
        self.solves = [chain._build(k, requests[i], reminder=attempt > 0) for k, i in enumerate(pending)]
        self.rows = chain._rows(self.solves)
        self.sessions: list[DecodeSession] = []

    def on_step(self, session: DecodeSession, step: list[TokenEvent]) -> None:
        """Runs in the decoding thread between forwards: step boundaries switch anchors and ω right away."""
        for event in step:
            self.solves[event.row].tracker.on_event(event, session)

    def emit(self, step: list[TokenEvent]) -> list[tuple[str, int, Any]]:
        out: list[tuple[str, int, Any]] = [("token", self.pending[e.row], e.text) for e in step if e.text]
        for k, solve in enumerate(self.solves):
            steps = solve.tracker.steps
            while solve.reported_steps < len(steps):
                out.append(("step", self.pending[k], steps[solve.reported_steps].model_dump()))
                solve.reported_steps += 1
        return out

    def finish(self) -> tuple[list[tuple[str, int, Any]], list[int]]:
        """Outputs of the pass, and the problems to decode again with the format reminder."""
        session = self.sessions[0]
        results = session.results()
        out: list[tuple[str, int, Any]] = []
        retry: list[int] = []
        for k, (solve, result) in enumerate(zip(self.solves, results, strict=True)):
            if solve.tracker.finish_reason is None:
                solve.tracker._finish(result.finish_reason, len(solve.tracker.text))
            output = self.chain._output(solve, result, retried=self.attempt > 0, stats=session.stats)
            if self.chain._broken(output) and self.attempt < self.chain.format_retries:
                retry.append(self.pending[k])
                out.append(("retry", self.pending[k], output))
            else:
                out.append(("output", self.pending[k], output))
        return out, retry


class ContinuousPass:
    """All problems streamed through at most ``slots`` decoding rows (continuous batching): when a row finishes,
    the next problem (or the finished one's format retry) takes its place at the next decode step.

    Everything here runs in the decoding thread between two forwards (:meth:`on_step`), except :meth:`emit`.
    """

    def __init__(self, chain: ReasoningChain, requests: Sequence[ReasoningInput], slots: int) -> None:
        self.chain, self.requests, self.slots = chain, requests, slots
        self.queue: deque[tuple[int, int]] = deque((i, 0) for i in range(len(requests)))  # (problem, attempt)
        self.open: dict[int, tuple[Solve, int, int]] = {}  # session row -> (solve, problem, attempt)
        self.problem_of_row: dict[int, int] = {}
        self.ready: list[tuple[str, int, Any]] = []  # steps and outputs not yet emitted
        first = [self._open(row) for row in range(min(slots, len(self.queue)))]
        self.rows = chain._rows(first)
        self.sessions: list[DecodeSession] = []

    def _open(self, row: int) -> Solve:
        problem, attempt = self.queue.popleft()
        solve = self.chain._build(row, self.requests[problem], reminder=attempt > 0)
        self.open[row] = (solve, problem, attempt)
        self.problem_of_row[row] = problem
        return solve

    def on_step(self, session: DecodeSession, step: list[TokenEvent]) -> None:
        for event in step:
            self.open[event.row][0].tracker.on_event(event, session)
        for row in [r for r, (solve, _, _) in self.open.items() if solve.tracker.finish_reason is not None]:
            self._close(session, row)
        # Free places go to waiting problems; they are prefilled and join before the next forward.
        while len(self.open) < self.slots and self.queue:
            solve = self._open(session.row_count)
            session.add_rows(self.chain._rows([solve]))

    def _close(self, session: DecodeSession, row: int) -> None:
        solve, problem, attempt = self.open.pop(row)
        result = session.result(row)
        if solve.tracker.finish_reason is None:  # ended from outside (cancelled)
            solve.tracker._finish(result.finish_reason, len(solve.tracker.text))
        self._report_steps(solve, problem)
        output = self.chain._output(solve, result, retried=attempt > 0, stats=session.stats)
        if self.chain._broken(output) and attempt < self.chain.format_retries:
            self.ready.append(("retry", problem, output))
            self.queue.appendleft((problem, attempt + 1))
        else:
            self.ready.append(("output", problem, output))

    def _report_steps(self, solve: Solve, problem: int) -> None:
        steps = solve.tracker.steps
        while solve.reported_steps < len(steps):
            self.ready.append(("step", problem, steps[solve.reported_steps].model_dump()))
            solve.reported_steps += 1

    def emit(self, step: list[TokenEvent]) -> list[tuple[str, int, Any]]:
        out: list[tuple[str, int, Any]] = [("token", self.problem_of_row[e.row], e.text) for e in step if e.text]
        for solve, problem, _ in self.open.values():
            self._report_steps(solve, problem)
        out += self.ready
        self.ready = []
        return out

    def finish(self) -> list[tuple[str, int, Any]]:
        """After the session ended: close whatever is still open (rows cancelled from outside)."""
        for row in list(self.open):
            self._close(self.sessions[0], row)
        out, self.ready = self.ready, []
        return out
