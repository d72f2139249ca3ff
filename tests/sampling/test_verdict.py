"""verdict.mean_prob_side (and mean_prob_verdict) against exact decimal arithmetic; the
judge's voting rule (verdict.vote) and its p_a (verdict.mean_prob); verdict.log_odds."""

import decimal
import math
import random

import pytest

from gramr2_jax.sampling.verdict import (
    log_odds,
    mean_prob,
    mean_prob_side,
    mean_prob_verdict,
    vote,
)

INF = math.inf


def _exact_side(xs) -> int:
    """sign(sum_i sigmoid(x_i) - n/2) in 400-digit decimal arithmetic."""
    with decimal.localcontext() as ctx:
        ctx.prec = 400
        total = decimal.Decimal(0)
        for x in xs:
            if math.isinf(x):
                total += decimal.Decimal(1 if x > 0 else 0)
            else:
                total += 1 / (1 + decimal.Decimal(-x).exp())
        total -= decimal.Decimal(len(xs)) / 2
        return (total > 0) - (total < 0)


@pytest.mark.parametrize("xs, side", [
    ([], 0),
    ([0.0], 0),
    ([0.1], 1),
    ([-0.1], -1),
    ([5.0, -5.0], 0),
    ([5.0, -4.9], 1),
    # Names the second response in both orders, 120 and 95 apart: in the original frame
    # the log-odds of A are -120 and +95. Both probabilities round to 0 and 1, their
    # mean to exactly 1/2, yet sigmoid(95) falls short of 1 by more than sigmoid(-120)
    # rises above 0.
    ([-120.0, 95.0], -1),
    ([-95.0, 120.0], 1),
    ([800.0, -801.0], -1),  # beyond float64's exp range
    ([INF, -INF], 0),
    ([INF, -30.0], 1),
    ([50.0, 50.0, -1e-4], 1),
])
def test_hand_built_cases(xs, side):
    assert mean_prob_side(xs) == side == _exact_side(xs)
    assert mean_prob_verdict(xs) == {1: "A", -1: "B", 0: None}[side]


def test_the_rounded_mean_reads_exactly_one_half_where_the_exact_one_does_not():
    probs = [1 / (1 + math.exp(-x)) for x in (-120.0, 95.0)]
    assert sum(probs) / 2 == 0.5
    assert _exact_side([-120.0, 95.0]) == -1


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x > -700 else 0.0


@pytest.mark.parametrize("xs", [[-120.0, 95.0], [-95.0, 120.0], [INF, -INF], [5.0, -5.0],
                                [0.3, -0.1], [-2.0, -1.0, 1.5]])
def test_mean_prob_is_on_the_exact_side(xs):
    probs = [_sigmoid(x) for x in xs]
    rounded = sum(probs) / len(probs)
    p = mean_prob(probs, xs)
    assert (p > 0.5) - (p < 0.5) == _exact_side(xs)
    if (rounded > 0.5) - (rounded < 0.5) == _exact_side(xs):
        assert p == pytest.approx(rounded, abs=1e-15)  # only a mean on the wrong side moves
    else:  # rounded onto 1/2 (0 and 1) or off it (sigmoid(5) + sigmoid(-5) reads 1 + 2^-52)
        assert abs(rounded - 0.5) <= 2**-52
        # 1/2 itself, or the double next to it on the exact side
        assert p == {1: 0.5 + 2**-53, -1: 0.5 - 2**-54, 0: 0.5}[_exact_side(xs)]


@pytest.mark.parametrize("verdicts, xs, expected", [
    (["A", "A", "B"], [-9.0, -9.0, -9.0], "A"),  # votes first: p does not overrule them
    (["B", None, None], [], "B"),  # abstains do not vote
    ([None, None], [1.0], None),  # no votes, no verdict
    (["A", "B"], [-120.0, 95.0], "B"),  # a tie: the exact side of the mean p
    (["B", "A", None], [120.0, -95.0, 50.0], "A"),
    (["A", "B"], [5.0, -5.0], None),  # exactly 1/2
    (["A", "B"], (), None),  # ties left undecided
])
def test_vote(verdicts, xs, expected):
    assert vote(verdicts, xs) == expected


def test_random_cases_match_exact_arithmetic():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 6)
        scale = rng.choice([0.5, 5.0, 50.0, 300.0])
        xs = [rng.uniform(-scale, scale) for _ in range(n)]
        if rng.random() < 0.3 and n >= 2:  # an order-swapped mirror, nearly cancelling
            xs[1] = -xs[0] + rng.choice([-1, 1]) * rng.uniform(0, 1e-3) * scale
        assert mean_prob_side(xs) == _exact_side(xs), xs


def test_nan_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        mean_prob_side([1.0, math.nan])


def test_log_odds():
    assert log_odds(0.0) == -INF and log_odds(1.0) == INF and log_odds(0.5) == 0.0
    assert log_odds(0.9) == pytest.approx(math.log(9))
    assert math.isnan(log_odds(math.nan))
