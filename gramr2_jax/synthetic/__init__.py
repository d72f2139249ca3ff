"""A synthetic verifiable preference domain for the CPU demo (SPEC §5).

Four categories (arithmetic, constraint, safety, logic) at difficulties 0-2,
gold labels known, rule-written seed rationales, and a checker that verifies a
rationale's claims from the pair's texts alone.
"""

from gramr2_jax.synthetic.domain import CATEGORIES, DIFFICULTIES, generate, parse_task
from gramr2_jax.synthetic.pretraining import knowledge_texts, pretraining_texts
from gramr2_jax.synthetic.rationale import (
    RationaleCheck,
    check_coherence,
    check_rationale,
    seed_judgment,
    write_rationale,
)
from gramr2_jax.synthetic.splits import (
    labelled_key,
    make_split,
    make_splits,
    pair_key,
    seed_examples,
    to_unlabelled,
)
from gramr2_jax.synthetic.task import Task

__all__ = [
    "CATEGORIES",
    "DIFFICULTIES",
    "RationaleCheck",
    "Task",
    "check_coherence",
    "check_rationale",
    "generate",
    "knowledge_texts",
    "labelled_key",
    "make_split",
    "make_splits",
    "pair_key",
    "parse_task",
    "pretraining_texts",
    "seed_examples",
    "seed_judgment",
    "to_unlabelled",
    "write_rationale",
]
