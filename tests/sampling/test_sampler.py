"""Sampler behaviour: prefix sharing, per-row seeds, recompiles, scoring, verdicts,
batch buckets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gramr2_jax.sampling import Greedy, Sampler, Temperature, TopK, TopP, Verdict
from tests.sampling.conftest import MIXED, PROMPTS, full_forward_logits, full_forward_logprobs

# One plan (k=3, top-k 20 then top-p) shared by the next tests, to compile less.
KW = dict(max_new_tokens=8, temperature=1.0, top_k=20, top_p=0.9, num_samples=3,
          stop_tokens=())


def test_prefix_sharing_gives_the_unshared_tokens(sampler):
    shared = sampler.generate(PROMPTS, prefix="shared", seed=7, **KW)
    for baseline in ("unshared", "repeat"):
        other = sampler.generate(PROMPTS, prefix=baseline, seed=7, **KW)
        np.testing.assert_array_equal(shared.tokens, other.tokens)
        np.testing.assert_allclose(shared.logprobs, other.logprobs, atol=1e-5)
    assert shared.prompt_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert shared.sample_index.tolist() == [0, 1, 2] * 3
    # The k samples of a prompt differ (different keys), and seeds matter.
    assert len({tuple(r) for r in shared.tokens[:3]}) > 1
    other = sampler.generate(PROMPTS, seed=8, **KW)
    assert not np.array_equal(other.tokens, shared.tokens)


def test_row_does_not_depend_on_batch_composition(sampler):
    batch = sampler.generate(PROMPTS, seed=3, **KW)
    alone = sampler.generate([PROMPTS[2]], prompt_ids=[2], seed=3, **KW)
    np.testing.assert_array_equal(alone.tokens, batch.tokens[6:9])


def test_seed_is_any_int_reduced_modulo_2_32(sampler):
    # The pipeline derives labelling seeds as (seed · 1000 + round) · 1000003 + shard,
    # past int32 from config.seed 3 on; 0 <= seed < 2**31 keeps jax.random.key(seed).
    small = sampler.generate(PROMPTS, seed=5, **KW)
    np.testing.assert_array_equal(sampler.generate(PROMPTS, seed=2**32 + 5, **KW).tokens,
                                  small.tokens)
    big = sampler.generate(PROMPTS, seed=3_001_009_003, **KW)
    assert not np.array_equal(big.tokens, small.tokens)
    # The uint32 seed makes the same key as the int seed did (so earlier runs reproduce).
    for seed in (0, 5, 2**31 - 1):
        np.testing.assert_array_equal(jax.random.key_data(jax.random.key(jnp.uint32(seed))),
                                      jax.random.key_data(jax.random.key(seed)))


def test_temperature_and_top_p_are_traced_not_recompiled(sampler):
    hot = sampler.generate(PROMPTS, seed=1, **{**KW, "temperature": 2.0, "top_p": 0.95})
    compiled = sampler._generate._cache_size()
    cold = sampler.generate(PROMPTS, seed=1, **{**KW, "temperature": 0.3, "top_p": 0.5})
    assert sampler._generate._cache_size() == compiled
    assert not np.array_equal(hot.tokens, cold.tokens)  # the new values were used
    sampler.generate(PROMPTS, seed=1, **{**KW, "top_k": 11})
    assert sampler._generate._cache_size() == compiled + 1  # a static size does recompile


# Probabilities 0.4, 0.25, 0.15, 0.1, 0.06, 0.04 on ids 5, 2, 7, 0, 3, 1.
_PROBS = {5: 0.4, 2: 0.25, 7: 0.15, 0: 0.1, 3: 0.06, 1: 0.04}


def _draws(method, n=4000) -> np.ndarray:
    probs = np.zeros(10)
    probs[list(_PROBS)] = list(_PROBS.values())
    logits = jnp.log(jnp.asarray(probs, jnp.float32))
    keys = jax.random.split(jax.random.key(0), n)
    return np.asarray(jax.jit(jax.vmap(method.sample, in_axes=(0, None)))(keys, logits))


@pytest.mark.parametrize("method,support", [
    (Greedy(), {5}),
    (Temperature(1.0), set(_PROBS)),
    (TopK(k=3), {5, 2, 7}),
    (TopP(top_p=0.7), {5, 2, 7}),  # 0.4 + 0.25 < 0.7, so the third is needed
    (TopP(top_p=0.6), {5, 2}),
    (TopP(top_p=0.99, top_k=2), {5, 2}),  # top-k first, then the nucleus
    (TopP(top_p=0.7, temperature=0.01), {5}),
], ids=["greedy", "temperature", "topk3", "topp0.7", "topp0.6", "topk2-topp", "cold-topp"])
def test_methods_sample_exactly_their_support(method, support):
    draws = _draws(method)
    assert set(draws.tolist()) == support
    # Renormalized frequencies inside the support (temperature 1 cases).
    if getattr(method, "temperature", 1.0) == 1.0:
        total = sum(_PROBS[i] for i in support)
        for i in support:
            assert abs((draws == i).mean() - _PROBS[i] / total) < 0.03


def test_score_equals_manual_full_forward(model, sampler):
    continuations = [[4, 8, 15, 16, 23, 42], [9], [60, 61, 62]]
    scored = sampler.score(PROMPTS, continuations)
    seqs = [p + c for p, c in zip(PROMPTS, continuations)]
    for row, logp in enumerate(full_forward_logprobs(model, seqs)):
        n = len(continuations[row])
        assert scored.lengths[row] == n
        np.testing.assert_allclose(scored.token_logprobs[row, :n], logp[-n:], atol=1e-4)
        assert (scored.token_logprobs[row, n:] == 0).all()
        np.testing.assert_allclose(scored.total[row], logp[-n:].sum(), atol=1e-4)


def test_verdict_probs_after_trigger(model, sampler):
    greedy = sampler.generate(PROMPTS, max_new_tokens=8, temperature=0, stop_tokens=())
    row = 1
    trigger = tuple(greedy.tokens[row, 2:4].tolist())  # greedy emits it at steps 2-3
    candidates = (11, 12, 40)
    out = sampler.generate(PROMPTS, max_new_tokens=8, temperature=0, stop_tokens=(),
                           verdict=Verdict(trigger, candidates))
    np.testing.assert_array_equal(out.tokens, greedy.tokens)
    assert out.verdict_found[row]
    # Expected: candidate logits at the position right after the FIRST trigger.
    seq = PROMPTS[row] + greedy.tokens[row].tolist()
    first = next(i for i in range(len(seq) - 1)
                 if tuple(seq[i:i + 2]) == trigger and i + 2 > len(PROMPTS[row]))
    logits = full_forward_logits(model, [seq])[0][first + 1, list(candidates)]
    np.testing.assert_allclose(out.verdict_probs[row], jax.nn.softmax(logits), atol=1e-5)
    np.testing.assert_allclose(out.verdict_logprobs[row], jax.nn.log_softmax(logits), atol=1e-4)
    # Rows without the trigger report NaN.
    for r in range(len(PROMPTS)):
        s = PROMPTS[r] + greedy.tokens[r].tolist()
        seen = any(tuple(s[i:i + 2]) == trigger for i in range(len(PROMPTS[r]) - 1, len(s) - 2))
        assert out.verdict_found[r] == seen
        assert np.isnan(out.verdict_probs[r]).all() != seen
        assert np.isnan(out.verdict_logprobs[r]).all() != seen


def test_verdict_trigger_at_prompt_end(model, sampler):
    prompt = PROMPTS[2]
    out = sampler.generate([prompt], max_new_tokens=2, temperature=0,
                           verdict=Verdict(tuple(prompt[-2:]), (3, 4)))
    logits = full_forward_logits(model, [prompt])[0][-1, [3, 4]]
    np.testing.assert_allclose(out.verdict_probs[0], jax.nn.softmax(logits), atol=1e-5)


def _spy(monkeypatch, sampler, name) -> list:
    """Records (input tokens' shape, raw outputs) of each call of a jitted function."""
    calls, jitted = [], getattr(sampler, name)

    def spy(*args):
        out = jitted(*args)
        calls.append((args[2].shape, out))
        return out

    monkeypatch.setattr(sampler, name, spy)
    return calls


def test_batch_bucket_pads_the_prompt_count_with_dummies_that_change_nothing(model, monkeypatch):
    bucketed, plain = Sampler(model, batch_bucket=8), Sampler(model)
    rows = [bucketed._pad_prompts([[1]] * n, 1)[0].shape[0] for n in (1, 3, 5, 8, 9)]
    assert rows == [1, 4, 8, 8, 9]  # a single call above the bucket runs as it is
    multiple = Sampler(model, batch_bucket=8, batch_multiple=3)
    # 8, then a multiple of 3; one-token dummies keep the length bucket.
    assert multiple._pad_prompts([[1] * 19] * 5, 1)[0].shape == (9, 24)
    calls = _spy(monkeypatch, bucketed, "_generate")
    kw = dict(KW, seed=4, verdict=Verdict(tuple(MIXED[0][-2:]), (3, 4)))
    five = bucketed.generate(MIXED[:5], **kw)
    assert calls[0][0] == (8, 24)
    lengths = np.asarray(calls[0][1]["lengths"])  # all 8 × 3 rows
    assert (lengths[:15] > 0).all() and (lengths[15:] == 0).all()  # dummies: done at once
    assert five.prompt_index.tolist() == np.repeat(np.arange(5), 3).tolist()
    # The rows of 5 prompts without padding, and of the same prompts in a bigger batch.
    bigger = plain.generate(MIXED + PROMPTS, **kw)
    for other in (plain.generate(MIXED[:5], **kw), bigger):
        np.testing.assert_array_equal(five.tokens, other.tokens[:15])
        np.testing.assert_array_equal(five.lengths, other.lengths[:15])
        np.testing.assert_array_equal(five.verdict_found, other.verdict_found[:15])
        # Other rows share the matmuls (packed prefill), so sums run in another order.
        np.testing.assert_allclose(five.logprobs, other.logprobs[:15], atol=5e-5, rtol=0)
        np.testing.assert_allclose(five.verdict_probs, other.verdict_probs[:15], atol=1e-5)
    assert five.verdict_found[:3].all()  # the trigger ends prompt 0
    for n in (6, 7):  # run as 8 rows too: one batch shape
        out = bucketed.generate((MIXED + PROMPTS)[:n], **kw)
        np.testing.assert_array_equal(out.tokens, bigger.tokens[:3 * n])
    assert [shape for shape, _ in calls] == [(8, 24)] * 3


def test_batch_bucket_scores_the_same_log_probs(model, sampler, monkeypatch):
    bucketed = Sampler(model, batch_bucket=8)
    calls = _spy(monkeypatch, bucketed, "_score")
    continuations = [[4, 8, 15, 16, 23, 42], [9], [60, 61, 62]]
    scored = bucketed.score(PROMPTS, continuations)
    expected = sampler.score(PROMPTS, continuations)
    assert calls[0][0][0] == 4  # 3 prompts + a dummy
    np.testing.assert_array_equal(scored.lengths, expected.lengths)
    np.testing.assert_allclose(scored.token_logprobs, expected.token_logprobs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(scored.total, expected.total, atol=1e-5, rtol=0)


def test_batch_bucket_and_prompt_errors(model, sampler):
    for bad in (0, -4):
        with pytest.raises(ValueError, match=f"batch_bucket: must be >= 1 or None, got {bad}"):
            Sampler(model, batch_bucket=bad)
    with pytest.raises(ValueError, match="prompts: expected at least one prompt"):
        sampler.generate([], max_new_tokens=2)
