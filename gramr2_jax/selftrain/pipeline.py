"""The GRAM-R² pipeline over one workdir: stage 0, seed SFT, self-training rounds, report.

Every stage writes its artifacts under the workdir and marks itself done, so
rerunning the same command resumes after the last finished piece.
"""

from __future__ import annotations

import logging
import pathlib

import ml_collections

from gramr2_jax.selftrain import stage0


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = stage0.make_data(config, workdir)
    logging.info("data: %s", data_dir)
    tokenizer = stage0.ensure_tokenizer(config, workdir)
    logging.info("tokenizer: %d tokens", len(tokenizer))
