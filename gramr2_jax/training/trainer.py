"""The training loop: resumable, sharded, logged, exported.

`train(config, model_or_dir, train_source, workdir)` trains for `num_steps`
optimizer steps. Rerunning the same call on the same workdir continues from
the latest checkpoint: params, optimizer state, step and the data iterator's
position are restored, so an interrupted run (even SIGKILL) ends with the same
parameters and the same metrics log as an uninterrupted one. The step itself
uses no randomness (no dropout); all randomness is in seeded model init and in
the loader, whose state is checkpointed.

train_source: an iterator of host-local numpy batches (this host's rows) with
`get_state() -> dict` / `set_state(dict)`, e.g. gramr2_jax.data.loader.Loader.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib
import threading
from typing import Any, Callable, Iterator, Mapping

import jax
import numpy as np
import tqdm
from flax import nnx

from gramr2_jax import compile_ahead, distributed, sharding as sharding_lib
from gramr2_jax.data.prefetch import Prefetcher
from gramr2_jax.models import Transformer, from_pretrained, save_pretrained
from gramr2_jax.training import optimizer as optimizer_lib
from gramr2_jax.training.checkpoint import TrainCheckpointer, layout_facts
from gramr2_jax.training.config import TrainConfig
from gramr2_jax.training.losses import Objective
from gramr2_jax.training.metrics_writer import MetricsWriter
from gramr2_jax.training.reward_model import RewardModel
from gramr2_jax.training.train_state import create_train_state
from gramr2_jax.training.train_step import batch_spec, make_train_step

log = logging.getLogger(__name__)

EvalFn = Callable[[nnx.Module, int], dict[str, float]]


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss or gradient; training stopped before saving it."""


@dataclasses.dataclass
class TrainResult:
    model: nnx.Module  # the trained model (Transformer, or RewardModel for loss='bt')
    step: int  # optimizer steps done
    start_step: int  # where this call started (> 0: resumed from a checkpoint)
    last_metrics: dict[str, float]  # of the last step this process ran (empty if none ran)
    export_dir: pathlib.Path | None


def load_model(cfg: TrainConfig, model_or_dir: nnx.Module | str | os.PathLike,
               mesh: jax.sharding.Mesh) -> nnx.Module:
    """The model to train: an HF directory is loaded into the mesh with cfg's numerics."""
    if isinstance(model_or_dir, (str, os.PathLike)):
        model = from_pretrained(model_or_dir, dtype=cfg.compute_jnp_dtype,
                                param_dtype=cfg.param_jnp_dtype, mesh=mesh,
                                rules=cfg.sharding_rules, scan_layers=cfg.scan_layers,
                                remat=cfg.remat, causal_blocks=cfg.causal_blocks)
    else:
        model = model_or_dir
    if cfg.loss == "bt" and not isinstance(model, RewardModel):
        model = RewardModel(model, rngs=nnx.Rngs(cfg.seed))
    return model


def _backbone(model: nnx.Module) -> Transformer:
    return model.backbone if isinstance(model, RewardModel) else model


