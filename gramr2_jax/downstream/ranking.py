"""List ranking and best-of-n with a pairwise judge.

Every method takes a batched comparator

    compare_fn(prompts, responses_a, responses_b) -> np.ndarray  # p(A ≻ B) per row

and spends as few calls on it as its dependency structure allows: rows of the same step are
sent together, across all prompts of a batch.

Conventions shared by all methods:
- A pair is always presented with the lower candidate index as A (the comparator is
  order-averaged already, so this only fixes the tie rule below).
- Ties: A wins when p(A ≻ B) >= 0.5, so on a tie the lower index wins; strengths that are
  exactly equal are ordered by index. Results are therefore deterministic.
- A pair is never sent twice for the same prompt (results are cached per prompt).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

CompareFn = Callable[[list[str], list[str], list[str]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Result for one prompt.

    order: candidate indices, best first. For round_robin_bt and repeated linear search it is a
      full ranking; for best_of_n_linear and knockout only order[0] is decided by the method and
      the rest is a placement by elimination (later elimination first, then by the p won in the
      lost comparison, then by index).
    num_comparisons: rows sent to compare_fn for this prompt.
    strengths: Bradley-Terry log-strengths (mean zero), round_robin_bt only.
    """

    order: tuple[int, ...]
    num_comparisons: int
    strengths: np.ndarray | None = dataclasses.field(default=None, compare=False)

    @property
    def best(self) -> int:
        return self.order[0]


class _Comparisons:
    """Sends (prompt, i, j) comparisons to compare_fn in batches, caching and counting them."""

    def __init__(self, compare_fn: CompareFn, prompts: Sequence[str],
                 candidates: Sequence[Sequence[str]]):
        if len(prompts) != len(candidates):
            raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
        for k, cands in enumerate(candidates):
            if not cands:
                raise ValueError(f"prompt {k} has no candidates")
        self._compare_fn = compare_fn
        self._prompts = list(prompts)
        self._candidates = [list(c) for c in candidates]
        self._cache: dict[tuple[int, int, int], float] = {}
        self.counts = [0] * len(prompts)

    def p_first_wins(self, pairs: list[tuple[int, int, int]]) -> list[float]:
        """p(candidate i ≻ candidate j) for each (prompt k, i, j) with i < j; one call at most."""
        new = sorted({pair for pair in pairs if pair not in self._cache})
        if new:
            probs = self._compare_fn(
                [self._prompts[k] for k, _, _ in new],
                [self._candidates[k][i] for k, i, _ in new],
                [self._candidates[k][j] for k, _, j in new],
            )
            probs = np.asarray(probs, dtype=np.float64).reshape(-1)
            if probs.shape != (len(new),) or not np.all((probs >= 0) & (probs <= 1)):
                raise ValueError(
                    f"compare_fn must return {len(new)} probabilities in [0, 1], got {probs!r}")
            for (k, i, j), p in zip(new, probs):
                self._cache[(k, i, j)] = float(p)
                self.counts[k] += 1
        return [self._cache[pair] for pair in pairs]


def _placement(winner: int, losses: list[tuple[int, float, int]]) -> tuple[int, ...]:
    """Winner, then losers by (elimination step desc, p won in the lost comparison desc, index)."""
    losers = sorted(losses, key=lambda loss: (-loss[0], -loss[1], loss[2]))
    return (winner, *[index for _, _, index in losers])


def _linear_pass(comparisons: _Comparisons, pools: dict[int, list[int]]
                 ) -> tuple[dict[int, int], dict[int, list[tuple[int, float, int]]]]:
    """One linear search per prompt k over pools[k] (ascending indices), batched across prompts.

    Step t compares the current champion with pool[t]; the steps of one prompt depend on each
    other, so each step is one call covering every prompt that still has a candidate left.
    Returns the winner per prompt and its losses as (step, p_of_loser, index).
    """
    champions = {k: pool[0] for k, pool in pools.items()}
    losses: dict[int, list[tuple[int, float, int]]] = {k: [] for k in pools}
    for step in range(1, max(len(pool) for pool in pools.values())):
        # The champion always came earlier in the ascending pool, so it is the lower index (A).
        pairs = [(k, champions[k], pool[step]) for k, pool in pools.items() if step < len(pool)]
        for (k, champion, challenger), p in zip(pairs, comparisons.p_first_wins(pairs)):
            if p >= 0.5:
                losses[k].append((step, 1.0 - p, challenger))
            else:
                losses[k].append((step, p, champion))
                champions[k] = challenger
    return champions, losses


