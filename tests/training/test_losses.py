"""Loss math, SFT masking, and each objective driving a tiny model to (near) its minimum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gramr2_jax.data.batching import collate
from gramr2_jax.sharding import make_mesh
from gramr2_jax.training import losses
from gramr2_jax.training.losses import Objective
from gramr2_jax.training.optimizer import Constant
from gramr2_jax.training.reward_model import RewardModel
from gramr2_jax.training.train_state import create_train_state
from gramr2_jax.training.train_step import make_train_step
from tests.training import tiny


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_label_smoothing_is_bt_plus_linear_margin_penalty(epsilon):
    logits = jax.random.normal(jax.random.key(0), (32, 2)) * 4
    labels = jax.random.bernoulli(jax.random.key(1), 0.5, (32,)).astype(jnp.int32)
    got = losses.smoothed_binary_ce(logits, labels, epsilon)
    margin = (jnp.take_along_axis(logits, labels[:, None], 1)
              - jnp.take_along_axis(logits, 1 - labels[:, None], 1))[:, 0]
    want = -jax.nn.log_sigmoid(margin) + epsilon / 2 * margin
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Optimum of the smoothed loss at sigma(margin) = 1 - eps/2.
    if epsilon:
        best = jnp.log((1 - epsilon / 2) / (epsilon / 2))
        grad = jax.grad(lambda d: losses.smoothed_binary_ce(jnp.array([[d, 0.0]]),
                                                            jnp.array([0]), epsilon)[0])(best)
        assert abs(float(grad)) < 1e-5


def test_token_nll_matches_optax():
    logits = jax.random.normal(jax.random.key(0), (2, 5, 11))
    targets = jax.random.randint(jax.random.key(1), (2, 5), 0, 11)
    np.testing.assert_allclose(
        losses.token_nll(logits, targets),
        optax.softmax_cross_entropy_with_integer_labels(logits, targets), rtol=1e-6)


class _FixedLogits:
    """A stand-in model whose logits do not depend on the tokens."""

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, tokens_BT, input_mask_BT=None):
        return self.logits


def test_sft_loss_ignores_prompt_tokens():
    rows = tiny.sft_examples(4, seed=3)
    batch = {k: jnp.asarray(v) for k, v in collate([tiny.encode_sft(r) for r in rows], 4,
                                                    (16,)).items()}
    logits = jax.random.normal(jax.random.key(0), batch["tokens"].shape + (tiny.VOCAB,))
    objective = Objective("sft")
    loss, _ = objective(_FixedLogits(logits), batch)

    # Other prompt tokens (same lengths): same targets, same loss.
    prompt = batch["input_mask"] & ~batch["loss_mask"]
    changed = {**batch, "tokens": jnp.where(prompt, (batch["tokens"] + 7) % tiny.VOCAB,
                                            batch["tokens"])}
    np.testing.assert_array_equal(changed["loss_mask"], batch["loss_mask"])
    assert float(objective(_FixedLogits(logits), changed)[0]) == float(loss)
    # No gradient reaches the positions that predict prompt tokens or padding.
    grad = jax.grad(lambda lg: objective(_FixedLogits(lg), batch)[0])(logits)
    predicts_target = jnp.pad(batch["loss_mask"][:, 1:], ((0, 0), (0, 1)))
    assert float(jnp.abs(grad[~predicts_target]).max()) == 0.0
    assert float(jnp.abs(grad[predicts_target]).min()) > 0.0
    # Changing one target token does change the loss (the test can fail).
    first_target = int(jnp.argmax(batch["loss_mask"][0]))
    tokens = batch["tokens"].at[0, first_target].add(1)
    assert float(objective(_FixedLogits(logits), {**batch, "tokens": tokens})[0]) != float(loss)


@pytest.mark.shared
def test_sft_targets_do_not_depend_on_the_prompt(shared_dir):
    transformers = pytest.importorskip("transformers")
    from gramr2_jax.data.prompts import JudgePromptBuilder
    from gramr2_jax.data.schema import JudgeExample

    d = shared_dir / "tokenizers" / "gpt2"
    tok = transformers.GPT2TokenizerFast(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"))
    builder = JudgePromptBuilder(tok, template="compact")
    short = builder.sft_example(JudgeExample("2+2?", "4", "5", label=0, rationale="A is right."))
    long = builder.sft_example(JudgeExample("What is two plus two, exactly?", "4", "5",
                                            label=0, rationale="A is right."))
    assert len(long.tokens) > len(short.tokens)
    for sft in (short, long):
        n_target = int(sft.loss_mask.sum())
        assert not sft.loss_mask[:-n_target].any() and sft.loss_mask[-n_target:].all()
    np.testing.assert_array_equal(short.tokens[short.loss_mask], long.tokens[long.loss_mask])


def _fit(objective: Objective, model, batch, steps: int, lr: float = 1e-2) -> list[float]:
    mesh = make_mesh((1, 1, 1))
    schedule = Constant(np.float32(lr))
    graphdef, state, shardings = create_train_state(model, optax.adam(schedule), mesh)
    step_fn = make_train_step(graphdef, shardings, mesh, objective=objective,
                              make_tx=optax.adam, schedule=schedule)
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    history = []
    for _ in range(steps):
        state, metrics = step_fn(state, batch)
        history.append(float(metrics["loss"]))
    return history


def test_sft_loss_goes_to_zero():
    batch = collate([tiny.encode_sft(r) for r in tiny.sft_examples(8)], 8, (16,))
    history = _fit(Objective("sft"), tiny.tiny_model(0), batch, 150)
    assert history[0] > 3.0 and history[-1] < 0.05, history[::25]


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_verdict_loss_goes_to_its_minimum(epsilon):
    batch = collate([tiny.encode_sft(r) for r in tiny.sft_examples(8)], 8, (16,))
    objective = Objective("verdict", epsilon, tiny.VERDICT_IDS)
    history = _fit(objective, tiny.tiny_model(0), batch, 100)
    p = 1 - epsilon / 2  # the smoothed loss cannot go below the targets' entropy
    floor = -(p * np.log(p) + (1 - p) * np.log(1 - p)) if epsilon else 0.0
    assert history[0] > 0.5 and history[-1] < floor + 0.02, (floor, history[::20])


def test_bradley_terry_loss_goes_to_zero():
    batch = collate([tiny.encode_bt(r) for r in tiny.bt_examples(8)], 8, (16,))
    model = RewardModel(tiny.tiny_model(0), rngs=nnx.Rngs(1))
    history = _fit(Objective("bt"), model, batch, 100)
    assert history[0] > 0.5 and history[-1] < 0.02, history[::20]
