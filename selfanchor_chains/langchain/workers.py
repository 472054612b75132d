"""The runtime's worker threads (the shared session's driver, the async bridge's decoders), stopped and joined
before the interpreter finalises.

Why: the workers are daemon threads (a consumer that walks away must never keep the process alive), and a daemon
thread that is still inside PyTorch when the interpreter finalises is killed on its next attempt to take the GIL
with ``pthread_exit``. If that attempt comes from C++ (a tensor freed as a session's generator ends: the tensor's
destructor takes the GIL to drop its Python object), the forced unwind crosses a ``noexcept`` frame and the C++
runtime aborts the process: "terminate called without an active exception", exit code 134, after the script's
work was done. The common case was ``llm.batch()``: the caller gets its results on the last step's events, and
the driver thread frees the finished session's KV cache a moment later, while the main thread exits.

``atexit`` callbacks run after the non-daemon threads are joined and before finalisation, while daemon threads
still run normally: the hook there tells every live worker to stop after its current step and waits for it.

The caller's own threads are the caller's: a daemon thread of the application still inside a decode call when the
interpreter exits can abort it the same way (as any PyTorch code in a daemon thread can); join such threads, or
let their calls finish, before exiting.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable

__all__ = ["live_workers", "start_worker", "stop_workers"]

# Worker → its stop event. Weak keys: a finished thread drops out once nothing else holds it.
_LIVE: weakref.WeakKeyDictionary[threading.Thread, threading.Event] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()

EXIT_WAIT_S = 60.0
"""How long the exit hook waits for all workers together: one decode step of a large model on a slow CPU fits."""


def start_worker(target: Callable[[], None], *, name: str, stop: threading.Event) -> threading.Thread:
    """Start ``target`` in a daemon thread that the exit hook stops (by setting ``stop``) and joins.

    ``target`` must check ``stop`` between decode steps and return soon after it is set.
    """
    thread = threading.Thread(target=target, name=name, daemon=True)
    with _GUARD:
        _LIVE[thread] = stop
    thread.start()
    return thread


def live_workers() -> list[threading.Thread]:
    """The workers still running."""
    with _GUARD:
        return [t for t in _LIVE if t.is_alive()]


def stop_workers(timeout: float = EXIT_WAIT_S) -> list[threading.Thread]:
    """Tell every live worker to stop after its current step and wait for them (at most ``timeout`` seconds in
    all); returns the workers still alive after the wait (none, unless a step outlasted it)."""
    with _GUARD:
        workers = [(t, stop) for t, stop in _LIVE.items() if t.is_alive()]
    for _, stop in workers:
        stop.set()
    deadline = time.monotonic() + timeout
    for thread, _ in workers:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t, _ in workers if t.is_alive()]


atexit.register(stop_workers)
