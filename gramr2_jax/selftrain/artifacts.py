"""Workdir artifacts: atomic writes and completion markers, so any stage can be killed and rerun.

A stage's output is written to a temporary name and renamed into place; a stage
is done when its marker file exists. Rerunning a finished stage reads its
outputs instead of recomputing them.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Any, Iterable


def atomic_write_text(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl(path: pathlib.Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: pathlib.Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: pathlib.Path, obj: Any) -> Any:
    """Strict JSON: NaN and ±inf (e.g. the precision of a round that kept nothing) as null.

    Returns obj as `read_json` will give it back, so a fresh run can return exactly what a
    resumed run reads."""
    text = json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return json.loads(text)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text())


def is_done(stage_dir: pathlib.Path) -> bool:
    return (stage_dir / "DONE").exists()


def mark_done(stage_dir: pathlib.Path, info: dict[str, Any] | None = None) -> None:
    write_json(stage_dir / "DONE", info or {})


_FAULT_ENV = "GRAMR2_KILL_AT"
_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Test hook: SIGKILLs this process at the n-th pass of a named point.

    Set GRAMR2_KILL_AT=name:n (e.g. "label_shard:2", "train_example:40", or
    "train_example@stage1:20" for one stage's training) to simulate a preempted
    worker at exactly that moment; unset, it does nothing.
    """
    spec = os.environ.get(_FAULT_ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] == int(count or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
