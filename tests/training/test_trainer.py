"""Trainer loop: determinism, reading ahead, compiling ahead, logs, eval hook, non-finite stop,
layout check, export."""

import json
import threading

import jax
import numpy as np
import pytest
from flax import nnx

from gramr2_jax.data.loader import Loader
from gramr2_jax.models import from_pretrained
from gramr2_jax.training.checkpoint import CheckpointLayoutError
from gramr2_jax.training.metrics_writer import read_metrics
from gramr2_jax.training.trainer import NonFiniteError, Trainer, train
from tests.training import tiny

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _config(**overrides):
    config = dict(loss="sft", num_steps=6, learning_rate=3e-3, warmup_steps=2,
                  compute_dtype="float32", checkpoint_every=3, export=False, progress_bar=False)
    config.update(overrides)
    return config


def _loader(seed=0):
    return tiny.make_loader(tiny.sft_examples(48), tiny.encode_sft, batch_size=8, seed=seed)


def test_same_seed_gives_identical_losses(tmp_path):
    logs = []
    for run in ("a", "b"):
        train(_config(), tiny.tiny_model(0), _loader(), tmp_path / run)
        logs.append(read_metrics(tmp_path / run / "metrics.jsonl"))
    assert [r["step"] for r in logs[0]] == list(range(1, 7))
    assert logs[0] == logs[1]
    train(_config(num_steps=1), tiny.tiny_model(1), _loader(), tmp_path / "c")  # other seed
    assert read_metrics(tmp_path / "c" / "metrics.jsonl")[0]["loss"] != logs[0][0]["loss"]


def test_reading_batches_ahead_changes_nothing(tmp_path):
    logs, states = [], []
    for prefetch in (0, 2):
        loader = _loader()
        train(_config(prefetch_batches=prefetch), tiny.tiny_model(0), loader,
              tmp_path / str(prefetch))
        logs.append(read_metrics(tmp_path / str(prefetch) / "metrics.jsonl"))
        states.append(loader.get_state())  # after training: the state of the batches used
    assert len(logs[0]) == 6 and logs[0] == logs[1]
    assert states[0] == states[1]
    with pytest.raises(ValueError, match="prefetch_batches: must be >= 0, got -1"):
        Trainer(_config(prefetch_batches=-1), tiny.tiny_model(0), tmp_path / "bad")


def test_compiling_ahead_changes_nothing_and_compiles_each_shape_once(tmp_path):
    # Prompts of 4..16 tokens + 4 target tokens; the first two batches are of length 16 and 32.
    def loader():
        return Loader(tiny.sft_examples(64, max_prompt=16), tiny.encode_sft, batch_size=8,
                      seed=0, window_batches=2, length_buckets=(16, 32))

    assert [b["tokens"].shape[1] for _, b in zip(range(8), loader())][:2] == [16, 32]

    compiles = []  # the thread of each compile of the train step

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE_EVENT and "train_step" in str(kwargs.get("fun_name")):
            compiles.append(threading.current_thread().name)

    logs, states, threads = [], [], []
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        for ahead in (False, True):
            jax.clear_caches()  # so each run compiles its step
            compiles.clear()
            source = loader()
            train(_config(num_steps=8, compile_ahead=ahead), tiny.tiny_model(0), source,
                  tmp_path / str(ahead))
            logs.append(read_metrics(tmp_path / str(ahead) / "metrics.jsonl"))
            states.append(source.get_state())
            threads.append(list(compiles))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(logs[0]) == 8 and logs[0] == logs[1] and states[0] == states[1]
    caller = threading.current_thread().name  # the thread that runs the training loop
    assert threads[0] == [caller] * 2  # one compile per shape, each when first met
    # Ahead: still one compile per shape, the later shape at least in the background.
    assert len(threads[1]) == 2 and "gramr2-train-compile-ahead" in threads[1], threads[1]


def test_logs_eval_hook_and_export(tmp_path):
    seen = []

    def eval_fn(model, step):
        seen.append(step)
        logits = model(np.zeros((1, 4), np.int32))
        return {"mean_logit": float(logits.mean())}

    result = train(_config(eval_every=3, export=True), tiny.tiny_model(0), _loader(),
                   tmp_path, eval_fn=eval_fn)
    assert seen == [3, 6] and result.step == 6
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/mean_logit" in r] == [3, 6]
    assert {"loss", "grad_norm", "learning_rate", "units"} <= set(rows[0])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # The export is an HF directory holding the trained weights.
    reloaded = from_pretrained(result.export_dir)
    trained = nnx.state(result.model)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(trained),
                 jax.device_get(nnx.state(reloaded)))
    # A layout field of the config applies to a model loaded from a directory.
    for blocks, expected in ((None, reloaded.config.causal_blocks), (1, 1), (3, 3)):
        again = Trainer(_config(causal_blocks=blocks), result.export_dir, tmp_path / "again")
        assert again.model_config.causal_blocks == expected


def test_non_finite_loss_stops_without_saving(tmp_path):
    # A huge learning rate makes step 2's parameters overflow; step 3 is non-finite.
    config = _config(learning_rate=1e38, warmup_steps=0, max_grad_norm=None,
                     checkpoint_every=1, num_steps=10)
    with pytest.raises(NonFiniteError, match=r"step \d+: non-finite") as err:
        train(config, tiny.tiny_model(0), _loader(), tmp_path)
    bad_step = int(str(err.value).split()[1].rstrip(":"))
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) == bad_step - 1
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")][-1] == bad_step - 1


def test_rerun_resumes_and_layout_mismatch_is_reported(tmp_path):
    train(_config(), tiny.tiny_model(0), _loader(), tmp_path)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    # Rerunning the finished run trains nothing more and keeps the log.
    result = train(_config(), tiny.tiny_model(0), _loader(), tmp_path)
    assert result.step == 6 and result.last_metrics == {}
    assert read_metrics(tmp_path / "metrics.jsonl") == rows
    trainer = Trainer(_config(), tiny.tiny_model(0, scan_layers=True), tmp_path)
    with pytest.raises(CheckpointLayoutError, match="scan_layers: checkpoint has False"):
        trainer.restore_latest(_loader())


def test_unknown_config_field_is_named():
    with pytest.raises(ValueError, match="learning_rat"):
        Trainer(_config(learning_rat=1.0), tiny.tiny_model(0), "/nonexistent")
    with pytest.raises(ValueError, match="verdict_token_ids"):
        Trainer(_config(loss="verdict"), tiny.tiny_model(0), "/nonexistent")


def test_metrics_log_tolerates_a_cut_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n" + '{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}]
