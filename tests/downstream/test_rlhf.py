"""GRPO: advantage and loss math by hand, the update's direction, and a smoke loop on a fake
reward; the experiment's config builds."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gramr2_jax import config_lib
from gramr2_jax.downstream import rlhf
from gramr2_jax.models import ModelConfig, Transformer
from gramr2_jax.sampling import Sampler
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from gramr2_jax.selftrain.stage0 import train_tokenizer

    texts = [rlhf.policy_prompt(f"What is {i} + {i + 1}?") + f"The answer is {2 * i + 1}."
             for i in range(60)]
    return train_tokenizer(texts, vocab_size=300, out_dir=tmp_path_factory.mktemp("tok"))


def tiny_policy(tokenizer, seed: int = 0) -> Transformer:
    cfg = ModelConfig(family="llama", vocab_size=len(tokenizer), hidden_size=32, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64,
                      max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Transformer(cfg, rngs=nnx.Rngs(seed))


def test_group_advantages_normalize_within_each_group():
    adv = rlhf.group_advantages(np.array([1.0, 0.0, 0.5, 0.5, 2.0, 4.0]), group_size=2)
    np.testing.assert_allclose(adv, [1, -1, 0, 0, -1, 1], atol=1e-5)
    adv = rlhf.group_advantages(np.array([0.0, 1.0, 2.0]), group_size=3)
    np.testing.assert_allclose(adv, np.array([-1, 0, 1]) / np.std([0, 1, 2]), rtol=1e-5)


def test_kl_k3_is_zero_at_equality_and_matches_formula():
    logp, ref = jnp.array([-1.0, -2.0]), jnp.array([-1.0, -1.5])
    kl = np.asarray(rlhf.kl_k3(logp, ref))
    assert kl[0] == 0.0
    np.testing.assert_allclose(kl[1], np.exp(0.5) - 0.5 - 1.0, rtol=1e-6)
    assert kl[1] > 0


def test_clipped_objective_matches_hand_computation():
    # Two sequences: (adv +1, ratios 1.5 and 0.9) and (adv −2, one token of ratio 0.5, one pad).
    old = jnp.log(jnp.array([[0.2, 0.5], [0.4, 0.3]]))
    new = jnp.log(jnp.array([[0.3, 0.45], [0.2, 0.9]]))
    ref = old
    mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    adv = jnp.array([1.0, -2.0])
    loss, metrics = rlhf.grpo_loss(new, old, ref, mask, adv, clip_eps=0.2, kl_coef=0.1)
    # Seq 1: min(1.5·1, 1.2·1) = 1.2; min(0.9, 0.9) = 0.9 → surrogate mean 1.05.
    # Seq 2: min(0.5·−2, 0.8·−2) = −1.6 → surrogate −1.6 (the pad token does not count).
    kl1 = [np.exp(np.log(0.2 / 0.3)) - np.log(0.2 / 0.3) - 1,
           np.exp(np.log(0.5 / 0.45)) - np.log(0.5 / 0.45) - 1]
    kl2 = np.exp(np.log(0.4 / 0.2)) - np.log(0.4 / 0.2) - 1
    expected = np.mean([-1.05 + 0.1 * np.mean(kl1), 1.6 + 0.1 * kl2])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["pg_loss"]), np.mean([-1.05, 1.6]), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["clip_frac"]), np.mean([0.5, 1.0]), rtol=1e-5)


def test_rollout_batch_masks_exactly_the_response_predictions():
    batch = rlhf.rollout_batch([[1, 7, 8], [1, 9]], [np.array([4, 5, 2]), np.array([6, 2]),
                                                     np.array([3, 2]), np.array([2])],
                               group_size=2, bucket=8)
    assert batch["tokens"].shape == (4, 8)
    np.testing.assert_array_equal(batch["tokens"][1], [1, 7, 8, 6, 2, 0, 0, 0])
    # Row 0 = prompt [1,7,8] + [4,5,2]: predictions at t=2,3,4 produce tokens 3..5.
    np.testing.assert_array_equal(batch["mask"][0], [0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(batch["mask"][3], [0, 1, 0, 0, 0, 0, 0])


def test_token_logprobs_match_the_sampler(tokenizer):
    model = tiny_policy(tokenizer)
    sampler = Sampler(model, tokenizer)
    ids = [tokenizer.encode(rlhf.policy_prompt("What is 3 + 4?")),
           tokenizer.encode(rlhf.policy_prompt("What is 12 + 13?"))]
    out = sampler.generate(ids, max_new_tokens=6, num_samples=2, seed=1)
    batch = rlhf.rollout_batch(ids, [t[:n] for t, n in zip(out.tokens, out.lengths)], 2)
    graphdef, params = nnx.split(model)
    logp = np.asarray(rlhf.token_logprobs(graphdef, params, jnp.asarray(batch["tokens"])))
    for r, n in enumerate(out.lengths):
        got = logp[r][batch["mask"][r] > 0]
        np.testing.assert_allclose(got, out.logprobs[r, :n], atol=2e-4)


def test_update_raises_logprob_of_positive_advantage_sample(tokenizer):
    model = tiny_policy(tokenizer)
    graphdef, params = nnx.split(model)
    ids = [tokenizer.encode(rlhf.policy_prompt("What is 3 + 4?"))]
    good, bad = tokenizer.encode("The answer is 7."), tokenizer.encode("The answer is 9.")
    batch = rlhf.rollout_batch(ids, [np.array(good), np.array(bad)], group_size=2)
    tokens = jnp.asarray(batch["tokens"])
    before = rlhf.token_logprobs(graphdef, params, tokens)
    batch = {**{k: jnp.asarray(v) for k, v in batch.items()}, "old_logp": before,
             "ref_logp": before, "advantages": jnp.array([1.0, -1.0])}
    tx = optax.adam(1e-2)
    step = jax.jit(lambda p, o, b: rlhf.grpo_update(graphdef, tx, 0.2, 0.0, p, o, b))
    new_params, _, metrics = step(params, tx.init(params), batch)
    after = rlhf.token_logprobs(graphdef, new_params, tokens)
    seq = lambda lp, r: float((lp[r] * batch["mask"][r]).sum())  # noqa: E731
    assert seq(after, 0) > seq(before, 0)
    assert seq(after, 1) < seq(before, 1)
    assert float(metrics["grad_norm"]) > 0


def digit_share(prompts, responses, references):
    """Fake deterministic reward: share of the response's characters that are digits."""
    del prompts, references
    return np.array([sum(c.isdigit() for c in r) / max(len(r), 1) for r in responses])


