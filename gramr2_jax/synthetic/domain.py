"""The category registry: generate a pair in a category, or parse any prompt back into its task."""

from __future__ import annotations

import random
from types import ModuleType

from gramr2_jax.synthetic import arithmetic, constraint, logic, safety
from gramr2_jax.synthetic.task import Task

CATEGORIES: dict[str, ModuleType] = {
    "arithmetic": arithmetic,
    "constraint": constraint,
    "safety": safety,
    "logic": logic,
}
DIFFICULTIES = (0, 1, 2)


def parse_task(prompt: str) -> Task:
    """The task behind a prompt, found from its text alone (no category or gold needed)."""
    for module in CATEGORIES.values():
        task = module.parse(prompt)
        if task is not None:
            return task
    raise ValueError(f"not a prompt of the synthetic domain: {prompt!r}")


def generate(category: str, difficulty: int, rng: random.Random) -> tuple[str, str, str]:
    """(prompt, chosen, rejected); the chosen response is good and the rejected one is not."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; known: {sorted(CATEGORIES)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    prompt, chosen, rejected = CATEGORIES[category].generate(rng, difficulty)
    task = parse_task(prompt)
    # A generator bug would silently poison every label downstream, so check each pair.
    if not (task.is_good(chosen) and not task.is_good(rejected)):
        raise AssertionError(f"bad {category} pair: {prompt!r} {chosen!r} {rejected!r}")
    return prompt, chosen, rejected
