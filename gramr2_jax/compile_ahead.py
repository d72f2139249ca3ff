"""Compiling coming shapes in a background thread: shared by the trainer and the sampler.

A thread goes through the coming work items (batches, prepared sampler calls) and
compiles the program of each new shape (jit's ahead-of-time path: it lowers and
compiles, runs nothing; the call then finds the program in JAX's caches). A call asks
`Compiles.wait` first: it waits while the thread compiles its shape, and otherwise
claims the shape so the thread skips it. So each shape compiles once, and results do
not change.

The threads are daemons, so they never hold a process open; but a daemon thread inside
XLA's compiler when the interpreter finalizes aborts the process ("terminate called ...",
exit status 134), which would turn a clean exit or a clear error into a crash. So at
exit every running thread is told to stop and is joined: the exit waits for at most the
compile each thread is in.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Callable, Hashable, Iterable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DONE = threading.Event()
DONE.set()  # the marker of a shape a call claimed (no thread compiles it)

_running: set[threading.Thread] = set()  # the compile threads not yet finished
_running_lock = threading.Lock()
_exiting = threading.Event()  # set at interpreter exit: every thread stops
_at_exit_registered = False


def _finish_at_exit() -> None:
    """Stops the compile threads and waits for each one's current compile to end."""
    _exiting.set()
    with _running_lock:
        threads = list(_running)
    for thread in threads:
        thread.join()


def _register_at_exit() -> None:
    # Registered when the first thread starts, after JAX's own exit handlers: atexit
    # runs handlers last-registered first, so the threads finish before JAX tears down.
    global _at_exit_registered
    with _running_lock:
        if not _at_exit_registered:
            atexit.register(_finish_at_exit)
            _at_exit_registered = True


class Compiles:
    """Shape key -> Event set once its program is compiled."""

    def __init__(self):
        self._events: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.wait_s = 0.0  # what the calls waited for the thread's compiles

    def __len__(self) -> int:
        return len(self._events)

    def markers(self) -> list[threading.Event]:
        """The shapes' events in the order they were claimed (DONE: claimed by a call)."""
        with self._lock:
            return list(self._events.values())

    def wait(self, key: Hashable) -> None:
        """For a call: waits while the thread compiles this shape, else claims it."""
        with self._lock:
            ready = self._events.setdefault(key, DONE)
        if not ready.is_set():
            start = time.perf_counter()
            ready.wait()
            self.wait_s += time.perf_counter() - start

    def _claim(self, key: Hashable) -> threading.Event | None:
        with self._lock:
            if key in self._events:
                return None
            ready = self._events[key] = threading.Event()
            return ready

    def start(self, items: Iterable[T], key: Callable[[T], Hashable],
              compile_one: Callable[[T], object], *, name: str, what: str,
              stop: threading.Event | None = None) -> threading.Thread:
        """Starts the (daemon) thread over items, which it reads (so a generator's work,
        e.g. tokenizing, happens there); stop ends it after its current compile. An
        error ends it with one warning line: the calls compile, and raise, as usual.
        `what` names the calls in that line."""
        def run():
            try:
                for item in items:
                    if _exiting.is_set() or (stop is not None and stop.is_set()):
                        return
                    ready = self._claim(key(item))
                    if ready is None:
                        continue
                    try:
                        compile_one(item)
                    finally:
                        ready.set()
            except Exception as e:  # noqa: BLE001 -- see the docstring
                log.warning("compile_ahead stopped (%s: %s); the %s compile what is left",
                            type(e).__name__, e, what)
            finally:
                with _running_lock:
                    _running.discard(threading.current_thread())

        _register_at_exit()
        thread = threading.Thread(target=run, daemon=True, name=name)
        with _running_lock:
            _running.add(thread)
        thread.start()
        return thread
