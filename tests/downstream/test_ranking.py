"""Ranking methods against a synthetic judge built from hidden true scores."""

import math

import numpy as np
import pytest

from gramr2_jax.downstream import ranking


class ScoreJudge:
    """compare_fn whose responses are the decimal text of a hidden score.

    sharpness=None: noise-free (p is 1 or 0). Otherwise p = sigmoid(sharpness * (a − b)), and
    with `sample` the outcome is a Bernoulli draw of that p (a noisy judge).
    """

    def __init__(self, sharpness: float | None = None, sample: bool = False, seed: int = 0):
        self.sharpness = sharpness
        self.sample = sample
        self.rng = np.random.default_rng(seed)
        self.calls: list[int] = []  # rows per call

    def __call__(self, prompts, responses_a, responses_b):
        assert len(prompts) == len(responses_a) == len(responses_b)
        self.calls.append(len(prompts))
        diff = np.array([float(a) - float(b) for a, b in zip(responses_a, responses_b)])
        if self.sharpness is None:
            return (diff > 0).astype(float)
        p = 1.0 / (1.0 + np.exp(-self.sharpness * diff))
        return (self.rng.random(len(p)) < p).astype(float) if self.sample else p


def shuffled_scores(n: int, seed: int) -> list[str]:
    return [str(s) for s in np.random.default_rng(seed).permutation(n)]


def true_order(candidates: list[str]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort([-float(c) for c in candidates], kind="stable"))


def spearman(order_a, order_b) -> float:
    n = len(order_a)
    rank_a, rank_b = np.empty(n), np.empty(n)
    rank_a[list(order_a)] = np.arange(n)
    rank_b[list(order_b)] = np.arange(n)
    return 1 - 6 * np.sum((rank_a - rank_b) ** 2) / (n * (n * n - 1))


SIZES = (5, 3, 8, 1, 2)
CANDIDATES = [shuffled_scores(n, seed) for seed, n in enumerate(SIZES)]
PROMPTS = [f"prompt {k}" for k in range(len(SIZES))]


def test_linear_finds_best_with_n_minus_1_comparisons_batched_across_prompts():
    judge = ScoreJudge()
    results = ranking.best_of_n_linear(judge, PROMPTS, CANDIDATES)
    for result, cands in zip(results, CANDIDATES):
        assert result.best == true_order(cands)[0]
        assert result.num_comparisons == len(cands) - 1
        assert sorted(result.order) == list(range(len(cands)))
    # Steps depend on each other within a prompt, so the calls are the longest chain.
    assert len(judge.calls) == max(SIZES) - 1
    assert sum(judge.calls) == sum(n - 1 for n in SIZES)


def test_knockout_uses_n_minus_1_comparisons_in_log_rounds_with_byes():
    judge = ScoreJudge()
    results = ranking.knockout(judge, PROMPTS, CANDIDATES)
    for result, cands in zip(results, CANDIDATES):
        assert result.best == true_order(cands)[0]
        assert result.num_comparisons == len(cands) - 1
        assert sorted(result.order) == list(range(len(cands)))
    assert len(judge.calls) == math.ceil(math.log2(max(SIZES)))


@pytest.mark.parametrize("n", [2, 3, 5, 6, 7, 9])
def test_knockout_byes_keep_every_candidate_in_play(n):
    # The best candidate sits last, where the byes go.
    candidates = [str(s) for s in range(n)]
    result = ranking.knockout(ScoreJudge(), ["p"], [candidates])[0]
    assert result.best == n - 1
    assert result.num_comparisons == n - 1
    # The final's loser is placed second.
    assert result.order[1] != n - 1 and len(set(result.order)) == n


def test_round_robin_is_one_call_and_exact_without_noise():
    judge = ScoreJudge()
    results = ranking.round_robin_bt(judge, PROMPTS, CANDIDATES)
    assert len(judge.calls) == 1
    for result, cands in zip(results, CANDIDATES):
        n = len(cands)
        assert result.order == true_order(cands)
        assert result.num_comparisons == n * (n - 1) // 2
        # Perfect separation: the L2 prior keeps strengths finite and centred.
        assert np.all(np.isfinite(result.strengths))
        assert abs(result.strengths.mean()) < 1e-6


def test_bradley_terry_recovers_true_strengths_from_soft_outcomes():
    scores = np.array([0.0, 0.5, -1.0, 2.0, 1.2])
    p_win = 1.0 / (1.0 + np.exp(-(scores[:, None] - scores[None, :])))
    strengths = ranking.fit_bradley_terry(p_win, l2=1e-6)
    np.testing.assert_allclose(strengths, scores - scores.mean(), atol=1e-3)


def test_round_robin_recovers_order_from_a_noisy_judge():
    # Hard 0/1 outcomes drawn from sigmoid(score gap): single comparisons are often wrong.
    candidates = [[str(s) for s in np.random.default_rng(seed).permutation(12) * 0.5]
                  for seed in range(3)]
    judge = ScoreJudge(sharpness=1.0, sample=True, seed=1)
    results = ranking.round_robin_bt(judge, ["p"] * 3, candidates)
    correlations = [spearman(r.order, true_order(c)) for r, c in zip(results, candidates)]
    # Margins: over judge seeds 0-29 the worst prompt scored 0.77; over 0-49 the worst mean 0.87.
    assert min(correlations) > 0.7 and np.mean(correlations) > 0.8


def test_linear_full_ranking_is_exact_and_reuses_comparisons():
    judge = ScoreJudge()
    results = ranking.linear_full_ranking(judge, PROMPTS, CANDIDATES)
    for result, cands in zip(results, CANDIDATES):
        n = len(cands)
        assert result.order == true_order(cands)
        assert result.num_comparisons <= n * (n - 1) // 2
    # No pair is sent twice: the cache covers pairs compared in earlier passes.
    assert sum(judge.calls) == sum(r.num_comparisons for r in results)


def test_ties_go_to_the_lower_index():
    def always_tied(prompts, responses_a, responses_b):
        return np.full(len(prompts), 0.5)

    responses = [f"r{i}" for i in range(6)]
    assert ranking.rank(always_tied, "p", responses, method="linear").best == 0
    assert ranking.rank(always_tied, "p", responses, method="knockout").best == 0
    assert ranking.rank(always_tied, "p", responses, method="linear_full").order == tuple(range(6))
    assert ranking.rank(always_tied, "p", responses).order == tuple(range(6))


def test_pairs_show_the_lower_index_as_a():
    seen = []

    def recording(prompts, responses_a, responses_b):
        seen.extend(zip(responses_a, responses_b))
        return np.full(len(prompts), 0.7)

    ranking.rank(recording, "p", ["0", "1", "2", "3"], method="round_robin_bt")
    assert all(int(a) < int(b) for a, b in seen)


def test_rank_dispatch_and_edge_cases():
    judge = ScoreJudge()
    single = ranking.rank(judge, "p", ["only"], method="knockout")
    assert single.order == (0,) and single.num_comparisons == 0 and judge.calls == []
    assert ranking.rank_batch(judge, [], [], method="linear") == []
    with pytest.raises(ValueError, match="unknown ranking method"):
        ranking.rank(judge, "p", ["1", "2"], method="bubble")
    with pytest.raises(ValueError, match="no candidates"):
        ranking.rank(judge, "p", [])
    with pytest.raises(ValueError, match="probabilities"):
        ranking.rank(lambda p, a, b: np.full(len(p), 1.5), "p", ["1", "2"])
    with pytest.raises(ValueError, match="probabilities"):
        ranking.rank(lambda p, a, b: np.ones(len(p) + 1), "p", ["1", "2"])
