"""Reads a resumable batch source ahead, in a background thread.

The training loop waits for each step's metrics, so whatever makes the next batch
(tokenizing a window of examples, collating) would otherwise run while the
accelerator, or on a CPU backend the same cores, sits idle. `Prefetcher` makes up
to `depth` batches ahead while the step runs. The batches and their order are
exactly the source's, so training computes the same thing with or without it.

State: `get_state()` is the source's state right after the last batch handed
out (not after the batches read ahead), so a checkpoint resumes at the next
batch the trainer has not seen. `close()` stops the thread and leaves the source
in that state too.

An error raised by the source (StopIteration included) reaches the caller at the
`next()` that would have returned that batch, not earlier.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator


class Prefetcher:
    def __init__(self, source: Any, depth: int = 2):
        if depth < 1:
            raise ValueError(f"depth: must be >= 1, got {depth}")
        self.source, self.depth = source, depth
        self._state = source.get_state()
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None  # raised by the source; raised again

    # --- state (of the batches handed out) ---------------------------------------
    def get_state(self) -> dict[str, Any]:
        return dict(self._state)

    def set_state(self, state: dict[str, Any]) -> None:
        self.close()
        self.source.set_state(state)
        self._state = self.source.get_state()
        self._error = None

    # --- iteration ----------------------------------------------------------------
    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._start()
        kind, value, state = self._queue.get()
        if kind == "error":
            self._join()
            self._error = value
            raise value
        self._state = state
        return value

    def close(self) -> None:
        """Stops reading ahead; the source is left at the state of the last batch handed out."""
        if self._thread is not None:
            self._join()
        self.source.set_state(self._state)

    def _start(self) -> None:
        self._stop.clear()
        self._queue = queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(target=self._fill, args=(self._queue,),
                                        name="gramr2-prefetch", daemon=True)
        self._thread.start()

    def _join(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a put() waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.01)
        self._thread = None

    def _fill(self, out: queue.Queue) -> None:
        while not self._stop.is_set():
            try:
                item = ("batch", next(self.source), self.source.get_state())
            except BaseException as e:  # noqa: BLE001 -- handed to the consumer, in order
                item = ("error", e, None)
            while not self._stop.is_set():
                try:
                    out.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if item[0] == "error":
                return
