"""Cross-call batching of the chat model: the conversations of one ``generate()``/``batch()`` call are published as
a plan (a ``ContextVar`` the per-conversation calls can see); the first call that finds its conversation in the
plan decodes the whole group in one engine session and the others read their rows' events from queues, so each
conversation still reports its own tokens to its own run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import tenacity
import torch

from ..engine.requests import RowRequest, TokenEvent
from ..engine.session import DecodeSession
from ..prompting.inputs import PreparedPrompt
from .runtime import DecodeSettings, SteeredRuntime

# The conversations of the current generate()/batch() call; see the module docstring.
CURRENT_PLAN: ContextVar[BatchPlan | None] = ContextVar("selfanchor_chat_plan", default=None)


@dataclass(frozen=True)
class ChatRequest:
    """One conversation, ready for the engine."""

    prompt: PreparedPrompt
    omega: float
    settings: DecodeSettings
    key: tuple[Any, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        spans = tuple((int(a), int(b)) for a, b in self.prompt.token_spans)
        object.__setattr__(self, "key", (tuple(self.prompt.ids), spans, self.omega, self.settings))

    def row(self) -> RowRequest:
        return RowRequest(self.prompt.ids, self.prompt.token_spans, self.omega)


@dataclass(frozen=True)
class RowEnd:
    """A row ended without a final engine event: ``timeout``, ``cancelled``, or ``failed`` (with the error)."""

    reason: str
    error: BaseException | None = None


RowItem = TokenEvent | RowEnd


def is_final(item: RowItem) -> bool:
    return isinstance(item, RowEnd) or item.finish_reason is not None


def _is_transient(exc: BaseException) -> bool:
    # Locally the only failure worth retrying is running out of accelerator memory while another job holds it.
    return isinstance(exc, torch.OutOfMemoryError)


def raise_failed(error: BaseException) -> None:
    """Re-raise a shared session's failure in a conversation that had already received tokens from it."""
    if isinstance(error, Exception):
        raise error
    # GeneratorExit or an interrupt belongs to whichever consumer it hit, not to this one.
    raise RuntimeError("the batched decoding session stopped before this answer was complete") from error


def _release_memory(_: tenacity.RetryCallState) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(eq=False)
class GroupMember:
    request: ChatRequest
    queue: Any
    claimed: bool = False
    done: bool = False  # its final item has been queued


class DecodeGroup:
    """Conversations decoded together in one engine session; each entry's items go to its own queue."""

    def __init__(
        self,
        runtime: SteeredRuntime,
        requests: Sequence[ChatRequest],
        *,
        deadline: float | None,
        max_retries: int,
        shared: bool,
    ) -> None:
        self.runtime = runtime
        self.rows = [r.row() for r in requests]
        self.settings = requests[0].settings
        self.deadline = deadline
        self.max_retries = max_retries
        self.shared = shared  # part of a plan: a failed session lets each conversation decode alone
        self.entries = [GroupMember(r, self._new_queue()) for r in requests]
        self.distributed = False

    def _new_queue(self) -> Any:
        raise NotImplementedError

    def _enqueue(self, entry: GroupMember, item: RowItem) -> None:
        entry.queue.put_nowait(item)

    def _expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _put(self, index: int, item: RowItem) -> None:
        entry = self.entries[index]
        if entry.done:
            return
        entry.done = is_final(item)
        self._enqueue(entry, item)

    def _end_all(self, item: RowEnd) -> None:
        for index in range(len(self.entries)):
            self._put(index, item)

    def _retry_if(self, exc: BaseException) -> bool:
        # Once any row has produced a token a retry would repeat tokens that consumers already have.
        return _is_transient(exc) and not self.distributed

    def _retry_kwargs(self) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(self.max_retries + 1),
            "wait": tenacity.wait_exponential(multiplier=0.5, max=8),
            "retry": tenacity.retry_if_exception(self._retry_if),
            "before_sleep": _release_memory,
            "reraise": True,
        }


