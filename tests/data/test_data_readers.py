"""Malformed-file corpus for the JSONL/JSON readers: exact errors, counted skips."""

import gzip
import json

import pytest

from gramr2_jax.data import errors, sources
from gramr2_jax.data.errors import DataError

GOOD = {"prompt": "p", "chosen": "good", "rejected": "bad"}


def _write(path, lines):
    with open(path, "wb") as f:
        for line in lines:
            f.write(line.encode("utf-8") if isinstance(line, str) else line)
    return path


def _row(**kw):
    return json.dumps({**GOOD, **kw}) + "\n"


# (name, bad line text, field in message, problem substring, skip reason)
BAD_ROWS = [
    ("truncated", '{"prompt": "p", "chosen": "go', "<row>", "invalid JSON", "invalid_json"),
    ("wrong_type", json.dumps({**GOOD, "chosen": 5}), "chosen",
     "expected a non-empty string, got int", "wrong_type"),
    ("missing", json.dumps({"prompt": "p", "chosen": "c"}), "rejected", "missing required field",
     "missing_field"),
    ("empty", json.dumps({**GOOD, "prompt": "   "}), "prompt", "got an empty string", "empty"),
    ("null_required", json.dumps({**GOOD, "rejected": None}), "rejected", "got null", "wrong_type"),
    ("not_object", "[1, 2]", "<row>", "expected a JSON object, got list", "not_an_object"),
    ("bad_optional", json.dumps({**GOOD, "rationale": ["x"]}), "rationale", "got list", "wrong_type"),
    ("bad_id", json.dumps({**GOOD, "id": 1.5}), "id", "expected a string or integer", "wrong_type"),
    ("identical", json.dumps({**GOOD, "rejected": "good"}), "rejected", "identical to chosen",
     "identical"),
]


@pytest.mark.parametrize("name,bad,field,problem,reason", BAD_ROWS, ids=[r[0] for r in BAD_ROWS])
def test_bad_row_strict_and_skip(tmp_path, name, bad, field, problem, reason):
    path = _write(tmp_path / "pairs.jsonl", [_row(id="a"), _row(id="b"), bad + "\n", _row(id="c")])
    with pytest.raises(DataError) as info:
        sources.read_labelled_pairs(path)
    assert str(info.value).startswith(f"{path}:3: {field}: ")
    assert problem in str(info.value)
    rows, report = sources.read_labelled_pairs(path, skip_invalid=True)
    assert [r.id for r in rows] == ["a", "b", "c"]
    assert dict(report.skipped) == {reason: 1}
    assert report.num_rows == 4 and report.num_kept == 3


def test_message_format_example(tmp_path):
    path = _write(tmp_path / "pairs.jsonl", [_row()] * 16 + [_row(chosen=7)])
    with pytest.raises(DataError, match=r"pairs\.jsonl:17: chosen: expected a non-empty string, got int$"):
        sources.read_labelled_pairs(path)


def test_invalid_utf8_reports_line(tmp_path):
    path = _write(tmp_path / "p.jsonl", [_row(id="a").encode() + b'{"prompt": "\xff\xfe"}\n' + _row(id="b").encode()])
    with pytest.raises(DataError, match=r"p\.jsonl:2: <row>: invalid UTF-8 at byte 12"):
        sources.read_labelled_pairs(path)
    rows, report = sources.read_labelled_pairs(path, skip_invalid=True)
    assert [r.id for r in rows] == ["a", "b"] and report.skipped == {"invalid_utf8": 1}


def test_bom_crlf_blank_lines_accepted(tmp_path):
    text = "\ufeff" + _row(id="a").replace("\n", "\r\n") + "\r\n\n" + _row(id="b", chosen="x\r\ny")
    path = _write(tmp_path / "p.jsonl", [text])
    rows, report = sources.read_labelled_pairs(path)
    assert [r.id for r in rows] == ["a", "b"] and rows[1].chosen == "x\r\ny"
    assert not report.skipped


def test_long_line(tmp_path):
    long = _row(id="long", chosen="x" * 5000)
    path = _write(tmp_path / "p.jsonl", [_row(id="a"), long, _row(id="b")])
    with pytest.raises(DataError, match=r"p\.jsonl:2: <row>: line longer than max_line_chars=1000"):
        sources.read_labelled_pairs(path, max_line_chars=1000)
    rows, report = sources.read_labelled_pairs(path, max_line_chars=1000, skip_invalid=True)
    assert [r.id for r in rows] == ["a", "b"] and report.skipped == {"line_too_long": 1}
    assert len(sources.read_labelled_pairs(path)[0]) == 3  # default limit is larger


def test_duplicate_ids_name_both_lines(tmp_path):
    path = _write(tmp_path / "p.jsonl", [_row(id="a"), _row(id=7), _row(id="7"), _row(id="b")])
    with pytest.raises(DataError, match=r"p\.jsonl:3: id: duplicate id '7' \(first seen at line 2\)"):
        sources.read_labelled_pairs(path)
    rows, report = sources.read_labelled_pairs(path, skip_invalid=True)
    assert [r.id for r in rows] == ["a", "7", "b"] and report.skipped == {"duplicate_id": 1}


def test_many_bad_rows_valid_rows_never_lost(tmp_path):
    lines, want = [], []
    for i in range(60):
        if i % 3 == 0:
            lines.append(BAD_ROWS[i % len(BAD_ROWS)][1] + "\n")
        else:
            lines.append(_row(id=f"r{i}", rationale="because", category="c"))
            want.append(f"r{i}")
    rows, report = sources.read_labelled_pairs(_write(tmp_path / "p.jsonl", lines), skip_invalid=True)
    assert [r.id for r in rows] == want
    assert sum(report.skipped.values()) == 20 and len(report.messages) == 20
    assert rows[0].rationale == "because" and rows[0].category == "c"


