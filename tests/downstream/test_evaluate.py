"""Benchmark evaluation: generic and real sets, seeded A/B order, metrics, and the CLI."""

import json
import subprocess
import sys

import pytest

from gramr2_jax.data.errors import DataError
from gramr2_jax.downstream import evaluation
from tests.conftest import REPO
from tests.downstream.judge_fixtures import judgment, scripted, shown_responses

STYLES = ["short good", "long good answer", "**long good answer**"]
BAD_STYLES = ["short bad", "long bad answer", "**long bad answer**"]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def generic_file(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}",
             "subset": "alpacaeval-easy" if i % 2 else "mine", "id": i} for i in range(10)]
    rows.append({"prompt": "style", "chosen_variants": STYLES, "rejected_variants": BAD_STYLES,
                 "section": "chat", "subset": "rmb-chat"})
    return write_rows(tmp_path / "pairs.jsonl", rows)


def test_read_generic_rows_and_style_variants(generic_file, tmp_path):
    pairs, report = evaluation.read_generic(generic_file)
    assert report.num_rows == 11 and len(pairs) == 10 + 9
    assert pairs[0] == evaluation.EvalPair("q0", "good 0", "bad 0", "mine", id="0")
    styled = [p for p in pairs if p.style is not None]
    assert {p.style for p in styled} == {(i, j) for i in range(3) for j in range(3)}
    assert all(p.chosen == STYLES[p.style[0]] and p.rejected == BAD_STYLES[p.style[1]]
               for p in styled)

    plain = write_rows(tmp_path / "plain.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert evaluation.read_generic(plain)[0][0].subset == "plain"  # default: the file name
    bad = write_rows(tmp_path / "bad.jsonl", [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen_variants": ["a", "b"], "rejected_variants": BAD_STYLES}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: chosen_variants: expected a list of 3"):
        evaluation.read_generic(bad)
    bad = write_rows(tmp_path / "bad.jsonl", [
        {"prompt": "p", "chosen_variants": STYLES, "rejected_variants": ["a", "", "c"]}])
    with pytest.raises(DataError, match=r":1: rejected_variants\[1\]: expected a non-empty"):
        evaluation.read_generic(bad)


def test_always_a_judge_scores_half(judge, generic_file, monkeypatch):
    # Position-biased: "A" with p(A) = 0.9 whatever it sees. Chosen is shown as A in exactly
    # half of the pairs, and swapping makes every pair a tie broken at p_a = 0.5: all abstain.
    scripted(judge, monkeypatch, lambda *_: [(judgment("A"), 0.9)])
    sets = evaluation.load_sets([str(generic_file)], shared_dir=".")
    unswapped = evaluation.evaluate(judge, sets, swap=False, show_progress=False)
    assert unswapped["pooled"]["total"] == 19
    assert unswapped["pooled"]["correct"] in (9, 10)  # ceil/floor of half of 19
    assert unswapped["position_bias"] is None
    swapped = evaluation.evaluate(judge, sets, swap=True, show_progress=False)
    assert swapped["pooled"]["abstain_rate"] == 1.0 and swapped["pooled"]["accuracy"] == 0.0
    assert swapped["position_bias"]["rate"] == 1.0 and swapped["position_bias"]["compared"] == 19


def test_metrics_of_a_length_biased_judge(judge, generic_file, monkeypatch):
    def respond(prompt, swapped):  # prefers "good"; between styles, the longer response
        first, second = shown_responses(prompt)
        if "style" not in prompt.split("[The Start")[0]:
            return [(judgment("A" if "good" in first else "B"), 0.8 if "good" in first else 0.2)]
        return [(judgment("A" if len(first) > len(second) else "B"),
                 0.7 if len(first) > len(second) else 0.3)]

    scripted(judge, monkeypatch, respond)
    sets = evaluation.load_sets([str(generic_file)], shared_dir=".")
    report = evaluation.evaluate(judge, sets, show_progress=False)
    assert report["subsets"]["mine"]["accuracy"] == 1.0
    # Longer wins: chosen (one character longer than rejected in the same style) loses only
    # when it is plainer (hard, upper triangle), so 6 of the 9 style pairs are right.
    rmb = report["rm_bench"]["domains"]["chat"]
    assert (rmb["hard"], rmb["normal"], rmb["easy"]) == (0.0, 1.0, 1.0)
    assert report["sections"]["chat"] == pytest.approx((1.0 + 6 / 9) / 2)  # alpacaeval + rmb
    assert report["position_bias"]["rate"] == 0.0
    assert report["calibration"]["count"] == 19 and 0.0 <= report["calibration"]["ece"] <= 1.0
    assert report["throughput"]["pairs"] == 19
    table = evaluation.format_table(report)
    assert "mine" in table and "section chat" in table


def test_limit_is_a_seeded_sample(generic_file):
    def ids(seed):
        [s] = evaluation.load_sets([str(generic_file)], shared_dir=".", limit=5, seed=seed)
        return [p.id for p in s.pairs]

    assert len(ids(0)) == 5 and ids(0) == ids(0) and ids(0) != ids(1)
    with pytest.raises(evaluation.SpecError, match="neither a file nor a built-in"):
        evaluation.load_sets(["no_such_set"], shared_dir=".")


@pytest.mark.shared
def test_real_sets_resolve_under_shared_dir(shared_dir):
    sets = evaluation.load_sets(["llmbar_adversarial", "gsm8k", "pandalm"],
                                shared_dir=shared_dir, limit=40)
    adversarial, gsm8k, pandalm = sets
    assert {p.subset for p in adversarial.pairs} <= {
        "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual",
        "llmbar-adver-neighbor"}
    assert all(p.section == "chat-hard" for p in adversarial.pairs)
    assert sum(r.num_kept for r in adversarial.reports) == 92 + 47 + 46 + 134
    assert len(gsm8k.pairs) == 40 and gsm8k.reports[0].num_kept == 2429
    report = pandalm.reports[0]  # ties are dropped and counted, not judged
    assert report.dropped["tie"] > 0 and report.num_kept + sum(report.dropped.values()) == 999
    assert [s.name for s in evaluation.load_sets(["all"], shared_dir=shared_dir, limit=1)] \
        == list(evaluation.BUILTIN_SETS)


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gramr2_jax.evaluate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.shared
def test_cli_report(judge_dir, generic_file, shared_dir, tmp_path):
    out = tmp_path / "report.json"
    proc = run_cli(f"--model={judge_dir}", f"--data={generic_file}", "--data=llmbar_natural",
                   f"--shared_dir={shared_dir}", "--limit=6", f"--output={out}")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    assert list(report["sets"]) == [str(generic_file), "llmbar_natural"]
    assert report["sets"]["llmbar_natural"]["pairs"] == 6
    assert "llmbar-natural" in report["subsets"] and "chat-hard" in report["sections"]
    assert report["settings"]["greedy"] is True and report["throughput"]["pairs"] == 12
    assert "overall (mean of sections)" in proc.stderr


def test_cli_bad_data_exits_2(judge_dir, tmp_path):
    bad = write_rows(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "a"}])
    proc = run_cli(f"--model={judge_dir}", f"--data={bad}")
    assert proc.returncode == 2
    assert "bad.jsonl:1: rejected: identical to chosen" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(f"--model={judge_dir}", "--data=nope")
    assert proc.returncode == 2 and "--data=nope: neither a file" in proc.stderr
