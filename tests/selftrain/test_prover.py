"""Proof selection: the best-scoring proof that concludes with the label, in any batch size."""

import ml_collections
import numpy as np
import pytest

from gramr2_jax.data import judge_format
from gramr2_jax.sampling import Sampler
from gramr2_jax.selftrain import prover


def test_proof_scores_prefer_specific_over_generic_text():
    # Same conditional likelihood; the proof that is less likely without the pair wins.
    scores = prover.proof_scores(np.array([-10.0, -10.0]), np.array([-20.0, -40.0]))
    assert scores[1] > scores[0] and (scores <= 0).all()


@pytest.fixture(scope="module")
def prover_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.downstream.judge_fixtures import make_judge_dir

    return make_judge_dir(tmp_path_factory.mktemp("prover"))


def _config(batch_size):
    return ml_collections.ConfigDict({
        "judge": {"max_prompt_len": 192, "max_new_tokens": 10, "batch_size": batch_size},
        "selftrain": {"temperature": 1.0}})


def test_prove_picks_the_best_scoring_valid_proof_in_any_batch_size(prover_dir, monkeypatch):
    # A random model never writes the answer tags: read every sample as a judgment that
    # concludes with the label of its row, unless its text starts with "x" (then no verdict).
    seen_texts, seen_scores = [], []

    def parse(text):
        seen_texts.append(text)
        verdict = None if text.startswith("x") else parse.label
        return judge_format.Judgment(rationale=text or "-", verdict=verdict, well_formed=True)

    def scores(conditional, unconditional):
        seen_scores.extend(original_scores(conditional, unconditional))
        return original_scores(conditional, unconditional)

    original_scores = prover.proof_scores
    padded_rows = []  # rows of each sampler call, dummies included

    def pad_prompts(self, ids, extra):
        out = original_pad(self, ids, extra)
        padded_rows.append(out[0].shape[0])
        return out

    original_pad = Sampler._pad_prompts
    monkeypatch.setattr(Sampler, "_pad_prompts", pad_prompts)

    rows = [{"id": str(i), "prompt": f"What is {i} plus {i}?", "response_a": f"It is {2 * i}.",
             "response_b": f"It is {i}.", "verdict": "A", "rationale": ""} for i in range(5)]
    rows[4]["verdict"] = "B"  # every candidate concludes "A": row 4 has no proof of its label
    parse.label = "A"
    monkeypatch.setattr(prover.judge_format, "parse_judgment", parse)
    monkeypatch.setattr(prover, "proof_scores", scores)
    results = []
    for batch_size in (64, 2):
        seen_texts.clear()
        seen_scores.clear()
        padded_rows.clear()
        results.append(prover.prove(_config(batch_size), prover_dir, rows, num_candidates=3,
                                    seed=7))
        if batch_size == 64:  # one call: candidates of row p are samples 3p .. 3p+2
            # 5 prompts and 15 candidates run as 8 and 16 rows: the dummies are dropped.
            assert padded_rows == [8, 16] and len(seen_texts) == 15
            for row in results[0][0]:
                p = int(row["id"])
                valid = [(seen_scores[i], seen_texts[i] or "-") for i in range(3 * p, 3 * p + 3)
                         if not seen_texts[i].startswith("x")]
                assert (row["proof_score"], row["rationale"]) == pytest.approx(max(valid))
    (large, dropped_large), (small, dropped_small) = results
    assert dropped_small == dropped_large
    assert [r["id"] for r in small] == [r["id"] for r in large]
    for a, b in zip(small, large):
        assert a["rationale"] == b["rationale"]
        assert a["proof_score"] == pytest.approx(b["proof_score"], rel=1e-5)
        assert a["proof_score"] <= 0
    assert len(small) + dropped_small == len(rows)
    assert dropped_small >= 1 and "4" not in [r["id"] for r in small]


def test_prove_with_coherence_keeps_only_proofs_that_pass_it(prover_dir, monkeypatch):
    monkeypatch.setattr(prover.judge_format, "parse_judgment", lambda text: judge_format.Judgment(
        rationale=text or "-", verdict="A", well_formed=True))
    rows = [{"id": str(i), "prompt": f"What is {i} plus {i}?", "response_a": f"It is {2 * i}.",
             "response_b": f"It is {i}.", "verdict": "A", "rationale": ""} for i in range(4)]
    plain, _ = prover.prove(_config(64), prover_dir, rows, num_candidates=3, seed=7)
    assert len(plain) == 4
    checked = []

    def coherence(row_id, proof, label):  # passes the proofs of even rows only
        checked.append((row_id, label))
        return () if int(row_id) % 2 == 0 else ("incoherent",)

    kept, dropped = prover.prove(_config(64), prover_dir, rows, num_candidates=3, seed=7,
                                 coherence=coherence)
    assert [r["id"] for r in kept] == ["0", "2"] and dropped == 2
    assert sorted(set(checked)) == [(str(i), "A") for i in range(4)]
    # The same candidates as without the rule, so the kept rows keep the same best proof.
    assert [r["rationale"] for r in kept] == [plain[0]["rationale"], plain[2]["rationale"]]


def test_conditional_score_from_sampling_equals_teacher_forced_scoring(prover_dir):
    # prove() takes log π(z | s, l) from the sampler's per-token log-probs instead of
    # scoring each candidate again after its prompt: the same sums, up to float order.
    from gramr2_jax.models import from_pretrained, load_tokenizer
    from gramr2_jax.sampling import Sampler

    tokenizer = load_tokenizer(prover_dir)
    sampler = Sampler(from_pretrained(prover_dir), tokenizer)
    prompts = ["What is 3 plus 4?", "Name a fruit without the letter e, please."]
    out = sampler.generate(prompts, max_new_tokens=12, num_samples=3, seed=5,
                           temperature=1.0, return_logprobs=True)
    conts = [out.tokens[i, :out.lengths[i]].tolist() for i in range(len(out.tokens))]
    teacher_forced = sampler.score([prompts[i] for i in out.prompt_index], conts).total
    np.testing.assert_allclose(out.logprobs.sum(axis=1), teacher_forced, rtol=1e-5, atol=1e-4)

