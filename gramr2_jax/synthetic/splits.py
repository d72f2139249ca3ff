"""Deterministic, non-overlapping splits of synthetic pairs, in the pipeline's three shapes.

- labelled pairs: {id, category, difficulty, prompt, chosen, rejected}
- seed examples: a labelled pair placed in a random A/B order, with the rule rationale
  and the judge target (stage 1)
- unlabelled pairs: {id, category, difficulty, prompt, response_a, response_b, gold}.
  ``gold`` ("A" or "B") is kept ONLY for reporting pseudo-label accuracy: the
  self-training pipeline must never read it to train, label or filter.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence

from gramr2_jax.data import judge_format
from gramr2_jax.synthetic import domain
from gramr2_jax.synthetic.rationale import write_rationale

PairKey = tuple[str, str, str]
# Give up on a split after this many duplicate draws in a row: the category's space is used up.
_MAX_DUPLICATES_IN_A_ROW = 2000


def pair_key(prompt: str, first: str, second: str) -> PairKey:
    """Identity of a pair for de-duplication; the order of the two responses does not matter."""
    return (prompt, *sorted((first, second)))


def labelled_key(pair: Mapping[str, str]) -> PairKey:
    if "chosen" in pair:
        return pair_key(pair["prompt"], pair["chosen"], pair["rejected"])
    return pair_key(pair["prompt"], pair["response_a"], pair["response_b"])


def make_split(
    categories: Sequence[str],
    n: int,
    difficulty: int,
    seed: int | str,
    *,
    exclude: Collection[PairKey] = (),
    name: str = "split",
) -> list[dict]:
    """n distinct labelled pairs, categories in turn, none whose pair_key is in *exclude*."""
    rng = random.Random(f"{name}:{seed}")
    seen = set(exclude)
    pairs: list[dict] = []
    duplicates = 0
    while len(pairs) < n:
        category = categories[len(pairs) % len(categories)]
        prompt, chosen, rejected = domain.generate(category, difficulty, rng)
        key = pair_key(prompt, chosen, rejected)
        if key in seen:
            duplicates += 1
            if duplicates > _MAX_DUPLICATES_IN_A_ROW:
                raise ValueError(
                    f"cannot draw {n} distinct {category} pairs at difficulty {difficulty}"
                )
            continue
        duplicates = 0
        seen.add(key)
        pairs.append({
            "id": f"{name}-{len(pairs):06d}",
            "category": category,
            "difficulty": difficulty,
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
        })
    return pairs


def make_splits(
    sizes: Mapping[str, tuple[int, int]], categories: Sequence[str], seed: int | str
) -> dict[str, list[dict]]:
    """Disjoint splits by name -> (n, difficulty), e.g. seed / unlabelled / test_id / test_ood.

    Splits are drawn in the order given and each excludes every pair drawn before it.
    """
    splits: dict[str, list[dict]] = {}
    taken: set[PairKey] = set()
    for name, (n, difficulty) in sizes.items():
        splits[name] = make_split(categories, n, difficulty, seed, exclude=taken, name=name)
        taken.update(labelled_key(pair) for pair in splits[name])
    return splits


def _ordered(pair: Mapping, rng: random.Random) -> tuple[str, str, str]:
    """(response_a, response_b, gold) with the chosen response on a random side."""
    if rng.random() < 0.5:
        return pair["chosen"], pair["rejected"], "A"
    return pair["rejected"], pair["chosen"], "B"


def to_unlabelled(pairs: Sequence[Mapping], seed: int | str) -> list[dict]:
    """Unlabelled pairs in a seeded random A/B order; ``gold`` is for reporting only."""
    rng = random.Random(f"unlabelled:{seed}")
    rows = []
    for pair in pairs:
        response_a, response_b, gold = _ordered(pair, rng)
        rows.append({
            "id": pair["id"],
            "category": pair["category"],
            "difficulty": pair["difficulty"],
            "prompt": pair["prompt"],
            "response_a": response_a,
            "response_b": response_b,
            "gold": gold,
        })
    return rows


def seed_examples(pairs: Sequence[Mapping], seed: int | str) -> list[dict]:
    """Stage-1 examples: random A/B order, rule rationale, verdict and judge target text."""
    rng = random.Random(f"seed_examples:{seed}")
    rows = []
    for pair in pairs:
        response_a, response_b, _ = _ordered(pair, rng)
        rationale, verdict = write_rationale(pair["prompt"], response_a, response_b)
        rows.append({
            "id": pair["id"],
            "category": pair["category"],
            "difficulty": pair["difficulty"],
            "prompt": pair["prompt"],
            "response_a": response_a,
            "response_b": response_b,
            "rationale": rationale,
            "verdict": verdict,
            "target": judge_format.format_judgment(rationale, verdict),
        })
    return rows
