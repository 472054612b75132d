"""Fault injection (issue #36, item 4): a forward that raises mid-session, a tokenizer error on one row of a batch,
a consumer that raises inside a callback, and KeyboardInterrupt during ``batch()``. The failing call gets the
error, a call sharing its session finishes (or gets the same clear error), and the next call on the same LLM
decodes exactly what it decodes on a fresh one: no poisoned session, no lock left held, no thread left behind.

Tiny random model, float32, greedy, end-of-sequence off: every call runs its whole budget, so its tokens are
comparable with the same call decoded alone.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler

PROMPTS = ["Tell me about apples.", "Count to ten, please, slowly and carefully.", "Name three rivers."]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Injected(RuntimeError):
    """The fault the tests inject; a distinct type, so a test can tell it from a real failure."""


class Faults:
    """A forward pre-hook that sleeps 10 ms (so concurrent calls overlap on any machine) and raises ``error`` at
    the ``at``-th forward after :meth:`arm`."""

    def __init__(self) -> None:
        self.forwards = 0
        self.at: int | None = None
        self.error: BaseException = Injected("injected forward failure")

    def arm(self, after: int, error: BaseException | None = None) -> None:
        self.at = self.forwards + after
        if error is not None:
            self.error = error

    def hook(self, module: Any, args: Any) -> None:
        time.sleep(0.01)
        self.forwards += 1
        if self.at is not None and self.forwards >= self.at:
            self.at = None
            raise self.error


@pytest.fixture
def faulty(byte_tokenizer: Any) -> tuple[Any, Faults]:
    from selfanchor_chains import SteeredHFLLM
    from tests.conftest import build_long_context_llama

    model = build_long_context_llama(len(byte_tokenizer), initializer_range=0.5)
    faults = Faults()
    model.register_forward_pre_hook(faults.hook)
    llm = SteeredHFLLM(model=model, tokenizer=byte_tokenizer, model_id="tiny", max_new_tokens=16, omega=1.5)
    llm.runtime.decoder.eos_token_ids = frozenset()
    return llm, faults


@pytest.fixture
def alone(faulty: tuple[Any, Faults]) -> list[str]:
    """Each prompt decoded alone, before any fault."""
    llm, _ = faulty
    return [llm.invoke(p) for p in PROMPTS]


def assert_healthy(llm: Any, alone: list[str], threads_before: int) -> None:
    """The LLM works as before: the model lock is free, no session is left open, every decode thread ended, and
    the next calls (alone and batched) decode exactly the tokens they decoded before the fault."""
    from selfanchor_chains.langchain.workers import live_workers

    runtime = llm.runtime
    deadline = time.monotonic() + 30
    while (live_workers() or threading.active_count() > threads_before) and time.monotonic() < deadline:
        time.sleep(0.02)  # a session's driver ends its last step (under the model lock) just after its calls
    assert not live_workers() and threading.active_count() <= threads_before, threading.enumerate()
    assert not runtime._lock.locked(), "the model lock was left held"
    assert runtime._shared is None or runtime._shared.closed
    assert llm.invoke(PROMPTS[0]) == alone[0]
    assert llm.batch(PROMPTS) == alone


def _in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


class FirstToken(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen = threading.Event()

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.seen.set()


# -- a forward that raises mid-session ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda llm: llm.invoke(PROMPTS[0]), id="invoke-shared-session"),
        pytest.param(lambda llm: "".join(llm.stream(PROMPTS[0])), id="stream"),
        pytest.param(lambda llm: llm.batch(PROMPTS * 4), id="batch-refilled-own-session"),
        pytest.param(lambda llm: asyncio.run(llm.ainvoke(PROMPTS[0])), id="ainvoke"),
        pytest.param(lambda llm: asyncio.run(llm.abatch(PROMPTS)), id="abatch"),
    ],
)
def test_a_forward_that_raises_mid_session_reaches_the_caller(faulty, alone, call) -> None:
    llm, faults = faulty
    threads = threading.active_count()
    faults.arm(after=5)
    with pytest.raises(Injected):
        call(llm)
    assert_healthy(llm, alone, threads)


def test_a_forward_failure_reaches_every_call_sharing_the_session(faulty, alone) -> None:
    llm, faults = faulty
    threads = threading.active_count()
    started = FirstToken()
    thread, out = _in_thread(lambda: llm.invoke(PROMPTS[0], config={"callbacks": [started]}))
    assert started.seen.wait(60)
    faults.arm(after=3)
    with pytest.raises(Injected):
        llm.invoke(PROMPTS[1])  # joins the running session; its forwards are the first call's too
    thread.join(60)
    assert isinstance(out.get("error"), Injected), out  # the other call gets the same clear error
    assert_healthy(llm, alone, threads)


# -- a tokenizer error on one row of a batch ---------------------------------------------------------------------


@pytest.fixture
def poisoned_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tokenizer fails on a text holding "POISON", as the Rust tokenizers fail on input they cannot take."""
    import selfanchor_chains.prompting.inputs as inputs

    real = inputs.tokenize_with_anchors

    def tokenize(tokenizer: Any, text: str, *args: Any, **kwargs: Any) -> Any:
        if "POISON" in text:
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
        return real(tokenizer, text, *args, **kwargs)

    monkeypatch.setattr(inputs, "tokenize_with_anchors", tokenize)


