"""`python -m gramr2_jax.benchmarks.sampling --quick` runs end to end (no timing checks)."""

import pytest

# ~30 s on a loaded 2-core machine (HF generate + six small compiles): kept out of
# the default run to hold it near 90 s.
pytestmark = [pytest.mark.hf, pytest.mark.slow]
pytest.importorskip("torch")


def test_quick_benchmark_reports_every_measurement(tmp_path):
    from gramr2_jax.benchmarks import sampling

    report = sampling.main(["--quick", "--out", str(tmp_path / "bench.json")])
    assert (tmp_path / "bench.json").exists()
    assert report["matmul_peak_gflops"] == max(report["matmul_peak_gflops_before_after"]) > 0
    assert [row["batch"] for row in report["throughput"]] == [1, 4]
    for row in report["throughput"]:
        assert row["ours_tokens_per_s"] > 0 and row["hf_tokens_per_s"] > 0
        assert row["fraction_of_matmul_peak"] == pytest.approx(
            row["ours_gflops"] / report["matmul_peak_gflops"], abs=2e-3)
        assert set(row) == {"batch", "new_tokens", "ours_tokens_per_s", "hf_tokens_per_s",
                            "speedup_vs_hf", "ours_gflops", "fraction_of_matmul_peak"}
    assert report["prefix_sharing"]["speedup"] > 0
    variants = report["variants_largest_batch"]
    assert set(variants["best_seconds"]) == {
        "default", "one_decode_loop", "unaligned_prompt_slots", "unpacked_prompts",
        "with_logprobs"}
    assert set(variants["slowdown"]) == set(variants["best_seconds"]) - {"default"}
    assert all(v > 0 for v in variants["slowdown"].values())
    assert set(report["feature_major"]) == {"4"}  # batch 1 never runs feature-major
    assert report["feature_major"]["4"]["speedup"] > 0
