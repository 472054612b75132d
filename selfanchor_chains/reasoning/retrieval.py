"""Retrieval feeding a reasoning chain: retrieved Documents become the anchored (and escaped) context."""

from __future__ import annotations

from typing import Any

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
"""Errors worth retrying in retrieval. Out-of-memory and programming errors are not among them: retrying those
blindly only repeats the failure."""


def anchored_retrieval(
    retriever: Any,
    *,
    question_key: str = "question",
    attempts: int = 3,
    retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
) -> Any:
    """``RunnablePassthrough.assign(context=itemgetter(question) | retriever)``, retrying transient failures.

    Pipe it into a reasoning chain: ``anchored_retrieval(retriever) | SelfAnchorChain(llm=llm)``; the retrieved
    Documents become anchored (and escaped) context. Retries use tenacity (through ``Runnable.with_retry``) with
    exponential back-off and jitter.
    """
    from operator import itemgetter

    from langchain_core.runnables import RunnablePassthrough

    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    robust = retriever.with_retry(
        retry_if_exception_type=retry_on, stop_after_attempt=attempts, wait_exponential_jitter=True
    )
    return RunnablePassthrough.assign(context=itemgetter(question_key) | robust)
