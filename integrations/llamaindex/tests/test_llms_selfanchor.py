"""SelfAnchorLLM on SmolLM2-135M: the LlamaIndex LLM interface, anchors, async without blocking the loop."""

from __future__ import annotations

import asyncio
import time

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import CustomLLM
from llama_index.llms.selfanchor import SelfAnchorLLM
from pydantic import ValidationError

from selfanchor_chains.prompting.markup import AnchorMarkupError, AnchorNotFoundError

pytestmark = pytest.mark.slow

PROMPT = "Question: <anchor>What is 17 * 3?</anchor> Answer with a number."
CLEAN = "Question: What is 17 * 3? Answer with a number."


def test_is_a_llamaindex_custom_llm_with_metadata(llm, steered) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(llm, CustomLLM) and llm.class_name() == "SelfAnchorLLM"
    meta = llm.metadata
    assert meta.context_window == steered.model.config.max_position_embeddings
    assert meta.num_output == 12 and meta.is_chat_model and not meta.is_function_calling_model
    assert meta.model_name == "smollm2-135m@float32"
    assert SelfAnchorLLM(llm=steered, context_window=1024, max_new_tokens=5).metadata.num_output == 5
    assert not SelfAnchorLLM(llm=steered, use_chat_template=False).metadata.is_chat_model


def test_complete_matches_the_langchain_llm(llm, steered) -> None:  # type: ignore[no-untyped-def]
    response = llm.complete(PROMPT)
    assert response.text == steered.invoke(PROMPT)  # same engine, same chat wrapping, greedy
    info = response.additional_kwargs
    assert info["anchors"] == ["What is 17 * 3?"] and info["omega"] == 1.5
    assert info["finish_reason"] in ("length", "stop") and info["completion_tokens"] <= 12


def test_stream_complete_yields_deltas(llm) -> None:  # type: ignore[no-untyped-def]
    chunks = list(llm.stream_complete(PROMPT))
    assert "".join(c.delta for c in chunks) == chunks[-1].text == llm.complete(PROMPT).text
    assert chunks[-1].additional_kwargs["finish_reason"]


def test_chat_uses_the_chat_template(llm) -> None:  # type: ignore[no-untyped-def]
    messages = [ChatMessage(role=MessageRole.USER, content=PROMPT)]
    reply = llm.chat(messages)
    assert reply.message.role == MessageRole.ASSISTANT
    assert reply.message.content == llm.complete(PROMPT).text  # one user message = a completion prompt
    streamed = list(llm.stream_chat(messages))
    assert "".join(r.delta for r in streamed) == streamed[-1].message.content == reply.message.content
    with_system = llm.chat([ChatMessage(role=MessageRole.SYSTEM, content="Be terse."), *messages])
    assert with_system.additional_kwargs["anchors"] == ["What is 17 * 3?"]


def test_call_time_options(llm) -> None:  # type: ignore[no-untyped-def]
    r = llm.complete(CLEAN, anchors=["17 * 3"], omega=1.0, max_tokens=4)
    assert r.additional_kwargs["anchors"] == ["17 * 3"] and r.additional_kwargs["omega"] == 1.0
    assert r.additional_kwargs["completion_tokens"] <= 4
    assert llm.omega == 1.5  # the overrides did not stick
    chat = llm.chat([ChatMessage(role=MessageRole.USER, content=CLEAN)], anchors=["17 * 3"])
    assert chat.additional_kwargs["anchors"] == ["17 * 3"]
    assert "\n" not in llm.complete("Write three lines of text.", stop=["\n"], max_tokens=24).text
    with pytest.raises(AnchorNotFoundError):
        llm.chat([ChatMessage(role=MessageRole.USER, content=CLEAN)], anchors=["absent"])
    with pytest.raises(AnchorMarkupError):
        llm.complete("broken </anchor> markup")
    with pytest.raises(TypeError, match="unexpected keyword"):
        llm.complete(CLEAN, frequency_penalty=1.0)
    with pytest.raises(ValidationError):
        llm.complete(CLEAN, omega=-1.0)


def test_formatted_prompt_skips_the_chat_template(llm, steered) -> None:  # type: ignore[no-untyped-def]
    raw = llm.complete("The capital of France is", formatted=True, max_tokens=4)
    assert (
        raw.text == steered.invoke("The capital of France is", max_new_tokens=4)
        or raw.additional_kwargs["prompt_tokens"]
        < llm.complete("The capital of France is", max_tokens=4).additional_kwargs["prompt_tokens"]
    )


def test_no_chat_template_mode(steered) -> None:  # type: ignore[no-untyped-def]
    plain = SelfAnchorLLM(llm=steered, use_chat_template=False, system_prompt="SYS")
    out = plain.chat([ChatMessage(role=MessageRole.USER, content=PROMPT)], max_tokens=3)
    assert out.additional_kwargs["anchors"] == ["What is 17 * 3?"]
    assert plain.complete(PROMPT, max_tokens=3).additional_kwargs["prompt_tokens"] > 0


async def test_async_variants_match_sync(llm) -> None:  # type: ignore[no-untyped-def]
    expected = llm.complete(PROMPT).text
    assert (await llm.acomplete(PROMPT)).text == expected
    chunks = [c async for c in await llm.astream_complete(PROMPT)]
    assert chunks[-1].text == expected and "".join(c.delta for c in chunks) == expected
    messages = [ChatMessage(role=MessageRole.USER, content=PROMPT)]
    assert (await llm.achat(messages)).message.content == expected
    replies = [r async for r in await llm.astream_chat(messages)]
    assert replies[-1].message.content == expected


async def _ticks_during(coro) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """How often a 5 ms ticker ran while ``coro`` was awaited, and the longest gap between ticks."""
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await coro
    stop.set()
    await task
    gaps = [b - a for a, b in zip([started, *ticks], ticks, strict=False)]
    return len(ticks), max(gaps, default=0.0)


async def test_async_does_not_block_the_event_loop(llm) -> None:  # type: ignore[no-untyped-def]
    async def consume_stream() -> None:
        async for _ in await llm.astream_chat([ChatMessage(role=MessageRole.USER, content=PROMPT)], max_tokens=24):
            pass

    for coro in (llm.acomplete(PROMPT, max_tokens=24), consume_stream()):
        started = time.perf_counter()
        ticks, longest_gap = await _ticks_during(coro)
        elapsed = time.perf_counter() - started
        # A blocking implementation (LlamaIndex's CustomLLM default, HuggingFaceLLM) would let the ticker run once.
        assert ticks >= 5, (ticks, elapsed)
        assert longest_gap < max(0.5, elapsed / 3), (longest_gap, elapsed)


async def test_concurrent_async_calls_are_serialised_and_correct(llm) -> None:  # type: ignore[no-untyped-def]
    prompts = [PROMPT, "Question: <anchor>Name a colour.</anchor>"]
    expected = [llm.complete(p).text for p in prompts]
    got = await asyncio.gather(*(llm.acomplete(p) for p in prompts))
    assert [g.text for g in got] == expected


def test_rejects_non_steered_llms() -> None:
    with pytest.raises(TypeError, match="SteeredHFLLM"):
        SelfAnchorLLM(llm=object())  # type: ignore[arg-type]
