"""Train checkpoints: orbax CheckpointManager with a train-state item and a data item.

Layout under `directory`: one folder per step with items
  state — {"step", "params", "opt_state"} (orbax StandardSave, sharded arrays),
  data  — the data iterator's `get_state()` dict (JSON),
and custom metadata with layout facts (param dtype, scan_layers, loss, model
shape) that are checked before restoring: a scanned checkpoint restored into an
unscanned model fails with a message naming the field, not deep inside orbax.

Saves are async. Orbax writes each step to a temporary folder and renames it
when complete, so a process killed mid-save leaves the previous steps intact;
the half-written folder is not listed as a step and is removed at the next start.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from gramr2_jax.training.train_state import TrainState, abstract_train_state


class CheckpointLayoutError(ValueError):
    """The checkpoint was written for a different model layout than the one restoring it."""


class TrainCheckpointer:
    def __init__(self, directory: str | os.PathLike, *, layout: dict[str, Any],
                 save_every: int, keep: int, async_save: bool = True):
        self.layout = layout
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_every, max_to_keep=keep,
            enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory), options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_state: dict[str, Any],
             force: bool = False) -> bool:
        """Starts an async save if `step` is due (or `force`); returns whether it did."""
        return self.manager.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state.as_dict()),
                                          data=ocp.args.JsonSave(data_state)),
            custom_metadata=self.layout, force=force)

    def check_layout(self, step: int) -> None:
        saved = self.manager.metadata(step).custom_metadata or {}
        mismatched = [f"{key}: checkpoint has {saved.get(key)!r}, this run has {value!r}"
                      for key, value in self.layout.items() if saved.get(key) != value]
        if mismatched:
            raise CheckpointLayoutError(
                f"{self.manager.directory}/{step}: layout differs from this run's model — "
                + "; ".join(mismatched)
                + ". Restore with the same settings, or convert the checkpoint first.")

    def restore(self, step: int, like: TrainState,
                shardings: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """(state placed in `shardings`, data-iterator state) saved at `step`."""
        self.check_layout(step)
        target = abstract_train_state(like, shardings).as_dict()
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                          data=ocp.args.JsonRestore()))
        return TrainState.from_dict(restored["state"]), dict(restored["data"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def layout_facts(model_config, loss_kind: str) -> dict[str, Any]:
    """What must match between a checkpoint and the model restoring it."""
    return {
        "param_dtype": jax.numpy.dtype(model_config.param_dtype).name,
        "scan_layers": bool(model_config.scan_layers),
        "loss": loss_kind,
        "family": model_config.family,
        "num_layers": model_config.num_layers,
        "hidden_size": model_config.hidden_size,
        "vocab_size": model_config.vocab_size,
    }
