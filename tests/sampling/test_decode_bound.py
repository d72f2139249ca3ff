"""benchmarks/decode_bound.py: both sides multiply the same weights in the same chain, and the
`--quick` run reports every field (no timing checks)."""

import numpy as np
import pytest

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("feature_major", [False, True])
def test_the_jax_and_torch_chains_compute_the_same_step(tmp_path, feature_major):
    from flax import nnx

    from gramr2_jax.benchmarks import decode_bound, sampling

    hf_model, model = sampling._make_models(sampling.QUICK["hf"], tmp_path)
    graphdef, params = nnx.split(model)
    x = np.random.default_rng(0).standard_normal((3, model.config.hidden_size), np.float32)
    ours = decode_bound.products_jax_jit(graphdef, params, x, steps=2,
                                         feature_major=feature_major)
    theirs = decode_bound.products_torch(hf_model, torch.from_numpy(x), steps=2)
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-4, atol=1e-4)
    # Not the identity: two steps move x far from where it started.
    assert np.abs(np.asarray(ours) - x).max() > 0.1


@pytest.mark.slow
def test_quick_run_reports_every_measurement(tmp_path):
    from gramr2_jax.benchmarks import decode_bound

    report = decode_bound.main(["--quick", "--out", str(tmp_path / "bound.json")])
    assert (tmp_path / "bound.json").exists()
    assert report["matmul_peak_gflops"] == max(report["matmul_peak_gflops_before_after"]) > 0
    assert [row["batch"] for row in report["rows"]] == [1, 4]
    assert [row["feature_major"] for row in report["rows"]] == [False, True]
    for row in report["rows"]:
        assert set(row) == {"batch", "feature_major", "decode_step_ms", "products_ms",
                            "torch_products_ms", "products_share", "products_speedup_vs_torch",
                            "products_gflops", "torch_products_gflops",
                            "products_fraction_of_peak"}
        # The decode step is a difference of two calls' medians: at these tiny sizes noise
        # can make it anything, so only the relation is checked.
        assert row["products_ms"] > 0 and row["torch_products_ms"] > 0
        assert row["products_share"] == pytest.approx(
            row["products_ms"] / row["decode_step_ms"], rel=5e-2)
        assert row["products_fraction_of_peak"] == pytest.approx(
            row["products_gflops"] / report["matmul_peak_gflops"], abs=2e-3)