class SyncDecodeGroup(DecodeGroup):
    """The first claimer decodes the session in its own thread; the others block on their queues."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._started = False

    def _new_queue(self) -> Any:
        return queue.Queue()

    def items(self, entry: GroupMember) -> Iterator[RowItem]:
        with self._lock:
            lead, self._started = not self._started, True
        return self._lead(entry) if lead else self._follow(entry)

    def _lead(self, own: GroupMember) -> Iterator[RowItem]:
        try:
            for attempt in tenacity.Retrying(**self._retry_kwargs()):
                with attempt:
                    yield from self._run(own)
        except Exception as exc:
            self._end_all(RowEnd("failed", exc))
            if not self.shared:
                raise
            # Like the followers, the leader's own conversation gets the failure as an item (decode it alone).
            yield from self._drain(own)
        except BaseException as exc:  # the consumer stopped early (GeneratorExit), or an interrupt
            self._end_all(RowEnd("failed", exc))
            raise

    def _run(self, own: GroupMember) -> Iterator[RowItem]:
        sessions: list[DecodeSession] = []
        timed_out = False
        steps = self.runtime.events(self.rows, self.settings, session_out=sessions)
        try:
            for step in steps:
                self.distributed = True
                for event in step:
                    self._put(event.row, event)
                if not timed_out and self._expired():
                    timed_out = True
                    for index, entry in enumerate(self.entries):
                        if not entry.done:
                            sessions[0].cancel(index)
                yield from self._drain(own)
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()  # releases the runtime lock now, not when the generator is collected
        self._end_all(RowEnd("timeout" if timed_out else "cancelled"))
        yield from self._drain(own)

    @staticmethod
    def _drain(entry: GroupMember) -> Iterator[RowItem]:
        while True:
            try:
                yield entry.queue.get_nowait()
            except queue.Empty:
                return

    @staticmethod
    def _follow(entry: GroupMember) -> Iterator[RowItem]:
        while True:
            item = entry.queue.get()
            yield item
            if is_final(item):
                return


class AsyncDecodeGroup(DecodeGroup):
    """The session runs as an event-loop task (decoding itself in the runtime's worker thread)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._task: asyncio.Task[None] | None = None

    def _new_queue(self) -> Any:
        return asyncio.Queue()

    async def items(self, entry: GroupMember) -> AsyncGenerator[RowItem, None]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            while True:
                item = await entry.queue.get()
                yield item
                if is_final(item):
                    return
        finally:
            if not self.shared:
                self.cancel()  # a lone consumer that stops (break, cancellation) stops the decoding

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        try:
            async for attempt in tenacity.AsyncRetrying(**self._retry_kwargs()):
                with attempt:
                    await self._run_once()
        except asyncio.CancelledError:
            self._end_all(RowEnd("cancelled"))
            raise
        except BaseException as exc:  # handed to the consumers, who raise it or decode alone
            self._end_all(RowEnd("failed", exc))

    async def _run_once(self) -> None:
        timed_out = False
        steps = self.runtime.aevents(self.rows, self.settings)
        try:
            async for step in steps:
                self.distributed = True
                for event in step:
                    self._put(event.row, event)
                if self._expired():
                    timed_out = True
                    break
        finally:
            aclose = getattr(steps, "aclose", None)
            if aclose is not None:
                await aclose()  # tells the worker thread to stop after its current step
        self._end_all(RowEnd("timeout" if timed_out else "cancelled"))


class BatchPlan:
    """Every conversation of one generate()/batch() call, in groups of at most ``batch_size``."""

    def __init__(self, runtime: SteeredRuntime, groups: list[DecodeGroup], is_async: bool) -> None:
        self.runtime = runtime
        self.groups = groups
        self.is_async = is_async
        self._lock = threading.Lock()

    def claim(
        self, runtime: SteeredRuntime, key: tuple[Any, ...], is_async: bool
    ) -> tuple[DecodeGroup, GroupMember] | None:
        if runtime is not self.runtime or is_async != self.is_async:
            return None
        with self._lock:
            for group in self.groups:
                for entry in group.entries:
                    if not entry.claimed and entry.request.key == key:
                        entry.claimed = True
                        return group, entry
        return None

    def cancel(self) -> None:
        for group in self.groups:
            if isinstance(group, AsyncDecodeGroup):
                group.cancel()


def _planned_claim(runtime: SteeredRuntime, request: ChatRequest, *, is_async: bool) -> Any:
    """The (group, entry) the current plan holds for this conversation, or None."""
    plan = CURRENT_PLAN.get()
    return plan.claim(runtime, request.key, is_async=is_async) if plan is not None else None


def _falls_back(item: RowItem, produced: bool) -> bool:
    """Whether a shared session's ``item`` says this row must be decoded alone: the session failed before the row
    produced anything. A failure after the row began is raised instead (its output cannot be redone unseen)."""
    if isinstance(item, RowEnd) and item.reason == "failed" and item.error is not None:
        if produced:
            raise_failed(item.error)
        return True
    return False


def planned_or_single_items(
    runtime: SteeredRuntime, request: ChatRequest, single: Callable[[], SyncDecodeGroup]
) -> Iterator[RowItem]:
    """A conversation's items: from its group when the current plan holds it, else from a session of its own."""
    claim = _planned_claim(runtime, request, is_async=False)
    if claim is not None:
        group, entry = claim
        assert isinstance(group, SyncDecodeGroup)
        produced = False
        for item in group.items(entry):
            if _falls_back(item, produced):
                break
            produced = produced or isinstance(item, TokenEvent)
            yield item
        else:
            return
    group = single()
    yield from group.items(group.entries[0])


async def aplanned_or_single_items(
    runtime: SteeredRuntime, request: ChatRequest, single: Callable[[], AsyncDecodeGroup]
) -> AsyncGenerator[RowItem, None]:
    """The async twin of :func:`planned_or_single_items` (its group decodes as an event-loop task)."""
    claim = _planned_claim(runtime, request, is_async=True)
    if claim is not None:
        group, entry = claim
        assert isinstance(group, AsyncDecodeGroup)
        produced = fallback = False
        items = group.items(entry)
        try:
            async for item in items:
                if fallback := _falls_back(item, produced):
                    break
                produced = produced or isinstance(item, TokenEvent)
                yield item
        finally:
            await items.aclose()
        if not fallback:
            return
    alone = single()
    items = alone.items(alone.entries[0])
    try:
        async for item in items:
            if isinstance(item, RowEnd) and item.reason == "failed" and item.error is not None:
                raise item.error
            yield item
    finally:
        await items.aclose()


@contextlib.contextmanager
def published(plan: BatchPlan | None) -> Iterator[None]:
    """Make ``plan`` the current one for the calls made inside (nothing to do for None); when they are done,
    groups that no call claimed are stopped."""
    if plan is None:
        yield
        return
    token = CURRENT_PLAN.set(plan)
    try:
        yield
    finally:
        CURRENT_PLAN.reset(token)
        plan.cancel()
