"""Metrics to `<workdir>/metrics.jsonl` and TensorBoard event files (main process only).

On resume from step s, rows with step > s (written by the interrupted run after
its last checkpoint) are dropped from the JSONL log, and TensorBoard is told to
purge events after s, so both logs read as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Mapping

import tensorboardX


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = pathlib.Path(path)
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise
            # A process killed mid-write leaves at most one partial last line.
    return rows


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)  # JSON has no NaN/inf


class MetricsWriter:
    def __init__(self, workdir: str | os.PathLike, *, start_step: int, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = workdir / "metrics.jsonl"
        kept = [row for row in read_metrics(self.jsonl_path) if row["step"] <= start_step]
        tmp = self.jsonl_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
        os.replace(tmp, self.jsonl_path)
        self._jsonl = open(self.jsonl_path, "a")
        self._tb = tensorboardX.SummaryWriter(str(workdir / "tensorboard"),
                                              purge_step=start_step + 1 if start_step else None)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _json_number(float(v)) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        for name, value in metrics.items():
            self._tb.add_scalar(name, float(value), step)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
