"""Stage-0 text for a tiny base LM, GRAM-style: a question followed by a pair of responses.

Most texts are the judge's data block (judge_format.DATA_TEMPLATE) for a random
pair in random order; the rest are judgments (rationale and verdict in the judge
format), so the tokenizer and the LM also see the rationale vocabulary and tags.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Sequence

from gramr2_jax.data import judge_format
from gramr2_jax.synthetic import domain
from gramr2_jax.synthetic.rationale import seed_judgment
from gramr2_jax.synthetic.splits import PairKey, pair_key


def _pairs(rng: random.Random, categories: Sequence[str], difficulties: Sequence[int],
           exclude: Collection[PairKey], n: int) -> Iterator[tuple[str, str, str]]:
    """n (prompt, chosen, rejected), categories in turn, none whose pair_key is in exclude.

    Lazy, so callers' own draws from rng interleave in a fixed order."""
    count = 0
    while count < n:
        category = categories[count % len(categories)]
        prompt, chosen, rejected = domain.generate(category, rng.choice(difficulties), rng)
        if pair_key(prompt, chosen, rejected) in exclude:
            continue
        count += 1
        yield prompt, chosen, rejected


def pretraining_texts(
    n: int,
    seed: int | str,
    *,
    categories: Sequence[str] = tuple(domain.CATEGORIES),
    difficulties: Sequence[int] = domain.DIFFICULTIES,
    judgment_share: float = 0.2,
    exclude: Collection[PairKey] = (),
) -> list[str]:
    """n texts; pairs whose pair_key is in *exclude* (pass the test splits' keys) are skipped.

    Judgment texts carry labels, so excluding evaluation pairs keeps them unseen.
    """
    rng = random.Random(f"pretraining:{seed}")
    texts: list[str] = []
    for prompt, chosen, rejected in _pairs(rng, categories, difficulties, exclude, n):
        response_a, response_b = (chosen, rejected) if rng.random() < 0.5 else (rejected, chosen)
        if rng.random() < judgment_share:
            texts.append(seed_judgment(prompt, response_a, response_b))
        else:
            texts.append(
                judge_format.DATA_TEMPLATE.format(
                    prompt=prompt, response_a=response_a, response_b=response_b
                )
            )
    return texts


def knowledge_texts(
    n: int,
    seed: int | str,
    *,
    categories: Sequence[str] = tuple(domain.CATEGORIES),
    difficulties: Sequence[int] = domain.DIFFICULTIES,
    exclude: Collection[PairKey] = (),
) -> list[str]:
    """n texts of domain knowledge with no preference in them, standing in for what a
    pretrained LLM knows before it is taught to judge: the fact behind a question
    ("Fact: 14 + 15 = 29.") and what a single response does ("The response answers 29.").
    Which of two responses is better is never stated."""
    rng = random.Random(f"knowledge:{seed}")
    texts: list[str] = []
    for prompt, chosen, rejected in _pairs(rng, categories, difficulties, exclude, n):
        task = domain.parse_task(prompt)
        response = chosen if rng.random() < 0.5 else rejected
        texts.append(f"[User Question]\n{prompt}\n\nFact: {task.fact()}.\n\n"
                     f"[Response]\n{response}\n\nThe response {task.describe(response)}.")
    return texts
