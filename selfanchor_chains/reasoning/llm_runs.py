"""The child LLM runs a reasoning chain reports its decoding to (one per problem), written once for both faces.

A chain's run shows one LLM run per problem in LangChain's tracing (LangSmith, ``astream_events``): started with
the question, fed every decoded token, ended with the text or the error. The same methods serve the sync entry
points, where the callback managers act at once, and the async ones, where the managers return coroutines: every
method returns what the managers returned, and the async face awaits it with :func:`settle`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.outputs import Generation, LLMResult


async def settle(results: Sequence[Any]) -> list[Any]:
    """Await the awaitables among ``results`` (the async managers' coroutines), in order; return the values."""
    return [await r if inspect.isawaitable(r) else r for r in results]


class ChildLLMRuns:
    """The LLM runs under a chain's runs, one per problem (``None`` where the problem has no callback manager).

    Args:
        serialized: How the LLM shows in the trace (LangChain's ``serialized`` dict).
        invocation_params: What the trace records of the call (the ω schedule).
    """

    def __init__(self, serialized: Mapping[str, Any], invocation_params: Mapping[str, Any]) -> None:
        self.serialized = dict(serialized)
        self.invocation_params = dict(invocation_params)
        self.runs: list[Any] = []

    def start(self, managers: Sequence[Any], questions: Sequence[str]) -> list[Any]:
        """Start one child run per manager (``None`` where there is none); pass what this returns, settled, to
        :meth:`started`."""
        return [
            None
            if manager is None
            else manager.get_child().on_llm_start(self.serialized, [question], invocation_params=self.invocation_params)
            for manager, question in zip(managers, questions, strict=True)
        ]

    def started(self, results: Sequence[Any]) -> ChildLLMRuns:
        self.runs = [None if started is None else started[0] for started in results]
        return self

    def event(self, kind: str, index: int, payload: Any) -> list[Any]:
        """Report a solve event: a token feeds its problem's run; the problem's output ends it (a later error is
        not its)."""
        run = self.runs[index]
        if run is None:
            return []
        if kind == "token":
            return [run.on_llm_new_token(payload)]
        if kind == "output":
            self.runs[index] = None
            return [run.on_llm_end(LLMResult(generations=[[Generation(text=payload["text"])]]))]
        return []

    def error(self, exc: BaseException) -> list[Any]:
        """Report ``exc`` to every run not ended yet."""
        return [run.on_llm_error(exc) for run in self.runs if run is not None]
