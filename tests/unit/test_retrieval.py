"""Transient retriever failures are retried; other errors are not."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from selfanchor_chains.reasoning.retrieval import anchored_retrieval


class Flaky:
    def __init__(self, failures: int, error: type[BaseException]) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, query: str) -> list[Document]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("retriever down")
        return [Document(page_content=f"about {query}")]


def test_transient_errors_are_retried():
    flaky = Flaky(2, ConnectionError)
    out = anchored_retrieval(RunnableLambda(flaky), attempts=3).invoke({"question": "pens"})
    assert out["context"][0].page_content == "about pens" and flaky.calls == 3


def test_other_errors_are_not_retried():
    flaky = Flaky(1, MemoryError)
    with pytest.raises(MemoryError):
        anchored_retrieval(RunnableLambda(flaky), attempts=3).invoke({"question": "pens"})
    assert flaky.calls == 1


def test_attempts_run_out():
    flaky = Flaky(5, TimeoutError)
    with pytest.raises(TimeoutError):
        anchored_retrieval(RunnableLambda(flaky), attempts=2).invoke({"question": "pens"})
    assert flaky.calls == 2
