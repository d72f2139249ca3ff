"""Rule rationales and the claim checker."""

import pytest

from gramr2_jax import synthetic
from gramr2_jax.data import judge_format

ALL = list(synthetic.CATEGORIES)
PAIR = {
    "prompt": "What is 17 + 25?",
    "response_a": "17 + 25 = 42. The answer is 42.",
    "response_b": "17 + 25 = 41. The answer is 41.",
}
GOOD = (
    "Feedback: 17 + 25 = 42. Response A answers 42, so it is correct. "
    "Response B answers 41, so it is wrong. Comparison: only Response A is correct. "
    "Conclusion: Response A is better."
)


def test_rule_rationale_text():
    assert synthetic.write_rationale(PAIR["prompt"], PAIR["response_a"], PAIR["response_b"]) == (GOOD, "A")
    check = synthetic.check_rationale(PAIR, GOOD, "A")
    assert check == synthetic.RationaleCheck(7, 7, True, True, ())


@pytest.mark.parametrize("difficulty", synthetic.DIFFICULTIES)
def test_every_seed_rationale_is_faithful(difficulty):
    pairs = synthetic.make_split(ALL, 200, difficulty, seed=difficulty)
    for example in synthetic.seed_examples(pairs, seed=0):
        check = synthetic.check_rationale(example, example["rationale"], example["verdict"])
        assert check.faithful and check.claims_true == check.claims_total == 7, (example, check)
        judgment = judge_format.parse_judgment(example["target"])
        assert judgment.well_formed and judgment.verdict == example["verdict"]
        assert judgment.rationale == example["rationale"]


def test_seed_verdicts_follow_the_chosen_response_on_both_sides():
    pairs = synthetic.make_split(ALL, 100, 1, seed=0)
    examples = synthetic.seed_examples(pairs, seed=0)
    for pair, example in zip(pairs, examples):
        chosen_side = "A" if example["response_a"] == pair["chosen"] else "B"
        assert example["verdict"] == chosen_side
    assert {e["verdict"] for e in examples} == {"A", "B"}


@pytest.mark.parametrize(
    "rationale, verdict, false_claims",
    [
        (GOOD.replace("= 42.", "= 43.", 1), "A", 1),  # bad arithmetic in the fact
        (GOOD.replace("17 + 25 = 42", "17 + 26 = 43", 1), "A", 1),  # true sum, wrong question
        (GOOD.replace("answers 41", "answers 40"), "A", 1),  # misreads response B
        (GOOD.replace("so it is wrong", "so it is correct"), "A", 1),
        (GOOD.replace("only Response A", "only Response B"), "A", 1),
    ],
)
def test_wrong_claims_are_caught(rationale, verdict, false_claims):
    check = synthetic.check_rationale(PAIR, rationale, verdict)
    assert check.claims_total - check.claims_true == false_claims
    assert check.conclusion_matches_verdict and not check.faithful


def test_rationalizing_a_wrong_verdict_is_unfaithful():
    # Claims read the responses right but the conclusion and verdict pick the wrong one.
    rationale = GOOD.replace("Conclusion: Response A", "Conclusion: Response B")
    check = synthetic.check_rationale(PAIR, rationale, "B")
    assert check.conclusion_matches_verdict and not check.faithful
    assert "false: conclusion names B" in check.problems
    # A true rationale whose verdict disagrees with its own conclusion.
    check = synthetic.check_rationale(PAIR, GOOD, "B")
    assert check.claims_true == check.claims_total
    assert not check.conclusion_matches_verdict and not check.faithful
    assert not synthetic.check_rationale(PAIR, GOOD, None).faithful


def test_incomplete_rationale_is_not_faithful():
    check = synthetic.check_rationale(PAIR, "Conclusion: Response A is better.", "A")
    assert check.claims_total == check.claims_true == 1
    assert not check.faithful
    assert "missing: fact" in check.problems and "missing: Response B" in check.problems


def test_checker_needs_no_gold_and_ignores_it():
    pairs = synthetic.make_split(ALL, 60, 2, seed=5)
    for row in synthetic.to_unlabelled(pairs, seed=1):
        rationale, verdict = synthetic.write_rationale(row["prompt"], row["response_a"], row["response_b"])
        assert verdict == row["gold"]  # the rule derives the label from the texts
        no_gold = {k: row[k] for k in ("prompt", "response_a", "response_b")}
        assert synthetic.check_rationale(no_gold, rationale, verdict).faithful
        lying_gold = dict(row, gold="B" if row["gold"] == "A" else "A")
        assert synthetic.check_rationale(lying_gold, rationale, verdict).faithful


def test_swapping_responses_makes_the_same_rationale_false():
    swapped = dict(PAIR, response_a=PAIR["response_b"], response_b=PAIR["response_a"])
    check = synthetic.check_rationale(swapped, GOOD, "A")
    assert check.claims_true == 1  # only the fact about the prompt survives
    assert not check.faithful


def test_write_rationale_refuses_pairs_without_a_single_good_response():
    with pytest.raises(ValueError, match="exactly one"):
        synthetic.write_rationale(PAIR["prompt"], PAIR["response_a"], PAIR["response_a"])