def best_of_n_linear(compare_fn: CompareFn, prompts: Sequence[str],
                     candidates: Sequence[Sequence[str]]) -> list[Ranking]:
    """The paper's linear search: keep the best so far, compare it with each next candidate.

    n−1 comparisons per prompt in n−1 sequential steps; each step is one batched call over all
    prompts, so a batch of prompts costs max(n)−1 calls.
    """
    comparisons = _Comparisons(compare_fn, prompts, candidates)
    winners, losses = _linear_pass(
        comparisons, {k: list(range(len(c))) for k, c in enumerate(candidates)})
    return [Ranking(_placement(winners[k], losses[k]), comparisons.counts[k])
            for k in range(len(candidates))]


def linear_full_ranking(compare_fn: CompareFn, prompts: Sequence[str],
                        candidates: Sequence[Sequence[str]]) -> list[Ranking]:
    """Full ranking by repeatedly extracting the best of the remaining candidates [paper].

    At most n(n−1)/2 comparisons (pairs already compared in an earlier pass are reused) in at
    most n(n−1)/2 sequential calls, each batched across prompts.
    """
    comparisons = _Comparisons(compare_fn, prompts, candidates)
    pools = {k: list(range(len(c))) for k, c in enumerate(candidates)}
    orders: dict[int, list[int]] = {k: [] for k in pools}
    while any(len(pool) > 1 for pool in pools.values()):
        open_pools = {k: pool for k, pool in pools.items() if len(pool) > 1}
        winners, _ = _linear_pass(comparisons, open_pools)
        for k, winner in winners.items():
            orders[k].append(winner)
            pools[k].remove(winner)
    return [Ranking((*orders[k], *pools[k]), comparisons.counts[k])
            for k in range(len(candidates))]


