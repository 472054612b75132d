"""Concurrent calls join one running decode session (continuous batching across calls): tiny random model,
float32, where each row's tokens must be exactly those it gets decoding alone."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

PROMPTS = ["Tell me about apples.", "Count to ten, please, slowly and carefully."]


@pytest.fixture
def llm(byte_tokenizer: Any) -> Any:
    from selfanchor_chains import SteeredHFLLM
    from tests.conftest import build_long_context_llama

    model = build_long_context_llama(len(byte_tokenizer), initializer_range=0.5)
    # Each forward takes at least 20 ms, so a session of 24 steps surely still runs when a call made a moment
    # after another one (a thread or task started next) arrives: the tests do not depend on the machine's speed.
    model.register_forward_pre_hook(lambda module, args: time.sleep(0.02))
    llm = SteeredHFLLM(model=model, tokenizer=byte_tokenizer, model_id="tiny", max_new_tokens=24, omega=1.5)
    llm.runtime.decoder.eos_token_ids = frozenset()  # every call runs its full budget: the overlap is certain
    return llm


def _count_sessions(llm: Any) -> list[Any]:
    sessions: list[Any] = []
    start = llm.runtime.decoder.start

    def counting(*args: Any, **kwargs: Any) -> Any:
        session = start(*args, **kwargs)
        sessions.append(session)
        return session

    llm.runtime.decoder.start = counting
    return sessions


def test_a_call_made_while_another_decodes_joins_its_session(llm: Any) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    alone = [llm.invoke(p, anchors=["apples" if "apples" in p else "ten"]) for p in PROMPTS]
    sessions = _count_sessions(llm)
    first_token = threading.Event()

    class Signal(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            first_token.set()

    got: dict[int, str] = {}

    def first() -> None:
        got[0] = llm.invoke(PROMPTS[0], anchors=["apples"], config={"callbacks": [Signal()]})

    thread = threading.Thread(target=first)
    thread.start()
    assert first_token.wait(60)  # the first call is decoding now
    got[1] = llm.invoke(PROMPTS[1], anchors=["ten"])
    thread.join(60)
    assert [got[0], got[1]] == alone  # exact: joining changes no token
    assert len(sessions) == 1 and sessions[0].row_count == 2  # the second call joined the running session


def test_concurrent_async_calls_share_one_session(llm: Any) -> None:
    alone = [llm.invoke(p) for p in PROMPTS]
    sessions = _count_sessions(llm)

    async def both() -> list[str]:
        return list(await asyncio.gather(*(llm.ainvoke(p) for p in PROMPTS)))

    assert asyncio.run(both()) == alone
    assert len(sessions) == 1 and sessions[0].row_count == 2


def test_calls_with_other_settings_decode_apart(llm: Any) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    sessions = _count_sessions(llm)
    started = threading.Event()

    class Signal(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            started.set()

    thread = threading.Thread(target=lambda: llm.invoke(PROMPTS[0], config={"callbacks": [Signal()]}))
    thread.start()
    assert started.wait(60)
    short = llm.invoke(PROMPTS[1], max_new_tokens=5)  # another budget: its own session, taking turns
    thread.join(60)
    assert len(sessions) == 2 and len(short) > 0


def test_an_abandoned_call_stops_only_its_rows(llm: Any) -> None:
    from selfanchor_chains.engine import RowRequest

    settings = llm._settings(None)
    rows = [RowRequest(llm.prepare(p).ids, [], 1.0) for p in PROMPTS]
    alone: list[Any] = []
    for _ in llm.runtime.joined_events([rows[1]], settings, results_out=alone):
        pass
    first = llm.runtime.joined_events([rows[0]], settings)
    next(first)  # decoding
    results: list[Any] = []
    second = llm.runtime.joined_events([rows[1]], settings, results_out=results)
    next(second)  # joined
    first.close()  # the first caller walks away: its row is cancelled
    for _ in second:
        pass
    assert [r.token_ids for r in results] == [alone[0].token_ids]
    assert results[0].finish_reason == "length"


def test_a_bad_row_is_refused_before_it_joins(llm: Any) -> None:
    from selfanchor_chains.engine import DecodingInputError, RowRequest

    settings = llm._settings(None)
    good = RowRequest(llm.prepare(PROMPTS[0]).ids, [], 1.0)
    running = llm.runtime.joined_events([good], settings)
    next(running)
    with pytest.raises(DecodingInputError, match="empty prompt"):
        next(llm.runtime.joined_events([RowRequest([], [], 1.0)], settings))
    assert sum(len(step) for step in running) > 0  # the running call is unharmed


def test_calls_beyond_the_slots_wait_for_room_and_then_join(llm: Any) -> None:
    from selfanchor_chains.engine import RowRequest
    from selfanchor_chains.langchain.runtime import DecodeSettings

    settings = DecodeSettings(60, llm._settings(None).sampling, ())
    prompts = [*PROMPTS, "What is a pear?"]
    rows = [RowRequest(llm.prepare(p).ids, [], 1.0) for p in prompts]
    alone: list[Any] = []
    for row in rows:
        for _ in llm.runtime.joined_events([row], settings, results_out=alone):
            pass
    sessions = _count_sessions(llm)
    results: list[list[Any]] = [[], [], []]
    calls = [llm.runtime.joined_events([row], settings, results_out=results[k], slots=2) for k, row in enumerate(rows)]
    steps = [0, 0, 0]
    next(calls[0])
    next(calls[1])
    waiting = llm.runtime._shared.backlog
    third = threading.Thread(target=lambda: steps.__setitem__(2, sum(1 for _ in calls[2])))
    third.start()
    for k in (0, 1):
        steps[k] = 1 + sum(1 for _ in calls[k])
    third.join(60)
    assert len(sessions) == 1 and sessions[0].row_count == 3  # the third call joined once a place was free
    assert not waiting
    assert [r[0].token_ids for r in results] == [r.token_ids for r in alone]
    assert steps[2] > 0