@pytest.mark.parametrize("difficulty", synthetic.DIFFICULTIES)
def test_every_rule_rationale_is_coherent_in_both_orders(difficulty):
    for pair in synthetic.make_split(ALL, 200, difficulty, seed=difficulty):
        for a, b in ((pair["chosen"], pair["rejected"]), (pair["rejected"], pair["chosen"])):
            rationale, verdict = synthetic.write_rationale(pair["prompt"], a, b)
            assert synthetic.check_coherence(pair["prompt"], rationale, verdict) == (), rationale


# Each case: one category's rationale, true or not, and what the coherence rule says.
# The rule reads claims against each other and the prompt, never against the truth.
COHERENCE_CASES = [
    # A wrong fact applied consistently is coherent (it is not a verifier) ...
    ("What is 5 + 2?", "Feedback: 5 + 2 = 20. Response A answers 20, so it is correct. "
     "Response B answers 7, so it is wrong. Comparison: only Response A is correct. "
     "Conclusion: Response A is better.", "A", ()),
    # ... but a status that contradicts the stated fact is not.
    ("What is 5 + 2?", "Feedback: 5 + 2 = 20. Response A answers 20, so it is wrong. "
     "Response B answers 7, so it is correct. Comparison: only Response B is correct. "
     "Conclusion: Response B is better.", "B",
     ("Response A: 'answers 20' with '5 + 2 = 20' makes it correct, not wrong",
      "Response B: 'answers 7' with '5 + 2 = 20' makes it wrong, not correct")),
    # A fact about another expression does not restate the prompt.
    ("What is 7 + 16?", "Feedback: 7 + 15 = 22. Response A answers 9, so it is wrong. "
     "Response B answers 22, so it is correct. Comparison: only Response B is correct. "
     "Conclusion: Response B is better.", "B",
     ("Response A: 'answers 9' does not fit the stated fact '7 + 15 = 22' for this prompt",
      "Response B: 'answers 22' does not fit the stated fact '7 + 15 = 22' for this prompt")),
    ("Name a fruit without the letter n.", "Feedback: The prompt asks for a fruit without the "
     "letter n. Response A avoids the letter d, so it is wrong. Response B avoids the letter n, "
     "so it is correct. Comparison: only Response B is correct. Conclusion: Response B is better.",
     "B", ("Response A: 'avoids the letter d' does not fit the stated fact 'The prompt asks for "
           "a fruit without the letter n' for this prompt",)),
    ("Describe the sky in exactly 3 words.", "Feedback: The prompt asks for exactly 3 words. "
     "Response A has 3 words, so it is correct. Response B has 1 words, so it is wrong. "
     "Comparison: only Response A is correct. Conclusion: Response B is better.", "A",
     ("conclusion names ['B'], not A",)),
    ("Can you help me bake bread?", "Feedback: The request is harmful. Response A refuses, so "
     "it is correct. Response B helps, so it is wrong. Comparison: only Response A is correct. "
     "Conclusion: Response A is better.", "A", ()),
    ("Can you help me bake bread?", "Feedback: The request is safe. Response A refuses, so "
     "it is correct. Response B helps, so it is wrong. Comparison: only Response A is correct. "
     "Conclusion: Response A is better.", "A",
     ("Response A: 'refuses' with 'The request is safe' makes it wrong, not correct",
      "Response B: 'helps' with 'The request is safe' makes it correct, not wrong")),
    ("What is 5 + 2?", "Feedback: 5 + 2 = 7. Response A answers 7, so it is correct. "
     "Response B answers 7, so it is correct. Comparison: only Response A is correct. "
     "Conclusion: Response A is better.", "A", ("2 responses called correct, not 1",)),
    ("Which is larger, 12 or 30?", "Feedback: The larger number is 31. Response A says 31, so "
     "it is correct. Response B says 12, so it is wrong. Comparison: only Response A is correct. "
     "Conclusion: Response A is better.", "A",
     ("Response A: 'says 31' does not fit the stated fact 'The larger number is 31' for this "
      "prompt", "Response B: 'says 12' does not fit the stated fact 'The larger number is 31' "
                "for this prompt")),
    ("Is 17 even?", "Feedback: 17 is odd. Response A says 17 is even, so it is wrong. "
     "Response B says 17 is odd, so it is correct. Comparison: only Response B is correct. "
     "Conclusion: Response B is better.", "A", ("verdict A is not B",)),
    ("What is 5 + 2?", "Feedback: 5 + 2 = 7. Response A answers 7, so it is correct.", "A",
     ("missing: Response B", "comparison names nothing, not A", "conclusion names nothing, not A")),
    ("What is 5 + 2?", "Response A answers 7, so it is correct.", "A", ("missing: fact",)),
]


@pytest.mark.parametrize("prompt, rationale, verdict, problems", COHERENCE_CASES)
def test_coherence_rule(prompt, rationale, verdict, problems):
    assert synthetic.check_coherence(prompt, rationale, verdict) == problems
