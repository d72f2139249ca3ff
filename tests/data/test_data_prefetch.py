"""Prefetcher: the source's batches in order, the consumed batches' state, errors in place."""

import numpy as np
import pytest

from gramr2_jax.data.loader import Loader
from gramr2_jax.data.prefetch import Prefetcher


def _encode(x):
    n = 1 + x % 5
    return {"tokens": np.arange(1, n + 1, dtype=np.int32), "loss_mask": np.ones(n, bool)}


def _loader(num_epochs=None):
    return Loader(list(range(30)), _encode, batch_size=4, seed=3, window_batches=2,
                  num_epochs=num_epochs, length_buckets=(8,))


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_same_batches_and_the_state_of_the_consumed_ones():
    reference = _loader()
    wanted, states = [], []
    for _ in range(12):
        wanted.append(next(reference))
        states.append(reference.get_state())

    source = _loader()
    prefetcher = Prefetcher(source, depth=3)
    got = []
    for i in range(7):
        got.append(next(prefetcher))
        assert prefetcher.get_state() == states[i]
    _assert_same(got, wanted[:7])
    # Resuming a fresh loader from the consumed state gives the rest, read ahead or not.
    resumed = Prefetcher(_loader(), depth=2)
    resumed.set_state(prefetcher.get_state())
    _assert_same(_take(resumed, 5), wanted[7:12])
    # close() leaves the source where the consumer stopped, not where reading ahead did.
    prefetcher.close()
    assert source.get_state() == states[6]
    _assert_same([next(source)], [wanted[7]])


def test_set_state_while_reading_ahead_restarts_from_that_state():
    wanted = _take(_loader(), 10)
    prefetcher = Prefetcher(_loader(), depth=2)
    _take(prefetcher, 4)
    reference = _loader()
    _take(reference, 1)
    prefetcher.set_state(reference.get_state())
    _assert_same(_take(prefetcher, 3), wanted[1:4])


def test_the_end_of_a_finite_source_comes_after_its_last_batch():
    wanted = list(_loader(num_epochs=1))
    prefetcher = Prefetcher(_loader(num_epochs=1), depth=4)
    got = list(prefetcher)
    _assert_same(got, wanted)
    with pytest.raises(StopIteration):
        next(prefetcher)


class _Failing:
    """Batches 0, 1, 2, ... then ValueError at `fail_at`."""

    def __init__(self, fail_at):
        self.position, self.fail_at = 0, fail_at

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = state["position"]

    def __next__(self):
        if self.position == self.fail_at:
            raise ValueError(f"bad row at batch {self.position}")
        self.position += 1
        return self.position - 1


def test_an_error_reaches_the_caller_at_its_batch_and_again_after():
    source = _Failing(fail_at=3)
    prefetcher = Prefetcher(source, depth=2)
    assert _take(prefetcher, 3) == [0, 1, 2]
    for _ in range(2):
        with pytest.raises(ValueError, match="bad row at batch 3"):
            next(prefetcher)
    prefetcher.close()
    assert source.get_state() == {"position": 3}


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth: must be >= 1, got 0"):
        Prefetcher(_Failing(1), depth=0)
