"""A deterministic, resumable, host-sharded batch loader over an indexable source.

Each epoch is a seeded permutation of the whole source (seed, epoch). The order is
cut into windows of ``window_batches`` GLOBAL batches (batch_size rows per host x
process_count). Inside a window, examples are encoded, sorted by length and cut
into global batches (length bucketing: rows of similar length share a batch), and
the batches are put in a seeded random order. Host h takes rows
[h*batch_size, (h+1)*batch_size) of each global batch, so every host gets the same
number of batches with the same shapes, and the hosts' rows are disjoint and
together cover the epoch. A short last global batch is filled with padding rows
(``example_mask`` False): no example is dropped, except those the encoder rejects
(returns None; counted in ``num_rejected``).

Cost: every host encodes the whole window (to agree on lengths); encode is
tokenization, cheap next to a training step.

State (`get_state`/`set_state`): ``{"epoch", "position", "batch_in_window"}`` where
position is the index in the epoch order where the current window starts.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from gramr2_jax.data.batching import (
    DEFAULT_BUCKETS,
    Example,
    bucket_length,
    collate,
    example_length,
)


class Loader:
    def __init__(
        self,
        source: Sequence[Any],
        encode: Callable[[Any], Example | None],
        *,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        num_epochs: int | None = None,  # None: repeat forever
        process_index: int = 0,
        process_count: int = 1,
        window_batches: int = 16,
        length_buckets: Sequence[int] = DEFAULT_BUCKETS,
        pad_id: int = 0,
    ):
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} not in [0, {process_count})")
        if len(source) == 0:
            raise ValueError("empty source")
        self.source, self.encode = source, encode
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.num_epochs = num_epochs
        self.process_index, self.process_count = process_index, process_count
        self.global_batch = batch_size * process_count
        self.window_size = window_batches * self.global_batch
        self.length_buckets, self.pad_id = tuple(length_buckets), pad_id
        self.num_rejected = 0
        self._state = {"epoch": 0, "position": 0, "batch_in_window": 0}
        self._window: list[list[Example]] | None = None  # global batches of the current window

    # --- state ---------------------------------------------------------------
    def get_state(self) -> dict[str, int]:
        return dict(self._state)

    def set_state(self, state: dict[str, int]) -> None:
        self._state = {k: int(state[k]) for k in ("epoch", "position", "batch_in_window")}
        self._window = None

    # --- iteration -------------------------------------------------------------
    def epoch_order(self, epoch: int) -> np.ndarray:
        n = len(self.source)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def _window_indices(self, epoch: int, position: int) -> list[int]:
        return [int(i) for i in self.epoch_order(epoch)[position: position + self.window_size]]

    def _cut(self, lengths: Sequence[int], epoch: int, position: int) -> list[list[int]]:
        """A window's global batches as positions in its kept examples: a stable sort by
        length, cut into global batches, put in a seeded order."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        batches = [order[i: i + self.global_batch] for i in range(0, len(order), self.global_batch)]
        if self.shuffle:
            shuffled = np.random.default_rng([self.seed, epoch, position]).permutation(len(batches))
            batches = [batches[j] for j in shuffled]
        return batches

    def _plan_window(self, epoch: int, position: int) -> list[list[Example]]:
        examples = []
        for i in self._window_indices(epoch, position):
            example = self.encode(self.source[i])
            if example is None:
                self.num_rejected += 1
            else:
                examples.append(example)
        cut = self._cut([example_length(e) for e in examples], epoch, position)
        return [[examples[j] for j in batch] for batch in cut]

    def first_batch_of_each_shape(self, num_batches: int) -> Iterator[dict[str, np.ndarray]]:
        """For compiling ahead: among the next `num_batches` batches, the first of each
        new shape (length bucket), in the order they will come, as this host's batch.

        Planned from the state at this call, which it does not change; the generator
        encodes every example it plans through (once; lengths are cached) in whichever
        thread iterates it, and does not count rejected examples.
        """
        state = self.get_state()
        return self._first_of_each_shape(state, num_batches)

    def _first_of_each_shape(self, state: dict[str, int],
                             num_batches: int) -> Iterator[dict[str, np.ndarray]]:
        lengths: dict[int, int | None] = {}

        def length(i: int) -> int | None:
            if i not in lengths:
                example = self.encode(self.source[i])
                lengths[i] = None if example is None else example_length(example)
            return lengths[i]

        epoch, position, skip = state["epoch"], state["position"], state["batch_in_window"]
        seen: set[int] = set()
        while num_batches > 0 and (self.num_epochs is None or epoch < self.num_epochs):
            if position >= len(self.source):
                epoch, position, skip = epoch + 1, 0, 0
                continue
            kept = [i for i in self._window_indices(epoch, position) if length(i) is not None]
            for batch in self._cut([length(i) for i in kept], epoch, position)[skip:]:
                if num_batches == 0:
                    return
                num_batches -= 1
                rows = [kept[j] for j in batch]
                bucket = bucket_length(max(lengths[i] for i in rows), self.length_buckets)
                if bucket not in seen:
                    seen.add(bucket)
                    examples = [self.encode(self.source[i]) for i in rows]
                    start = self.process_index * self.batch_size
                    yield self._collate_host(examples[start: start + self.batch_size], examples)
            position, skip = position + self.window_size, 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        while True:
            state = self._state
            if self.num_epochs is not None and state["epoch"] >= self.num_epochs:
                raise StopIteration
            if state["position"] >= len(self.source):
                self._state = {"epoch": state["epoch"] + 1, "position": 0, "batch_in_window": 0}
                continue
            if self._window is None:
                self._window = self._plan_window(state["epoch"], state["position"])
            if state["batch_in_window"] >= len(self._window):
                state["position"] += self.window_size
                state["batch_in_window"] = 0
                self._window = None
                continue
            global_rows = self._window[state["batch_in_window"]]
            state["batch_in_window"] += 1
            start = self.process_index * self.batch_size
            rows = global_rows[start: start + self.batch_size]
            return self._collate_host(rows, global_rows)

    def _collate_host(self, rows: list[Example], global_rows: list[Example]) -> dict[str, np.ndarray]:
        # All hosts pad to the global batch's bucket so their shapes agree.
        bucket = bucket_length(max(example_length(e) for e in global_rows), self.length_buckets)
        if rows:
            return collate(rows, self.batch_size, (bucket,), self.pad_id)
        # This host's slice of a short last batch is empty: padding rows only.
        batch = collate(global_rows[:1], self.batch_size, (bucket,), self.pad_id)
        return {k: np.full_like(v, self.pad_id if k.endswith("tokens") else (False if v.dtype == bool else -1))
                for k, v in batch.items()}
