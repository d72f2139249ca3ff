"""TFDS builder round trips through tfds.data_source, without TensorFlow."""

import json
import subprocess
import sys
import tempfile

import pytest
import tensorflow_datasets as tfds

from gramr2_jax.data import sources
from gramr2_jax.data.errors import DataError
from gramr2_jax.data.tfds_builder import PairsSource, build_pairs_dataset


def _labelled_file(path, n):
    with open(path, "w") as f:
        for i in range(n):
            row = {"prompt": f"p{i} é", "chosen": f"c{i}", "rejected": f"r{i}", "id": f"x{i}"}
            if i % 2:
                row["rationale"] = f"why {i}"
            f.write(json.dumps(row) + "\n")
    return path


def test_labelled_round_trip(tmp_path):
    train = _labelled_file(tmp_path / "train.jsonl", 25)
    test = _labelled_file(tmp_path / "test.jsonl", 4)
    build_pairs_dataset("mine", "labelled", {"train": str(train), "test": str(test)}, tmp_path / "tfds")
    ds = tfds.data_source("gramr2_pairs/mine", data_dir=str(tmp_path / "tfds"))
    assert len(ds["train"]) == 25 and len(ds["test"]) == 4
    back = sorted((PairsSource(ds["train"])[i] for i in range(25)), key=lambda p: int(p.id[1:]))
    want, _ = sources.read_labelled_pairs(train)
    assert back == want  # text, None-optionals and ids all survive


def test_unlabelled_round_trip(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps({"prompt": "p", "response_a": f"a{i}", "response_b": "b"}) + "\n"
                            for i in range(3)))
    build_pairs_dataset("u", "unlabelled", {"test": str(path)}, tmp_path / "tfds")
    src = PairsSource(tfds.data_source("gramr2_pairs/u", data_dir=str(tmp_path / "tfds"))["test"])
    assert sorted(src[i].response_a for i in range(len(src))) == ["a0", "a1", "a2"]
    assert src[0].id is None


def test_building_leaves_no_temporary_directory(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = tmp_path / "in.jsonl"
    _labelled_file(path, 3)
    build_pairs_dataset("clean", "labelled", {"test": str(path)}, tmp_path / "tfds")
    assert list(scratch.iterdir()) == []


def test_builder_is_strict_by_default(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": 1}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: prompt"):
        build_pairs_dataset("bad", "labelled", {"train": str(path)}, tmp_path / "tfds")
    builder = build_pairs_dataset("bad2", "labelled", {"train": str(path)}, tmp_path / "tfds2",
                                  skip_invalid=True)
    assert builder.reports["train"][0].skipped == {"wrong_type": 1}


@pytest.mark.shared
def test_real_data_builds_and_reads_without_tensorflow(shared_dir, tmp_path):
    data = shared_dir / "data"
    dd = tmp_path / "tfds"
    build_pairs_dataset("hh", "hh_rlhf", {"test": str(data / "hh_rlhf_harmless_test/test.jsonl.gz")}, dd)
    build_pairs_dataset("llmbar", "llmbar",
                        {"test": list(sources.llmbar_files(data / "llmbar").values())}, dd)
    build_pairs_dataset("gsm8k", "gsm8k", {"test": str(data / "gsm8k/example_model_solutions.jsonl")}, dd)
    build_pairs_dataset("pandalm", "pandalm", {"test": str(data / "pandalm_testset/testset-v1.json")}, dd)
    # A fresh interpreter that never imports our builder reads it back from files.
    script = (
        "import sys, tensorflow_datasets as tfds\n"
        f"n = [len(tfds.data_source(f'gramr2_pairs/{{c}}', data_dir={str(dd)!r})['test']) "
        "for c in ('hh', 'llmbar', 'gsm8k', 'pandalm')]\n"
        "print(n, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[2303, 883, 2429, 842] False"
