"""One loaded model shared by the LangChain classes: serialised decoding, cancellation, and an async bridge.

Decoding is CPU/GPU-bound and runs in the caller's thread (sync) or a worker thread (async). A lock per model
serialises the forwards: it is held for one decode step at a time, so concurrent sessions take turns step by
step, and a stream whose consumer walked away (without closing it) holds nothing between steps.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..engine.decoder import SteeredDecoder
from ..engine.requests import RowRequest, RowResult, SamplingConfig, TokenEvent
from ..engine.session import DecodeSession
from .shared_session import SharedSession, Subscriber, listen
from .workers import start_worker

__all__ = ["DecodeSettings", "SteeredRuntime"]

_DONE = object()
Item = TypeVar("Item")

# One lock per set of weights: an LLM and a chat model built on the same model must not run forwards at once.
_MODEL_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def _lock_for(model: Any) -> threading.Lock:
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.Lock()
        return lock


StepHook = Callable[[DecodeSession, list[TokenEvent]], None]
"""Called in the decoding thread after each step, before the next forward: the place to change anchors or ω."""


@dataclass(frozen=True)
class DecodeSettings:
    """Per-call decoding settings."""

    max_new_tokens: int
    sampling: SamplingConfig
    stop: tuple[str, ...] = ()

    def start(self, decoder: SteeredDecoder, rows: Sequence[RowRequest]) -> DecodeSession:
        """Open a decode session of ``rows`` with these settings (validates the rows; nothing runs yet)."""
        return decoder.start(rows, max_new_tokens=self.max_new_tokens, sampling=self.sampling, stop=self.stop)


def attach_runtime(
    owner: str, model: Any, tokenizer: Any, model_id: str, open_tag: str, close_tag: str
) -> tuple[str, SteeredRuntime]:
    """Shared set-up of the LangChain classes: check the parts, name the weights, validate the tags, make the runtime.

    Returns:
        The model id (the given one, else the weights' own name) and the runtime.
    """
    from ..prompting.markup import AnchorMarkup

    if model is None or tokenizer is None:
        raise ValueError(f"{owner} needs `model` and `tokenizer`; use {owner}.from_model_id(...)")
    if not model_id:
        model_id = str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
    AnchorMarkup(open_tag, close_tag)  # validates the tags
    return model_id, SteeredRuntime(model, tokenizer)


class SteeredRuntime:
    """A model, its tokenizer and the engine, with a lock so that one session decodes at a time."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.decoder = SteeredDecoder(model, tokenizer)
        self._lock = _lock_for(model)
        self._shared: SharedSession | None = None  # the session calls with equal settings join
        self._shared_guard = threading.Lock()

    def events(
        self,
        rows: Sequence[RowRequest],
        settings: DecodeSettings,
        cancel: threading.Event | None = None,
        session_out: list[DecodeSession] | None = None,
        on_step: StepHook | None = None,
    ) -> Iterator[list[TokenEvent]]:
        """Decode ``rows`` in one batched session, yielding each step's events; ``cancel`` stops between steps.

        The model's lock is held while a step computes (the forward and ``on_step``), never while the caller holds
        a step's events: a consumer that stops iterating without closing the generator blocks no other call on
        the model, and concurrent sessions take turns step by step.
        """
        session = settings.start(self.decoder, rows)
        if session_out is not None:
            session_out.append(session)
        steps = iter(session)
        while True:
            with self._lock:
                step = next(steps, None)
                if step is None:
                    return
                if on_step is not None:
                    on_step(session, step)
            yield step
            if cancel is not None and cancel.is_set():
                for row in range(len(rows)):
                    session.cancel(row)

    def joined_events(
        self,
        rows: Sequence[RowRequest],
        settings: DecodeSettings,
        cancel: threading.Event | None = None,
        *,
        slots: int = 8,
        results_out: list[RowResult] | None = None,
    ) -> Iterator[list[TokenEvent]]:
        """Like :meth:`events`, but the rows join the session another call is decoding with the same settings
        (continuous batching across calls, see :mod:`.shared_session`); events carry this call's row numbers.

        Args:
            rows: This call's rows.
            settings: Its decode settings.
            cancel: Set to stop this call's rows (the others go on).
            slots: Rows the shared session decodes at once when this call starts it; later calls wait for room.
            results_out: Receives this call's results, in row order, once its rows have ended.
        """
        joined = self._join(rows, settings, slots)
        if joined is None:  # a session with other settings is running: decode apart, taking turns with it
            sessions: list[DecodeSession] = []
            yield from self.events(rows, settings, cancel, session_out=sessions)
            if results_out is not None:
                results_out.extend(sessions[0].results())
            return
        shared, subscriber = joined
        yield from listen(subscriber, shared, cancel)
        if results_out is not None:
            results_out.extend(subscriber.results)

    def _join(
        self, rows: Sequence[RowRequest], settings: DecodeSettings, slots: int
    ) -> tuple[SharedSession, Subscriber] | None:
        """Add the rows to the running shared session, or start one; None when the running one differs in settings.

        Raises:
            DecodingInputError: A malformed row (before any work, and before anything joins).
        """
        with self._shared_guard:
            shared = self._shared
            if shared is not None and not shared.closed:
                if shared.settings != settings:
                    return None
                subscriber = shared.join(rows)
                if subscriber is not None:
                    return shared, subscriber
            session = settings.start(self.decoder, rows)
            shared = self._shared = SharedSession(session, settings, self._lock, slots, self._shared_guard)
            subscriber = shared.start(rows)
        stop = threading.Event()
        start_worker(lambda: self._drive(shared, stop), name="selfanchor-shared-decode", stop=stop)
        return shared, subscriber

    def _drive(self, shared: SharedSession, stop: threading.Event) -> None:
        """The shared session's loop, in its own thread: step, hand out the events, end with the last row; ``stop``
        (set at interpreter exit) ends it after the current step, and the calls still listening get an error."""
        steps = iter(shared.session)
        try:
            while True:
                if stop.is_set():
                    raise RuntimeError("the interpreter is exiting: the shared decode session was stopped")
                # The forward holds only the model lock: a call that wants to join queues meanwhile and adds its
                # rows between two steps (it holds the guard, then takes the model lock).
                events = shared.forward(steps)
                with self._shared_guard:
                    if not shared.hand_out(events):
                        if self._shared is shared:
                            self._shared = None
                        return
        except BaseException as exc:  # handed to every call still listening
            with self._shared_guard:
                if self._shared is shared:
                    self._shared = None
            shared.fail(exc)

    def aevents(
        self,
        rows: Sequence[RowRequest],
        settings: DecodeSettings,
        session_out: list[DecodeSession] | None = None,
        on_step: StepHook | None = None,
    ) -> AsyncGenerator[list[TokenEvent], None]:
        """The async face of :meth:`events`: decoding runs in a worker thread, the event loop stays free.

        If the consumer stops iterating (break, cancellation), the worker is told to stop after its current step.
        """
        return iterate_in_thread(lambda cancel: self.events(rows, settings, cancel, session_out, on_step))


async def iterate_in_thread(
    start: Callable[[threading.Event], Iterator[Item]],
) -> AsyncGenerator[Item, None]:
    """Run a synchronous iterator in a worker thread and yield its items on the event loop: the one async adapter
    of every sync core here (decoding is CPU/GPU-bound and must not block the loop).

    Args:
        start: Makes the iterator, given an event that is set when the consumer stops listening (break,
            cancellation); the iterator should stop soon after (the engine checks it between decode steps).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancel = threading.Event()

    def post(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the consumer's loop closed after it stopped listening: nobody to tell
            cancel.set()

    def worker() -> None:
        items: Iterator[Item] | None = None
        try:
            items = start(cancel)
            for item in items:
                post(item)
                if cancel.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, who re-raises it
            post(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator stopped early releases what it holds now, in this thread
            post(_DONE)

    # The exit hook sets ``cancel`` too: the worker stops after its current step and is joined before finalisation.
    start_worker(worker, name="selfanchor-decode", stop=cancel)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancel.set()
