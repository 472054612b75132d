"""One question under several methods in the same engine session: what ``selfanchor solve --compare`` shows.

The methods' rows decode together (one forward per step for all of them), each with its own steps, anchors and ω,
so the comparison costs about one solve's wall time and every method sees the same model state. A method whose
first answer ignored its format gets its format retry on its own afterwards, as its chain would do it.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from typing import Any

from .chains import ReasoningChain
from .passes import BatchPass


def solve_side_by_side(chains: Sequence[ReasoningChain], question: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """Solve ``question`` with every chain at once; yields ``(chain index, chunk)`` as :meth:`ReasoningChain.stream`
    chunks: ``{"token"}``, ``{"step"}``, ``{"retry"}`` and last, per chain, ``{"output"}``.

    Raises:
        ValueError: No chains, or chains on different LLMs or token budgets (they cannot share a session).
    """
    if not chains:
        raise ValueError("no methods to compare")
    first = chains[0]
    if any(c.llm is not first.llm or c.max_new_tokens != first.max_new_tokens for c in chains):
        raise ValueError("methods compared side by side need the same LLM and max_new_tokens")
    requests = [chain._coerce(question) for chain in chains]
    solves = [chain._build(k, request) for k, (chain, request) in enumerate(zip(chains, requests, strict=True))]
    rows = [chain._rows([solve])[0] for chain, solve in zip(chains, solves, strict=True)]
    reported = [0] * len(chains)
    sessions: list[Any] = []

    def on_step(session: Any, step: Any) -> None:
        # In the decoding thread between forwards: each row's step boundaries switch its anchors and ω.
        for event in step:
            solves[event.row].tracker.on_event(event, session)

    for step in first.llm.runtime.events(rows, first._settings(), session_out=sessions, on_step=on_step):
        for event in step:
            if event.text:
                yield event.row, {"token": event.text}
        for k, solve in enumerate(solves):
            while reported[k] < len(solve.tracker.steps):
                yield k, {"step": solve.tracker.steps[reported[k]].model_dump()}
                reported[k] += 1
    results = sessions[0].results()
    for k, (chain, solve) in enumerate(zip(chains, solves, strict=True)):
        if solve.tracker.finish_reason is None:
            solve.tracker._finish(results[k].finish_reason, len(solve.tracker.text))
        output = chain._output(solve, results[k], retried=False, stats=sessions[0].stats)
        if chain._broken(output) and chain.format_retries > 0:
            yield k, {"retry": output}
            output = yield from _retry(chain, requests[k], k)
        yield k, {"output": output}


def _retry(chain: ReasoningChain, request: Any, k: int) -> Generator[tuple[int, dict[str, Any]], None, dict[str, Any]]:
    """The chain's own format retry (with the reminder), alone; returns its output."""
    one = BatchPass(chain, [request], [0], attempt=1)
    for step in chain.llm.runtime.events(one.rows, chain._settings(), session_out=one.sessions, on_step=one.on_step):
        for kind, _, payload in one.emit(step):
            yield k, {kind: payload}
    finished, _ = one.finish()
    output: dict[str, Any] = finished[-1][2]
    return output
