"""Compiling coming shapes in a background thread: shared by the trainer and the sampler.

A thread goes through the coming work items (batches, prepared sampler calls) and
compiles the program of each new shape (jit's ahead-of-time path: it lowers and
compiles, runs nothing; the call then finds the program in JAX's caches). A call asks
`Compiles.wait` first: it waits while the thread compiles its shape, and otherwise
claims the shape so the thread skips it. So each shape compiles once, and results do
not change.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Hashable, Iterable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DONE = threading.Event()
DONE.set()  # the marker of a shape a call claimed (no thread compiles it)


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
                    if stop is not None and stop.is_set():
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

        thread = threading.Thread(target=run, daemon=True, name=name)
        thread.start()
        return thread
