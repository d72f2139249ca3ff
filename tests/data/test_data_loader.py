"""Loader: determinism, resume, host sharding, padding scheme, bucketing."""

import numpy as np
import pytest

from gramr2_jax.data import batching
from gramr2_jax.data.loader import Loader

BUCKETS = (8, 16, 32, 64)


def _encode(i):
    n = 1 + (i * 7) % 40
    return {"tokens": np.full(n, i + 1, np.int32), "loss_mask": np.arange(n) >= n // 2,
            "labels": i % 2, "ids": i}


def _loader(n=203, encode=_encode, **kw):
    kw = {"batch_size": 4, "seed": 0, "num_epochs": 2, "window_batches": 3, "length_buckets": BUCKETS, **kw}
    return Loader(list(range(n)), encode, **kw)


def _ids(batches):
    return [b["ids"][b["example_mask"]].tolist() for b in batches]


def test_batch_layout_right_padding():
    batch = next(iter(_loader()))
    B, T = batch["tokens"].shape
    assert B == 4 and T in BUCKETS and batch["tokens"].dtype == np.int32
    for row in range(B):
        n = batch["input_mask"][row].sum()
        assert batch["input_mask"][row, :n].all() and not batch["input_mask"][row, n:].any()  # right padding
        assert (batch["tokens"][row, :n] == batch["ids"][row] + 1).all() and (batch["tokens"][row, n:] == 0).all()
        assert batch["loss_mask"][row].sum() == n - n // 2 and not (batch["loss_mask"][row] & ~batch["input_mask"][row]).any()
    assert batch["labels"].tolist() == (batch["ids"] % 2).tolist()


def test_deterministic_and_epochs_differ():
    a, b = _ids(_loader()), _ids(_loader())
    assert a == b
    c = _ids(_loader(seed=1))
    assert a != c
    per_epoch = len(a) // 2
    first, second = sum(a[:per_epoch], []), sum(a[per_epoch:], [])
    assert sorted(first) == sorted(second) == list(range(203)) and first != second


@pytest.mark.parametrize("stop", [0, 1, 5, 17, 52])
def test_resume_gives_identical_remaining_stream(stop):
    loader = _loader()
    it = iter(loader)
    for _ in range(stop):
        next(it)
    state = loader.get_state()
    rest = list(it)
    resumed = _loader()
    resumed.set_state(dict(state))
    again = list(resumed)
    assert len(again) == len(rest)
    for x, y in zip(rest, again):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("n,hosts", [(203, 2), (203, 3), (24, 3), (5, 4)])
def test_host_shards_disjoint_cover_and_same_shapes(n, hosts):
    streams = [list(_loader(n=n, num_epochs=1, process_index=h, process_count=hosts)) for h in range(hosts)]
    assert len({len(s) for s in streams}) == 1  # lockstep: same number of batches
    for step in zip(*streams):
        assert len({b["tokens"].shape for b in step}) == 1  # same shapes on every host
    ids = [i for s in streams for i in sum(_ids(s), [])]
    assert sorted(ids) == list(range(n))  # disjoint and covering


def test_bucketing_limits_padding():
    def pad_fraction(batches):
        return sum((~b["input_mask"]).sum() for b in batches) / sum(b["input_mask"].size for b in batches)
    bucketed = pad_fraction(list(_loader(num_epochs=1, window_batches=16)))
    no_sorting = pad_fraction(list(_loader(num_epochs=1, window_batches=1)))  # 1 batch a window
    assert bucketed < no_sorting


def test_rejected_examples_are_counted():
    loader = Loader(list(range(20)), lambda i: None if i % 5 == 0 else _encode(i), batch_size=4,
                    seed=0, num_epochs=1, length_buckets=BUCKETS)
    ids = sum(_ids(list(loader)), [])
    assert sorted(ids) == [i for i in range(20) if i % 5] and loader.num_rejected == 4