def test_unlabelled_and_gzip(tmp_path):
    path = tmp_path / "u.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"prompt": "p", "response_a": "a", "response_b": "b", "id": 3}) + "\n")
        f.write(json.dumps({"prompt": "p", "response_a": "a"}) + "\n")
    with pytest.raises(DataError, match=r"u\.jsonl\.gz:2: response_b: missing required field"):
        sources.read_unlabelled_pairs(path)
    rows, _ = sources.read_unlabelled_pairs(path, skip_invalid=True)
    assert rows[0].id == "3" and rows[0].response_b == "b"


def test_llmbar_ties_dropped_bad_labels_raise(tmp_path):
    items = [{"input": "q", "output_1": "x", "output_2": "y", "label": 1},
             {"input": "q", "output_1": "x", "output_2": "y", "label": 0},
             {"input": "q", "output_1": "x", "output_2": "y", "label": 2},
             {"input": "q", "output_1": "x", "output_2": "y", "label": "2"}]
    (tmp_path / "Natural").mkdir()
    path = tmp_path / "Natural" / "dataset.json"
    path.write_text(json.dumps(items))
    with pytest.raises(DataError, match=r"dataset\.json:item 4: label: expected 1 or 2"):
        sources.read_llmbar(path)
    rows, report = sources.read_llmbar(path, skip_invalid=True)
    assert [(r.chosen, r.rejected) for r in rows] == [("x", "y"), ("y", "x")]
    assert report.dropped == {"tie": 1} and report.skipped == {"bad_label": 1}
    assert rows[0].category == "Natural" and rows[0].id == "Natural:1"


def test_json_list_truncated_file(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text('[{"input": "q", "output_1": "x"')
    with pytest.raises(DataError, match=r"dataset\.json:1: <row>: invalid JSON"):
        sources.read_llmbar(path)


def test_pandalm_majority_and_ties(tmp_path):
    base = {"instruction": "do", "input": "", "response1": "r1", "response2": "r2"}
    items = [dict(base, idx=0, annotator1=2, annotator2=2, annotator3=1),
             dict(base, idx=1, annotator1=0, annotator2=0, annotator3=1),
             dict(base, idx=2, annotator1=0, annotator2=1, annotator3=2),
             dict(base, idx=3, input="ctx", annotator1=1, annotator2=1, annotator3=0)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(items))
    rows, report = sources.read_pandalm(path)
    assert [(r.id, r.chosen) for r in rows] == [("pandalm:0", "r2"), ("pandalm:3", "r1")]
    assert rows[1].prompt == "do\n\nctx" and report.dropped == {"tie": 2}


def test_gsm8k_pairs_from_final_answers(tmp_path):
    row = {"question": "q", "ground_truth": "work\nA: 1,000",
           "6b_finetuning": {"is_correct": True, "solution": "s\nA: 1000"},
           "6b_verification": {"is_correct": False, "solution": "s\nA: 999"},
           "175b_finetuning": {"is_correct": False, "solution": "no final line"}}
    lie = dict(row, **{"6b_verification": {"is_correct": True, "solution": "s\nA: 999"}})
    path = _write(tmp_path / "g.jsonl", [json.dumps(row) + "\n", json.dumps(lie) + "\n"])
    with pytest.raises(DataError, match=r"g\.jsonl:2: 6b_verification\.is_correct: True disagrees"):
        sources.read_gsm8k_pairs(path)
    rows, report = sources.read_gsm8k_pairs(path, skip_invalid=True, include_reference=True)
    assert sorted(r.id for r in rows) == sorted([
        "gsm8k:1:6b_finetuning>6b_verification", "gsm8k:1:6b_finetuning>175b_finetuning",
        "gsm8k:1:reference>6b_verification", "gsm8k:1:reference>175b_finetuning"])
    assert report.skipped == {"label_mismatch": 1}


def test_exit_on_data_error(tmp_path, capsys):
    path = _write(tmp_path / "p.jsonl", [_row(chosen=1)])

    @errors.exit_on_data_error()
    def main():
        sources.read_labelled_pairs(path)

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {path}:1: chosen: expected a non-empty string, got int"
    assert "Traceback" not in err


@pytest.mark.shared
def test_real_files(shared_dir):
    data = shared_dir / "data"
    hh, rep = sources.read_hh_rlhf(data / "hh_rlhf_harmless_test" / "test.jsonl.gz")
    assert rep.num_rows == 2312 and rep.dropped["prefix_mismatch"] == 5
    assert len(hh) + sum(rep.dropped.values()) == 2312 and not rep.skipped
    assert all(p.prompt.endswith("\n\nAssistant:") and p.prompt.startswith("Human:") for p in hh)
    gsm, rep = sources.read_gsm8k_pairs(data / "gsm8k" / "example_model_solutions.jsonl")
    assert len(gsm) == 2429 and rep.dropped == {"no_correct_incorrect_pair": 588}  # SOURCE.md: 731 questions
    panda, rep = sources.read_pandalm(data / "pandalm_testset" / "testset-v1.json")
    assert len(panda) + sum(rep.dropped.values()) == 999 and rep.dropped["tie"] > 0
    files = sources.llmbar_files(data / "llmbar")
    assert len(files) == 8
    total = sum(sources.read_llmbar(p)[1].num_rows for p in files.values())
    assert total == 885
