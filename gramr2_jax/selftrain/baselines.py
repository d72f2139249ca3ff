"""Same-data baselines, trained by the same trainer on the same seed set as stage 1.

  bt       discriminative Bradley-Terry reward model (scalar head on the last token);
           verdict = the response with the higher reward.
  verdict  GRAM-v1: cross-entropy with label smoothing on the verdict token only
           (empty rationale); scored in one forward pass per order, reading the
           two verdict-token logits after "<think>\\n\\n</think>\\n<answer>\\n",
           p(A ≻ B) averaged over both orders as GRAM v1 does.
The seed-only generative judge is stage 1 itself (round 0 of every run).
"""

from __future__ import annotations

import collections
import functools
import pathlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gramr2_jax.data.batching import bt_encoder
from gramr2_jax.data.prompts import PairSequenceBuilder
from gramr2_jax.data.schema import LabelledPair
from gramr2_jax.models import from_pretrained
from gramr2_jax.sampling import verdict as verdict_lib
from gramr2_jax.selftrain import artifacts, evaluation, stages

BASELINES = ("bt", "verdict")


def _forward_last(model, sequences: Sequence[list[int]], read: Callable, batch_size: int = 64):
    """Applies read(model, tokens, mask) to right-padded batches; concatenates the results."""
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda state, tokens, mask: read(nnx.merge(graphdef, state), tokens, mask))
    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        length = max(16, 1 << (max(map(len, chunk)) - 1).bit_length())  # power-of-two buckets
        tokens = np.zeros((batch_size, length), np.int32)
        mask = np.zeros((batch_size, length), bool)
        for row, seq in enumerate(chunk):
            tokens[row, :len(seq)], mask[row, :len(seq)] = seq, True
        out.append(np.asarray(fn(state, tokens, mask))[:len(chunk)])
    return np.concatenate(out)


def _accuracy(rows, verdicts) -> dict[str, float]:
    per_category: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row, verdict in zip(rows, verdicts):
        stats = per_category[row["category"]]
        stats["n"] += 1
        stats["correct"] += verdict == row["gold"]
        stats["abstain"] += verdict is None
    metrics = evaluation.summarize(per_category)
    return {k: v for k, v in metrics.items() if not k.startswith(("position", "faithful"))}


def evaluate_bt(model_dir: pathlib.Path, tokenizer, rows, max_len: int) -> dict[str, float]:
    from gramr2_jax.training.reward_model import RewardModel

    model = RewardModel(from_pretrained(model_dir), rngs=nnx.Rngs(0))
    head = np.load(model_dir / "reward_head.npz")
    model.head.kernel.value, model.head.bias.value = jnp.asarray(head["kernel"]), jnp.asarray(head["bias"])
    builder = PairSequenceBuilder(tokenizer, max_len=max_len)
    seqs = [builder.encode(r["prompt"], r[key]) for r in rows for key in ("response_a", "response_b")]
    rewards = _forward_last(model, seqs, lambda m, t, k: m(t, input_mask_BT=k)).reshape(-1, 2)
    verdicts = [None if a == b else ("A" if a > b else "B") for a, b in rewards]
    return _accuracy(rows, verdicts)


def evaluate_verdict(model_dir: pathlib.Path, builder, rows) -> dict[str, float]:
    model = from_pretrained(model_dir)
    target, verdict_index = builder.encode_target("", "A")
    prefix = target[:verdict_index]  # "<think>\n\n</think>\n<answer>\n"
    ids = jnp.asarray(builder.verdict_ids)

    def read(m, tokens, mask):
        hidden, _ = m.hidden_states(tokens, input_mask_BT=mask)
        last = jnp.sum(mask, axis=1) - 1
        logits = m.logits(jnp.take_along_axis(hidden, last[:, None, None], axis=1))[:, 0]
        return logits[:, ids[0]] - logits[:, ids[1]]  # log-odds of the first response

    seqs = []
    for r in rows:
        seqs.append(builder.encode_prompt(r["prompt"], r["response_a"], r["response_b"]) + prefix)
        seqs.append(builder.encode_prompt(r["prompt"], r["response_b"], r["response_a"]) + prefix)
    log_odds_first = _forward_last(model, seqs, read).reshape(-1, 2)
    # The side of 1/2 the order-averaged p(A ≻ B) lies on, decided without rounding.
    return _accuracy(rows, [verdict_lib.mean_prob_verdict([x, -y]) for x, y in log_odds_first])


def _bt_pairs(seed_rows: list[dict[str, Any]]) -> list[LabelledPair]:
    pairs = []
    for r in seed_rows:
        chosen, rejected = ((r["response_a"], r["response_b"]) if r["verdict"] == "A"
                            else (r["response_b"], r["response_a"]))
        pairs.append(LabelledPair(prompt=r["prompt"], chosen=chosen, rejected=rejected))
    return pairs


def run_all(config, workdir: pathlib.Path, base_dir, seed_rows, tokenizer,
            tests) -> dict[str, dict[str, Any]]:
    """Trains and evaluates each baseline when config.run_baselines (resumable, like the stages)."""
    out = {}
    for name in BASELINES if config.run_baselines else ():
        run_dir = workdir / "baselines" / name
        if artifacts.is_done(run_dir):
            out[name] = artifacts.read_json(run_dir / "metrics.json")
            continue
        if name == "bt":
            pair_builder = PairSequenceBuilder(tokenizer, max_len=config.judge.max_len)
            pairs = _bt_pairs(seed_rows)
            model_dir = stages.run_training(
                stages.train_config(config, config.stage1, len(pairs), loss="bt"), base_dir,
                pairs, bt_encoder(pair_builder), run_dir / "train", tokenizer=tokenizer,
                batch_size=config.stage1.batch_size, seed=config.seed, max_len=config.judge.max_len)
            evaluate = functools.partial(evaluate_bt, model_dir, tokenizer,
                                         max_len=config.judge.max_len)
        else:
            train_rows = [dict(r, rationale="") for r in seed_rows]
            model_dir = stages.train_judge(config, config.stage1, base_dir, train_rows,
                                           run_dir / "train", tokenizer, loss="verdict")
            evaluate = functools.partial(evaluate_verdict, model_dir,
                                         stages.judge_builder(config, tokenizer))
        metrics = {"model_dir": str(model_dir)}
        for test_name, test_rows in tests.items():
            metrics.update({f"{test_name}/{k}": v for k, v in evaluate(test_rows).items()})
        out[name] = artifacts.write_json(run_dir / "metrics.json", metrics)
        artifacts.mark_done(run_dir)
    return out