@pytest.mark.usefixtures("poisoned_tokenizer")
def test_a_tokenizer_error_on_one_row_fails_the_batch_before_any_forward(faulty, alone) -> None:
    llm, faults = faulty
    threads = threading.active_count()
    forwards = faults.forwards
    with pytest.raises(TypeError, match="TextEncodeInput"):
        llm.batch([PROMPTS[0], "POISON", PROMPTS[2]])
    assert faults.forwards == forwards  # every prompt is prepared before the first forward
    # Per prompt (max_concurrency=1), the other rows finish and only the bad one carries the error.
    out = llm.batch([PROMPTS[0], "POISON", PROMPTS[2]], config={"max_concurrency": 1}, return_exceptions=True)
    assert out[0] == alone[0] and out[2] == alone[2] and isinstance(out[1], TypeError)
    assert_healthy(llm, alone, threads)


# -- a consumer that raises inside a callback --------------------------------------------------------------------


class RaisesOnThirdToken(BaseCallbackHandler):
    raise_error = True  # LangChain only logs a handler's error unless it asks for it to propagate

    def __init__(self, error: BaseException) -> None:
        self.tokens = 0
        self.error = error

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens += 1
        if self.tokens == 3:
            raise self.error


def test_a_callback_that_raises_fails_its_call_only(faulty, alone) -> None:
    llm, _ = faulty
    threads = threading.active_count()
    started = FirstToken()
    thread, out = _in_thread(lambda: llm.invoke(PROMPTS[1], config={"callbacks": [started]}))
    assert started.seen.wait(60)
    with pytest.raises(ValueError, match="consumer broke"):
        llm.invoke(PROMPTS[0], config={"callbacks": [RaisesOnThirdToken(ValueError("consumer broke"))]})
    thread.join(60)
    assert out.get("value") == alone[1], out  # the call sharing its session finishes, tokens unchanged
    assert_healthy(llm, alone, threads)


def test_an_async_callback_and_a_stream_consumer_that_raise_fail_their_calls_only(faulty, alone) -> None:
    llm, _ = faulty
    threads = threading.active_count()

    class AsyncRaises(AsyncCallbackHandler):
        raise_error = True

        async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            raise ValueError("async consumer broke")

    async def both() -> list[Any]:
        bad = llm.ainvoke(PROMPTS[0], config={"callbacks": [AsyncRaises()]})
        return list(await asyncio.gather(bad, llm.ainvoke(PROMPTS[1]), return_exceptions=True))

    bad, good = asyncio.run(both())
    assert isinstance(bad, ValueError) and good == alone[1]
    with pytest.raises(ZeroDivisionError):
        for k, _chunk in enumerate(llm.stream(PROMPTS[2])):
            if k == 2:
                _ = 1 / 0  # the consumer's own bug, mid-stream
    assert_healthy(llm, alone, threads)


# -- KeyboardInterrupt during batch() ----------------------------------------------------------------------------


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
@pytest.mark.parametrize("prompts", [PROMPTS, PROMPTS * 4], ids=["shared-session", "own-session"])
@pytest.mark.parametrize("after_tokens", [1, 6])
def test_keyboard_interrupt_during_batch_leaves_a_working_llm(faulty, alone, prompts, after_tokens) -> None:
    """Ctrl-C as a terminal sends it: SIGINT to the main thread, while it waits for a shared session's events
    (batch within ``batch_size``) or runs the forwards itself (a larger batch)."""
    llm, _ = faulty
    threads = threading.active_count()
    tokens = threading.Semaphore(0)

    class Count(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            tokens.release()

    def interrupt() -> None:
        for _ in range(after_tokens):
            tokens.acquire(timeout=60)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        llm.batch(prompts, config={"callbacks": [Count()]})
        time.sleep(60)  # not reached: the batch outlasts the signal (16 tokens a prompt, 10 ms a forward)
    sender.join(60)
    assert_healthy(llm, alone, threads)