def test_grpo_loop_improves_a_fake_reward(tokenizer):
    prompts = [f"What is {i} + {i + 2}?" for i in range(4)]
    cfg = rlhf.GRPOConfig(num_updates=10, prompts_per_update=4, group_size=8,
                          max_new_tokens=8, ppo_epochs=2, learning_rate=1e-2, kl_coef=0.0)
    model = tiny_policy(tokenizer, seed=3)

    def expected_reward(m) -> float:
        out = Sampler(m, tokenizer).generate([rlhf.policy_prompt(p) for p in prompts],
                                             max_new_tokens=8, num_samples=16, seed=123)
        return float(digit_share(None, out.texts, None).mean())

    before = expected_reward(model)
    policy, history = rlhf.train_grpo(model, tokenizer, prompts, digit_share, cfg)
    assert len(history) == 10 and all(np.isfinite(h["loss"]) for h in history)
    after = expected_reward(policy)
    assert after > before + 0.15, (before, after)


def test_rlhf_config_builds():
    config = config_lib.load_config_file(REPO / "configs" / "rlhf.py", "smoke")
    assert config.experiment == "rlhf"
    rlhf.GRPOConfig(**config.rlhf.grpo.to_dict())  # every field is a GRPOConfig field
    assert "logic" not in config.data.categories
