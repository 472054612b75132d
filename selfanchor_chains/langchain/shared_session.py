"""Concurrent calls that join one running decode session (continuous batching across calls).

While a call decodes, another call with the same decode settings (token budget, sampling, stop strings) does not
start a session of its own: its rows are added to the running one and join at the next decode step, so both
calls share every forward. A driver thread steps the session and hands each call the events of its own rows
(renumbered from 0); the session ends when its last row does, and the next call starts a new one. A call whose
settings differ from the running session's decodes in a session of its own (sessions take turns step by step).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from ..engine.requests import RowRequest, RowResult, TokenEvent
from ..engine.session import DecodeSession

_DONE = object()


class Subscriber:
    """One call's rows in the shared session (once admitted), and the queue its events arrive on."""

    def __init__(self, requests: Sequence[RowRequest]) -> None:
        self.requests = list(requests)
        self.rows: list[int] = []  # session row indices, set when admitted
        self.local: dict[int, int] = {}
        self.open = len(requests)
        self.queue: queue.Queue[Any] = queue.Queue()
        self.results: list[RowResult] = []
        self.done = False  # finished, failed or abandoned: the driver sends nothing more

    def admitted(self, rows: Sequence[int]) -> None:
        self.rows = list(rows)
        self.local = {row: k for k, row in enumerate(rows)}


class SharedSession:
    """A decode session that calls with the same settings join; stepped by a driver thread.

    At most ``slots`` rows decode at once (memory stays bounded): a call that finds no room waits in a backlog
    and is admitted, whole, as rows finish.

    Args:
        session: The engine session (not started), over the first call's rows.
        settings: Its decode settings; a call joins only with equal settings.
        model_lock: The model's lock, held while a step computes and while rows are added.
        slots: Rows decoding at once, at most (a first call with more rows than this still starts it).
        guard: The runtime's lock over its shared session: held by the driver around each step and by a call
            that joins or walks away, so the bookkeeping here changes in one thread at a time.
    """

    def __init__(
        self, session: DecodeSession, settings: Any, model_lock: threading.Lock, slots: int, guard: threading.Lock
    ) -> None:
        self.session = session
        self.settings = settings
        self.model_lock = model_lock
        self.guard = guard
        self.slots = slots
        self.subscribers: dict[int, Subscriber] = {}
        self.backlog: deque[Subscriber] = deque()
        self.running = 0  # rows added and not finished
        self.closed = False  # the session ended: nobody may join it any more

    def start(self, requests: Sequence[RowRequest]) -> Subscriber:
        """The first call: its rows are the session's first batch."""
        subscriber = Subscriber(requests)
        self._admitted(subscriber, range(len(requests)))
        return subscriber

    def join(self, requests: Sequence[RowRequest]) -> Subscriber | None:
        """A later call: admitted now if there is room, else when rows finish (the caller holds the guard); None
        when the session has just ended (its last step ran while this call waited), so the call starts a new one.

        Raises:
            DecodingInputError: A malformed row (nothing joins).
        """
        subscriber = Subscriber(requests)
        with self.model_lock:
            if self.session.finished:
                self.closed = True
                return None
            if self.backlog or not self._fits(len(requests)):
                self.session._validate(requests, self.session.max_new_tokens, self.session._stop)
                self.backlog.append(subscriber)
                return subscriber
            indices = self.session.add_rows(requests)
        self._admitted(subscriber, indices)
        return subscriber

    def _fits(self, rows: int) -> bool:
        # A call larger than the slots is admitted alone, when nothing else decodes.
        return self.running == 0 or self.running + rows <= self.slots

    def _admitted(self, subscriber: Subscriber, rows: Sequence[int]) -> None:
        subscriber.admitted(rows)
        self.running += len(rows)
        for row in rows:
            self.subscribers[row] = subscriber

    def _admit_backlog(self) -> None:
        """Calls waiting for room join, in order, while they fit (the driver holds the guard)."""
        while self.backlog and self._fits(len(self.backlog[0].requests)):
            subscriber = self.backlog.popleft()
            if subscriber.done:  # abandoned while waiting
                continue
            with self.model_lock:
                indices = self.session.add_rows(subscriber.requests)
            self._admitted(subscriber, indices)

    def forward(self, steps: Iterator[list[TokenEvent]]) -> list[TokenEvent] | None:
        """One decode step, under the model lock only (calls may queue to join meanwhile); None once it ended."""
        with self.model_lock:
            return next(steps, None)

    def hand_out(self, events: list[TokenEvent] | None) -> bool:
        """Give each call its rows' events, admit waiting calls; False when the session has ended (the caller
        holds the guard)."""
        if events is None:
            self.closed = True
            for waiting in self.backlog:  # not expected: rows are admitted before the last ones end
                waiting.done = True
                waiting.queue.put(RuntimeError("the shared decode session ended before this call was admitted"))
            return False
        mine: dict[int, tuple[Subscriber, list[TokenEvent]]] = {}
        for event in events:
            subscriber = self.subscribers[event.row]
            if not subscriber.done:
                local = dataclasses.replace(event, row=subscriber.local[event.row])
                mine.setdefault(id(subscriber), (subscriber, []))[1].append(local)
        for subscriber, its_events in mine.values():
            subscriber.queue.put(its_events)
            finished = sum(e.finish_reason is not None for e in its_events)
            subscriber.open -= finished
            self.running -= finished
            if subscriber.open == 0:
                subscriber.results = [self.session.result(row) for row in subscriber.rows]
                subscriber.done = True
                subscriber.queue.put(_DONE)
        self._admit_backlog()
        return True

    def fail(self, error: BaseException) -> None:
        """The session broke: every call still listening (or waiting for room) gets the error."""
        self.closed = True
        for subscriber in [*{id(s): s for s in self.subscribers.values()}.values(), *self.backlog]:
            if not subscriber.done:
                subscriber.done = True
                subscriber.queue.put(error)

    def cancel(self, subscriber: Subscriber) -> None:
        """A call stopped listening: its rows stop decoding (the others go on)."""
        with self.guard, self.model_lock:
            if subscriber.done:
                return
            subscriber.done = True
            for row in subscriber.rows:
                self.session.cancel(row)
            self.running -= subscriber.open if subscriber.rows else 0


def listen(subscriber: Subscriber, shared: SharedSession, cancel: threading.Event | None) -> Iterator[Any]:
    """A call's events, step by step, until its rows end; an abandoned iterator cancels its rows."""
    try:
        while True:
            item = subscriber.queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if cancel is not None and cancel.is_set():
                return
    finally:
        if not subscriber.done:
            shared.cancel(subscriber)