@pytest.mark.parametrize("consumed,num_batches,host", [
    (0, 200, (0, 1)),  # both epochs, then the loader ends
    (0, 7, (0, 1)),  # stops inside the first epoch
    (5, 60, (0, 1)),  # from inside a window: the window's consumed batches are skipped
    (40, 30, (0, 1)),  # from the second epoch
    (3, 200, (1, 3)),  # host 1 of 3: its rows of the first batch of each shape
])
def test_first_batch_of_each_shape_previews_the_stream(consumed, num_batches, host):
    def make():  # rejects some examples, which the preview must skip as the loader does
        return _loader(encode=lambda i: None if i % 11 == 0 else _encode(i),
                       process_index=host[0], process_count=host[1])

    loader = make()
    it = iter(loader)
    for _ in range(consumed):
        next(it)
    state, rejected = loader.get_state(), loader.num_rejected
    previews = list(loader.first_batch_of_each_shape(num_batches))
    assert loader.get_state() == state and loader.num_rejected == rejected  # untouched

    expected = {}  # shape -> the first batch of that shape, in the order they come
    rest = make()
    rest.set_state(dict(state))
    for _, batch in zip(range(num_batches), rest):
        expected.setdefault(batch["tokens"].shape, batch)
    assert len(expected) >= 2  # every case covers more than one shape
    assert len(previews) == len(expected)
    for got, want in zip(previews, expected.values()):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_too_long_example_errors():
    with pytest.raises(ValueError, match="exceeds the largest length bucket 8"):
        next(iter(_loader(length_buckets=(8,))))


@pytest.mark.shared
def test_bt_batch_keys(shared_dir):
    import transformers

    from gramr2_jax.data.prompts import PairSequenceBuilder
    from gramr2_jax.data.schema import LabelledPair

    tok = transformers.AutoTokenizer.from_pretrained(str(shared_dir / "tokenizers" / "qwen2"))
    encode = batching.bt_encoder(PairSequenceBuilder(tok, max_len=64, use_chat_template=False))
    pairs = [LabelledPair(f"question {i}", "good " * i, "bad") for i in range(1, 8)]
    batch = next(iter(Loader(pairs, encode, batch_size=8, seed=0, num_epochs=1, length_buckets=(64,))))
    assert set(batch) == {"chosen_tokens", "chosen_mask", "rejected_tokens", "rejected_mask", "example_mask"}
    assert batch["chosen_tokens"].shape == batch["rejected_tokens"].shape == (8, 64)
    assert batch["example_mask"].sum() == 7
    last = batch["chosen_mask"].sum(1) - 1  # reward is read at the last real token: EOS
    assert (batch["chosen_tokens"][np.arange(8), last][:7] == tok.eos_token_id).all()


@pytest.mark.shared
def test_sft_batches_from_real_llmbar(shared_dir):
    import dataclasses

    import transformers

    from gramr2_jax.data import prompts, sources

    tok = transformers.AutoTokenizer.from_pretrained(str(shared_dir / "tokenizers" / "qwen2"))
    tok.chat_template = None  # the stored fixture template is junk; plain text here
    pairs, _ = sources.read_llmbar(shared_dir / "data/llmbar/LLMBar/Natural/dataset.json")
    pairs = [dataclasses.replace(p, rationale="Response A follows the instruction.") for p in pairs]
    examples = prompts.balance_order(pairs, seed=0)
    builder = prompts.JudgePromptBuilder(tok, template="compact", max_prompt_len=448)
    loader = Loader(examples, batching.sft_encoder(builder, max_len=512), batch_size=8, seed=0,
                    num_epochs=1, length_buckets=(128, 256, 512))
    batches = list(loader)
    assert sum(b["example_mask"].sum() for b in batches) == len(pairs) == 100
    verdict_ids = np.array(builder.verdict_ids)
    for b in batches:
        rows = np.flatnonzero(b["example_mask"])
        at = b["tokens"][rows, b["verdict_positions"][rows]]
        assert (at == verdict_ids[b["labels"][rows]]).all()
        assert b["loss_mask"][rows, b["verdict_positions"][rows]].all()
        assert not (b["loss_mask"] & ~b["input_mask"]).any()
    assert builder.stats.num_truncated > 0 and builder.stats.num_dropped == 0
