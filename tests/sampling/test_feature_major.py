"""Feature-major decode steps: [out, in] weight copies give the usual logits and tokens."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gramr2_jax.models import Transformer, transformer as transformer_lib
from gramr2_jax.sampling import Sampler, sampler as sampler_lib
from tests.sampling.conftest import PROMPTS, TINY, tiny_model


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("scan", [False, True])
def test_feature_major_forward_equals_the_usual_one(tied, scan):
    model = tiny_model(config=TINY.replace(tie_word_embeddings=tied, scan_layers=scan))
    graphdef, state = nnx.split(model)
    tokens = jnp.asarray([[1, 5, 9], [1, 7, 8], [1, 30, 31]])

    @functools.partial(jax.jit, static_argnums=1)
    def forward(state, feature_major):
        m = nnx.merge(graphdef, state)
        if feature_major:
            m.use_feature_major()
            copies = nnx.state(m, transformer_lib.FeatureMajor)
            params = nnx.state(m, nnx.Param)
            return m(tokens), copies, params
        return m(tokens), None, None

    usual, _, _ = forward(state, False)
    got, copies, params = forward(state, True)
    np.testing.assert_allclose(got, usual, atol=1e-5, rtol=0)
    assert not np.array_equal(got, np.zeros_like(got))
    # 7 copies per layer (q, k, v, o, gate, up, down), the untied head's one more;
    # none of them is a Param, so training and saving never see them.
    copy_leaves = jax.tree.leaves(copies)
    per_layer = 7 if scan else 7 * TINY.num_layers  # scanned: one stacked copy each
    assert len(copy_leaves) == per_layer + (0 if tied else 1)
    assert jax.tree.structure(params) == jax.tree.structure(nnx.state(model, nnx.Param))
    gate = model.layers.mlp.gate_proj.value if scan else model.layers[0].mlp.gate_proj.value
    assert any(leaf.shape == jnp.swapaxes(gate, -1, -2).shape for leaf in copy_leaves)


@pytest.fixture
def calls(monkeypatch):
    """How often a generate call's trace switched its model to feature-major."""
    count = []
    usual = Transformer.use_feature_major
    monkeypatch.setattr(Transformer, "use_feature_major",
                        lambda self: (count.append(1), usual(self))[1])
    return count


@pytest.mark.parametrize("prefix,temperature", [("shared", 1.0), ("unshared", 0.0)])
def test_feature_major_decode_gives_the_usual_tokens(model, calls, prefix, temperature):
    kw = dict(max_new_tokens=24, num_samples=2, prefix=prefix, temperature=temperature,
              seed=3, stop_tokens=(), return_logprobs=True)
    on = Sampler(model, feature_major_rows=8).generate(PROMPTS, **kw)
    assert len(calls) == 1  # 6 rows: the decode loop ran feature-major
    off = Sampler(model, feature_major_rows=0).generate(PROMPTS, **kw)
    assert len(calls) == 1
    np.testing.assert_array_equal(on.tokens, off.tokens)
    np.testing.assert_allclose(on.logprobs, off.logprobs, atol=1e-5, rtol=0)


def test_feature_major_only_from_2_to_the_limit_of_rows(model, calls):
    kw = dict(max_new_tokens=4, stop_tokens=())
    Sampler(model, feature_major_rows=2).generate(PROMPTS, **kw)  # 3 rows
    Sampler(model, feature_major_rows=8).generate(PROMPTS[:1], **kw)  # 1 row
    assert not calls
    Sampler(model, feature_major_rows=3).generate(PROMPTS, **kw)
    assert len(calls) == 1


def test_feature_major_is_on_by_default_on_a_cpu_without_a_mesh(model):
    from gramr2_jax import sharding

    assert jax.default_backend() == "cpu"
    assert Sampler(model).feature_major_rows == sampler_lib.FEATURE_MAJOR_ROWS
    assert Sampler(model, mesh=sharding.make_mesh((1, 1, 1), jax.devices()[:1]),
                   batch_multiple=1).feature_major_rows == 0
    with pytest.raises(ValueError, match="feature_major_rows: must be >= 0"):
        Sampler(model, feature_major_rows=-1)


def test_feature_major_matmuls_read_the_copies():
    """The copies, not the Params, feed the feature-major matmuls: changing them changes
    the logits (tied head: only the layers' copies exist, so the change is in the body)."""
    model = tiny_model(config=TINY.replace(tie_word_embeddings=True))
    graphdef, state = nnx.split(model)
    tokens = jnp.asarray([[1, 5, 9], [1, 7, 8]])

    @functools.partial(jax.jit, static_argnums=1)
    def forward(state, scale):
        m = nnx.merge(graphdef, state)
        m.use_feature_major()
        for _, var in nnx.iter_graph(m):
            if isinstance(var, transformer_lib.FeatureMajor):
                var.value = var.value * scale
        return m(tokens)

    np.testing.assert_allclose(forward(state, 1.0), nnx.jit(lambda m: m(tokens))(model),
                               atol=1e-5, rtol=0)
    assert np.abs(np.asarray(forward(state, 0.5)) - np.asarray(forward(state, 1.0))).max() > 1e-2
