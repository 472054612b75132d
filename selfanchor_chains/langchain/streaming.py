"""Stream chunks, each reported to the run's callbacks before it is yielded: the one way the LLM and the chat model
stream, sync and async (the async face only awaits the callbacks and closes the decoding behind it)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

from langchain_core.outputs import ChatGenerationChunk, GenerationChunk

Chunk = TypeVar("Chunk", GenerationChunk, ChatGenerationChunk)


def reported(chunks: Iterable[Chunk | None], run_manager: Any) -> Iterator[Chunk]:
    """The chunks there are (``None``: a decoded event with nothing to show), each passed to
    ``run_manager.on_llm_new_token`` first, so callbacks (``astream_events``, LangGraph) see every token."""
    for chunk in chunks:
        if chunk is None:
            continue
        if run_manager is not None:
            run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        yield chunk


async def areported(
    chunks: AsyncIterable[Chunk | None], run_manager: Any, source: AsyncGenerator[Any, None]
) -> AsyncIterator[Chunk]:
    """The async face of :func:`reported`. ``source``, the decoding the chunks come from, is closed when this ends,
    also when the consumer stops listening early: an abandoned stream stops decoding at once."""
    try:
        async for chunk in chunks:
            if chunk is None:
                continue
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
    finally:
        await source.aclose()