class Trainer:
    def __init__(self, config: Any, model_or_dir: nnx.Module | str | os.PathLike,
                 workdir: str | os.PathLike, *, mesh: jax.sharding.Mesh | None = None,
                 tokenizer: Any = None, eval_fn: EvalFn | None = None):
        cfg = self.cfg = TrainConfig.from_config(config)
        self.workdir = pathlib.Path(workdir)
        self.mesh = mesh if mesh is not None else sharding_lib.make_mesh(cfg.mesh_shape)
        self.tokenizer, self.eval_fn = tokenizer, eval_fn
        self.is_main = jax.process_index() == 0
        model = load_model(cfg, model_or_dir, self.mesh)
        self.model_config = model.config
        self.objective = Objective(cfg.loss, cfg.label_smoothing, cfg.verdict_token_ids)
        self.schedule = optimizer_lib.learning_rate_schedule(
            cfg.learning_rate, cfg.warmup_steps, cfg.num_steps, cfg.end_lr_ratio)
        make_tx = functools.partial(
            optimizer_lib.make_optimizer, weight_decay=cfg.weight_decay, b1=cfg.b1, b2=cfg.b2,
            eps=cfg.eps, max_grad_norm=cfg.max_grad_norm)
        self.graphdef, self.state, self.shardings = create_train_state(
            model, make_tx(self.schedule), self.mesh, cfg.sharding_rules)
        del model  # its arrays now live in self.state (and are donated by the step)
        self.step_fn = make_train_step(
            self.graphdef, self.shardings, self.mesh, objective=self.objective,
            make_tx=make_tx, schedule=self.schedule, num_micro=cfg.grad_accum_steps,
            rules=cfg.sharding_rules)
        self.checkpointer = TrainCheckpointer(
            self.workdir / "checkpoints", layout=layout_facts(self.model_config, cfg.loss),
            save_every=cfg.checkpoint_every, keep=cfg.keep_checkpoints,
            async_save=cfg.async_checkpoints)
        self._compiles = compile_ahead.Compiles()  # batch shape -> compiled (_compile_ahead)

    @property
    def model(self) -> nnx.Module:
        """The model with the current params (valid until the next step donates them)."""
        return nnx.merge(self.graphdef, self.state.params)

    def restore_latest(self, train_source) -> int:
        """Restores the latest checkpoint (if any) into the target shardings; returns its step."""
        step = self.checkpointer.latest_step()
        if step is None:
            return 0
        self.state, data_state = self.checkpointer.restore(step, self.state, self.shardings)
        train_source.set_state(data_state)
        if self.is_main:
            log.info("resumed from %s at step %d", self.checkpointer.manager.directory, step)
        return step

    def run(self, train_source) -> TrainResult:
        cfg = self.cfg
        start = self.restore_latest(train_source)
        writer = MetricsWriter(self.workdir, start_step=start, enabled=self.is_main)
        bar = tqdm.tqdm(total=cfg.num_steps, initial=start, unit="step", dynamic_ncols=True,
                        disable=not (self.is_main and cfg.progress_bar))
        last: dict[str, float] = {}
        step = start
        # The next batches are made while the step runs; checkpoints get the state of the
        # batches consumed, not of those read ahead.
        stop_compiling = self._compile_ahead(train_source, cfg.num_steps - start)
        source = (Prefetcher(train_source, cfg.prefetch_batches) if cfg.prefetch_batches
                  else train_source)
        try:
            batches: Iterator = iter(source)
            for step in range(start, cfg.num_steps):
                try:
                    local_batch = next(batches)
                except StopIteration:
                    log.warning("train_source ended after %d steps (num_steps=%d)",
                                step, cfg.num_steps)
                    break
                last = self._one_step(local_batch, step, writer, source)
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.4f}")
            else:
                step = cfg.num_steps
            self.checkpointer.wait()
            if step not in self.checkpointer.manager.all_steps():
                self.checkpointer.save(step, self.state, source.get_state(), force=True)
                self.checkpointer.wait()
        finally:
            if stop_compiling is not None:
                stop_compiling.set()
                log.info("train step: %d batch shapes; the steps waited %.1f s for the "
                         "background compiles", len(self._compiles), self._compiles.wait_s)
            if source is not train_source:
                source.close()
            bar.close()
            writer.close()
            self.checkpointer.close()
        export_dir = self.export() if cfg.export else None
        return TrainResult(model=self.model, step=step, start_step=start, last_metrics=last,
                           export_dir=export_dir)

    # ------------------------------------------------------------------ compile ahead

    def _compile_ahead(self, train_source, num_batches: int) -> threading.Event | None:
        """Starts compiling, in a background thread, the step for each new batch shape the
        source will give in its next `num_batches` batches, one after another, so the
        compiles overlap the steps before them (on CPU the compile takes a core the step
        would use; on an accelerator it takes none). Returns the Event that stops it
        after its current compile, or None where nothing was started.

        The thread only lowers and compiles (jit's ahead-of-time path; the step then finds
        the program in JAX's caches); it runs nothing. A step whose shape the thread is
        compiling waits for it; results do not change.
        """
        plan = getattr(train_source, "first_batch_of_each_shape", None)
        if not self.cfg.compile_ahead or plan is None or jax.process_count() > 1:
            return None
        previews = plan(num_batches)  # planned from the source's state now, on this thread
        # Shapes and shardings only: the step donates the state's buffers.
        state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                             self.state)
        stop = threading.Event()
        # Bad input (e.g. an example longer than the largest bucket) stops the thread with
        # one warning line; the training loop reports it.
        def compile_one(local_batch):
            self.step_fn.lower(state, self._global_batch(local_batch)).compile()

        self._compiles.start(previews, key=_shape_key, compile_one=compile_one,
                             name="gramr2-train-compile-ahead", what="steps", stop=stop)
        return stop

    # ------------------------------------------------------------------ steps

    def _global_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        global_batch_size = next(iter(local_batch.values())).shape[0] * jax.process_count()
        spec = batch_spec(global_batch_size, self.mesh, self.cfg.sharding_rules)
        return distributed.host_local_to_global(local_batch, self.mesh, spec)

    def _one_step(self, local_batch, step: int, writer: MetricsWriter,
                  train_source) -> dict[str, float]:
        cfg = self.cfg
        batch = self._global_batch(local_batch)
        self._compiles.wait(_shape_key(local_batch))
        self.state, metrics = self.step_fn(self.state, batch)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        done = step + 1
        if not metrics.pop("finite"):
            self.checkpointer.wait()  # let earlier (good) saves complete; save nothing new
            good = self.checkpointer.latest_step()
            raise NonFiniteError(
                f"step {done}: non-finite loss or gradient (loss={metrics['loss']}, "
                f"grad_norm={metrics['grad_norm']}); training stopped, nothing saved for this "
                f"step. Last good checkpoint: "
                f"{'none' if good is None else self.checkpointer.manager.directory / str(good)}")
        if done % cfg.log_every == 0 or done == cfg.num_steps:
            writer.write(done, metrics)
        self.checkpointer.save(done, self.state, train_source.get_state())
        if self.eval_fn is not None and cfg.eval_every and done % cfg.eval_every == 0:
            eval_metrics = self.eval_fn(self.model, done)
            writer.write(done, {f"eval/{k}": v for k, v in eval_metrics.items()})
        return metrics

    def export(self) -> pathlib.Path:
        """Writes <workdir>/export: an HF model dir (+ reward_head.npz for loss='bt')."""
        out = self.workdir / "export"
        model = self.model
        save_pretrained(_backbone(model), out, tokenizer=self.tokenizer)
        if isinstance(model, RewardModel):
            head = {k: np.asarray(jax.device_get(v.value))
                    for k, v in (("kernel", model.head.kernel), ("bias", model.head.bias))}
            if self.is_main:
                np.savez(out / "reward_head.npz", **head)
        return out


def _shape_key(local_batch: Mapping[str, np.ndarray]) -> tuple:
    return tuple(sorted((k, np.shape(v), np.asarray(v).dtype.str) for k, v in local_batch.items()))


def train(config: Any, model_or_dir: nnx.Module | str | os.PathLike, train_source,
          workdir: str | os.PathLike, *, mesh: jax.sharding.Mesh | None = None,
          tokenizer: Any = None, eval_fn: EvalFn | None = None) -> TrainResult:
    """Trains (or resumes training) in `workdir`; see the module docstring.

    A model passed in is consumed: its arrays become the train state, which each step
    donates. Use `TrainResult.model` afterwards.
    """
    trainer = Trainer(config, model_or_dir, workdir, mesh=mesh, tokenizer=tokenizer,
                      eval_fn=eval_fn)
    return trainer.run(train_source)
