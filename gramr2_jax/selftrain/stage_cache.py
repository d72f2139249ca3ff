"""A cache of finished early stages, shared by runs whose configs agree on them.

Ablation variants of one seed differ only after stage 1, so with
`config.stage_cache = DIR` they reuse one copy of the data, the stage-0 base LM
and the stage-1 seed judge instead of recomputing them (4.7 of the demo's 12
minutes). A stage's entry is keyed by a hash of exactly the config sections
that determine it (STAGE_SECTIONS); the code version is NOT part of the key, so
clear the cache after changing how these stages compute.

Entries are written once, by a copy into a temporary name and a rename, and
only from a finished (DONE) stage; a run restores an entry only into a stage it
has not finished itself. Single-host only: multi-host runs ignore the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import shutil

import jax
import ml_collections

from gramr2_jax.selftrain import artifacts

log = logging.getLogger(__name__)

# stage dir → (its DONE marker's dir inside the stage, config sections it depends on);
# each stage depends on everything the one before it does.
_STAGE0 = ("data", "seed", "model", "mesh", "sharding", "stage0")
STAGE_SECTIONS = {
    "data": (".", ("data",)),
    "stage0": ("train", _STAGE0),
    "stage1": (".", _STAGE0 + ("judge", "stage1")),
}


def fingerprint(config: ml_collections.ConfigDict, stage: str) -> str:
    sections = {}
    for name in STAGE_SECTIONS[stage][1]:
        value = config.get(name)
        sections[name] = value.to_dict() if hasattr(value, "to_dict") else value
    text = json.dumps(sections, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _enabled(config: ml_collections.ConfigDict) -> bool:
    return bool(config.get("stage_cache")) and jax.process_count() == 1


def _entry(config: ml_collections.ConfigDict, stage: str) -> pathlib.Path:
    return pathlib.Path(config.stage_cache) / f"{stage}-{fingerprint(config, stage)}"


def _done(stage_dir: pathlib.Path, stage: str) -> bool:
    return artifacts.is_done(stage_dir / STAGE_SECTIONS[stage][0])


def restore(config: ml_collections.ConfigDict, workdir: pathlib.Path, stage: str) -> bool:
    """Copies the cached stage into workdir if this run has not finished it; True if so."""
    target = workdir / stage
    if not _enabled(config) or _done(target, stage):
        return False
    entry = _entry(config, stage)
    if not _done(entry, stage):
        return False
    tmp = workdir / f".{stage}.restoring"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(entry, tmp)
    shutil.rmtree(target, ignore_errors=True)  # a partial attempt of this run
    tmp.rename(target)
    log.info("%s: reused %s", stage, entry)
    return True


def publish(config: ml_collections.ConfigDict, workdir: pathlib.Path, stage: str) -> None:
    """Adds this run's finished stage to the cache (once per key)."""
    source = workdir / stage
    if not _enabled(config) or not _done(source, stage):
        return
    entry = _entry(config, stage)
    if entry.exists():
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{jax.process_index()}.writing")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    try:
        tmp.rename(entry)
    except OSError:  # another run published the same key first
        shutil.rmtree(tmp, ignore_errors=True)