def knockout(compare_fn: CompareFn, prompts: Sequence[str],
             candidates: Sequence[Sequence[str]]) -> list[Ranking]:
    """Single-elimination tournament: n−1 comparisons, ceil(log2 n) rounds, one call per round.

    Each round pairs neighbouring survivors in index order; with an odd count the last survivor
    gets a bye into the next round.
    """
    comparisons = _Comparisons(compare_fn, prompts, candidates)
    survivors = [list(range(len(c))) for c in candidates]
    losses: list[list[tuple[int, float, int]]] = [[] for _ in survivors]
    round_index = 0
    while any(len(alive) > 1 for alive in survivors):
        round_index += 1
        pairs = [(k, alive[m], alive[m + 1]) for k, alive in enumerate(survivors)
                 for m in range(0, len(alive) - 1, 2)]
        results = iter(zip(pairs, comparisons.p_first_wins(pairs)))
        for k, alive in enumerate(survivors):
            next_alive = []
            for _ in range(len(alive) // 2):  # consumes this prompt's pairs, built in order
                (_, a, b), p = next(results)
                next_alive.append(a if p >= 0.5 else b)
                losses[k].append((round_index, 1.0 - p, b) if p >= 0.5 else (round_index, p, a))
            survivors[k] = next_alive + alive[len(alive) // 2 * 2:]  # the bye, if any
    return [Ranking(_placement(alive[0], loss), comparisons.counts[k])
            for k, (alive, loss) in enumerate(zip(survivors, losses))]


def fit_bradley_terry(p_win: np.ndarray, *, l2: float = 1e-2, max_iters: int = 100,
                      tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry log-strengths s from soft outcomes, p(i ≻ j) ≈ sigmoid(s_i − s_j).

    Minimises sum_{i<j} CE(p_win[i, j], sigmoid(s_i − s_j)) + l2/2 |s|² with damped Newton
    steps. The L2 term is a Gaussian prior that keeps strengths finite under perfect
    separation; it also centres them (the data gradient sums to zero, so mean(s) = 0).
    Only the upper triangle of p_win is read.
    """
    n = p_win.shape[0]
    rows, cols = np.triu_indices(n, k=1)
    targets = p_win[rows, cols]
    design = np.zeros((len(rows), n))
    design[np.arange(len(rows)), rows] = 1.0
    design[np.arange(len(rows)), cols] = -1.0

    def loss(s: np.ndarray) -> float:
        margin = design @ s
        # CE with soft target, written with logaddexp for stability at large margins.
        data = targets * np.logaddexp(0.0, -margin) + (1 - targets) * np.logaddexp(0.0, margin)
        return float(data.sum() + 0.5 * l2 * s @ s)

    s = np.zeros(n)
    for _ in range(max_iters):
        prob = 1.0 / (1.0 + np.exp(-(design @ s)))
        grad = design.T @ (prob - targets) + l2 * s
        hess = design.T @ (design * (prob * (1 - prob))[:, None]) + l2 * np.eye(n)
        step = np.linalg.solve(hess, grad)
        current, scale = loss(s), 1.0
        # Backtracking keeps every step a descent step (plain Newton can overshoot when the
        # comparator is near 0/1 and the curvature is tiny).
        while loss(s - scale * step) > current and scale > 1e-8:
            scale *= 0.5
        s = s - scale * step
        if np.max(np.abs(scale * step)) < tol:
            break
    return s


def round_robin_bt(compare_fn: CompareFn, prompts: Sequence[str],
                   candidates: Sequence[Sequence[str]], *, l2: float = 1e-2) -> list[Ranking]:
    """All n(n−1)/2 pairs of every prompt in ONE call, then a Bradley-Terry fit per prompt."""
    comparisons = _Comparisons(compare_fn, prompts, candidates)
    pairs = [(k, i, j) for k, cands in enumerate(candidates)
             for i in range(len(cands)) for j in range(i + 1, len(cands))]
    probs = dict(zip(pairs, comparisons.p_first_wins(pairs)))
    rankings = []
    for k, cands in enumerate(candidates):
        n = len(cands)
        p_win = np.full((n, n), 0.5)
        for i in range(n):
            for j in range(i + 1, n):
                p_win[i, j] = probs[(k, i, j)]
                p_win[j, i] = 1.0 - probs[(k, i, j)]
        strengths = fit_bradley_terry(p_win, l2=l2)
        order = np.lexsort((np.arange(n), -strengths))  # last key is primary: strength desc
        rankings.append(Ranking(tuple(int(i) for i in order), comparisons.counts[k], strengths))
    return rankings


METHODS: dict[str, Callable[..., list[Ranking]]] = {
    "linear": best_of_n_linear,
    "linear_full": linear_full_ranking,
    "knockout": knockout,
    "round_robin_bt": round_robin_bt,
}


def rank_batch(compare_fn: CompareFn, prompts: Sequence[str],
               candidates: Sequence[Sequence[str]], *, method: str = "round_robin_bt"
               ) -> list[Ranking]:
    """Ranks the candidates of every prompt with one of METHODS, batching across prompts."""
    if method not in METHODS:
        raise ValueError(f"unknown ranking method {method!r}; choose from {sorted(METHODS)}")
    if not prompts and not candidates:
        return []
    return METHODS[method](compare_fn, prompts, candidates)


def rank(compare_fn: CompareFn, prompt: str, responses: Sequence[str], *,
         method: str = "round_robin_bt") -> Ranking:
    """Ranks the responses to one prompt; see Ranking for what `order` guarantees per method."""
    return rank_batch(compare_fn, [prompt], [responses], method=method)[0]
