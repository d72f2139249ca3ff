"""Training stages of the pipeline: base-LM pretraining and judge SFT runs.

Each stage trains in its own directory with the resumable trainer and exports
an HF model directory (plus gramr2_judge.json for judges, see judge.py), so every stage's
model loads in transformers and in the judge tools. A stage whose export is
marked done is not retrained on rerun.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from gramr2_jax import config_lib
from gramr2_jax.data import judge_format
from gramr2_jax.data.batching import sft_encoder
from gramr2_jax.data.loader import Loader
from gramr2_jax.data.prompts import JudgePromptBuilder, swap_response_names
from gramr2_jax.data.schema import JudgeExample
from gramr2_jax.models import Transformer
from gramr2_jax.selftrain import artifacts
from gramr2_jax.training import trainer as trainer_lib


def train_config(config: ml_collections.ConfigDict, stage: ml_collections.ConfigDict,
                  num_examples: int, **extra) -> dict[str, Any]:
    """TrainConfig fields for a stage: epochs → steps (at least stage.min_steps, so a small
    training set still gets enough updates), plus the run-wide mesh and numerics."""
    steps = max(stage.get("min_steps", 1),
                int(np.ceil(stage.epochs * num_examples / stage.batch_size)))
    out = dict(stage.train.to_dict() if hasattr(stage.train, "to_dict") else stage.train)
    out.update(num_steps=steps, mesh_shape=tuple(config.mesh.shape),
               compute_dtype=config.model.dtype, param_dtype=config.model.param_dtype,
               remat=config.model.remat, scan_layers=config.model.scan_layers,
               causal_blocks=config.model.get("causal_blocks"),
               progress_bar=False, warmup_steps=min(out.get("warmup_steps", 0), steps // 4))
    out.update(extra)
    return out


# Steps of 16 up to 160, where the demo's stage-0 texts lie (52–129 tokens): there the
# demo model's train step grows faster than the length (batch 32 on a 2-core AVX2 CPU:
# 199 ms at 64 tokens, 324 at 96, 437 at 128, 790 at 192); with 64, 128, 192 alone its
# steps took about a quarter longer in all. Two sizes per doubling above.
_BUCKETS = (64, 80, 96, 112, 128, 144, 160, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
            4096, 6144, 8192)


def length_buckets(max_len: int) -> tuple[int, ...]:
    """Padded lengths of training batches: a few sizes up to max_len (bounds recompiles)."""
    return tuple(b for b in _BUCKETS if b < max_len) + (max_len,)


def run_training(train_cfg: dict[str, Any], model_or_dir, examples: Sequence[Any],
                 encode: Callable, out_dir: pathlib.Path, *, tokenizer, batch_size: int,
                 seed: int, max_len: int, judge_settings: dict[str, Any] | None = None
                 ) -> pathlib.Path:
    """Trains in out_dir (resuming if interrupted); returns the exported HF directory."""
    export = out_dir / "export"
    if artifacts.is_done(out_dir):
        return export
    stage = out_dir.parent.name  # stage0, stage1, round_2, ...

    def encode_example(example):
        artifacts.fault_point("train_example")
        artifacts.fault_point(f"train_example@{stage}")
        return encode(example)

    # batch_size is global: each host loads its own rows of every global batch.
    hosts = jax.process_count()
    if batch_size % hosts:
        raise ValueError(f"batch_size: {batch_size} is not divisible by {hosts} hosts")
    loader = Loader(examples, encode_example, batch_size=batch_size // hosts, seed=seed,
                    window_batches=4, process_index=jax.process_index(), process_count=hosts,
                    pad_id=tokenizer.pad_token_id or 0, length_buckets=length_buckets(max_len))
    result = trainer_lib.train(train_cfg, model_or_dir, loader, out_dir, tokenizer=tokenizer)
    if judge_settings is not None:
        from gramr2_jax.judge import write_judge_config

        write_judge_config(export, **judge_settings)
    artifacts.mark_done(out_dir, {"steps": result.step, **result.last_metrics})
    return export


def pretrain_base(config: ml_collections.ConfigDict, workdir: pathlib.Path, tokenizer) -> pathlib.Path:
    """Stage 0: a tiny LM trained from scratch on the domain text (or the configured HF model)."""
    if config.model.hf_path:
        return pathlib.Path(config.model.hf_path)
    if config.data.source != "synthetic":
        raise ValueError("model.hf_path: required unless data.source is 'synthetic' "
                         "(stage-0 pretraining uses the synthetic domain's text)")
    texts = [r["text"] for r in artifacts.read_jsonl(workdir / "data" / "pretrain.jsonl")]
    model_cfg = config_lib.model_config(config.model).replace(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    max_len = config.stage0.max_len

    def encode(text: str):
        ids = np.asarray(tokenizer.encode(text)[:max_len - 1] + [tokenizer.eos_token_id], np.int32)
        return {"tokens": ids, "loss_mask": np.ones(len(ids), bool)}

    model = Transformer(model_cfg, rngs=nnx.Rngs(config.seed))
    return run_training(
        train_config(config, config.stage0, len(texts)), model, texts, encode,
        workdir / "stage0" / "train", tokenizer=tokenizer, batch_size=config.stage0.batch_size,
        seed=config.seed, max_len=max_len)


def judge_builder(config: ml_collections.ConfigDict, tokenizer) -> JudgePromptBuilder:
    return JudgePromptBuilder(tokenizer, template=config.judge.template,
                              max_prompt_len=config.judge.max_prompt_len)


def judge_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What Judge.from_pretrained needs to prompt this judge the way it was trained."""
    return {"template": config.judge.template, "max_prompt_len": config.judge.max_prompt_len,
            "max_new_tokens": config.judge.max_new_tokens}


def to_judge_example(row: dict[str, Any]) -> JudgeExample:
    verdict = row["verdict"]
    return JudgeExample(prompt=row["prompt"], response_a=row["response_a"],
                        response_b=row["response_b"], label=judge_format.VERDICTS.index(verdict),
                        rationale=row.get("rationale") or "", category=row.get("category"),
                        id=row.get("id"))


def swapped(row: dict[str, Any]) -> dict[str, Any]:
    """The same judgment with the responses presented in the other order."""
    other = judge_format.VERDICTS[1 - judge_format.VERDICTS.index(row["verdict"])]
    return dict(row, response_a=row["response_b"], response_b=row["response_a"], verdict=other,
                rationale=swap_response_names(row.get("rationale") or ""))


def train_judge(config: ml_collections.ConfigDict, stage: ml_collections.ConfigDict,
                base_dir: pathlib.Path, rows: list[dict[str, Any]], out_dir: pathlib.Path,
                tokenizer, *, loss: str = "sft") -> pathlib.Path:
    """SFT (rationale + verdict) or GRAM-v1 verdict-token training of a judge on rows.

    With judge.swap_augment every row is also trained in the swapped order (JudgeLM's
    swap augmentation): the same content with the other label, so position alone
    cannot fit the data."""
    builder = judge_builder(config, tokenizer)
    extra = {"loss": loss}
    if loss == "verdict":
        extra["verdict_token_ids"] = tuple(builder.verdict_ids)
    if config.judge.swap_augment:
        rows = [r for row in rows for r in (row, swapped(row))]
    examples = [to_judge_example(r) for r in rows]
    return run_training(
        train_config(config, stage, len(examples), **extra), base_dir, examples,
        sft_encoder(builder, config.judge.max_len), out_dir, tokenizer=tokenizer,
        batch_size=stage.batch_size, seed=config.seed, max_len=config.judge.max_len,
        judge_settings=judge_settings(config))
