"""A TFDS builder that writes preference pairs as ArrayRecord files (no TensorFlow).

One configurable builder, ``gramr2_pairs``: a `PairsConfig` names the source
format (a key of `sources.READERS`) and the input file(s) of each split. Records
are read and validated by the same readers as everywhere else (strict by default).

    builder = build_pairs_dataset("hh", "hh_rlhf", {"test": path}, data_dir=tmp)
    source = tfds.data_source("gramr2_pairs/hh", data_dir=tmp)["test"]  # raw bytes
    pairs = PairsSource(source)  # -> LabelledPair / UnlabelledPair records

Two details that make this work without TensorFlow: ``file_format="array_record"``
and building `DatasetInfo` directly (``dataset_info_from_configs`` wants package
metadata files next to the builder module). Note tfds stores the records of a split
in hash order of their keys, not file order; loaders shuffle anyway.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from gramr2_jax.data import sources
from gramr2_jax.data.errors import ReadReport
from gramr2_jax.data.schema import LabelledPair, UnlabelledPair

LABELLED_FIELDS = ("prompt", "chosen", "rejected", "rationale", "category", "id")
UNLABELLED_FIELDS = ("prompt", "response_a", "response_b", "id")


@dataclasses.dataclass
class PairsConfig(tfds.core.BuilderConfig):
    """``source``: a key of `sources.READERS`; ``split_paths``: split -> path or paths."""

    source: str = "labelled"
    split_paths: Mapping[str, str | Sequence[str]] = dataclasses.field(default_factory=dict)
    skip_invalid: bool = False
    reader_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _fields(source: str) -> tuple[str, ...]:
    return UNLABELLED_FIELDS if source == "unlabelled" else LABELLED_FIELDS


class _LocalDatasetInfo(tfds.core.DatasetInfo):
    def initialize_from_bucket(self) -> None:
        """Nothing: these datasets are never on the public TFDS bucket. (tfds' version makes
        an empty temporary directory before it looks there, and leaves it behind, once per
        build of a dataset not yet prepared.)"""


class Gramr2Pairs(tfds.core.GeneratorBasedBuilder):
    """Preference pairs from any supported format, stored as ArrayRecord."""

    name = "gramr2_pairs"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIG_CLASS = PairsConfig
    BUILDER_CONFIGS = [PairsConfig(name="default")]

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        self.reports: dict[str, list[ReadReport]] = {}

    def _info(self) -> tfds.core.DatasetInfo:
        config: PairsConfig = self.builder_config
        features = {field: tfds.features.Text() for field in _fields(config.source)}
        return _LocalDatasetInfo(
            builder=self,
            description=f"gramr2 preference pairs, source format {config.source!r}",
            features=tfds.features.FeaturesDict(features),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
        config: PairsConfig = self.builder_config
        if not config.split_paths:
            raise ValueError(f"config {config.name!r}: split_paths is empty")
        return {split: self._generate_examples(split, paths)
                for split, paths in config.split_paths.items()}

    def _generate_examples(self, split: str, paths: str | Sequence[str]):
        config: PairsConfig = self.builder_config
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        fields = _fields(config.source)
        for file_index, path in enumerate(paths):
            records, report = sources.read_source(
                config.source, path, skip_invalid=config.skip_invalid, **config.reader_kwargs
            )
            self.reports.setdefault(split, []).append(report)
            for row_index, record in enumerate(records):
                example = {f: getattr(record, f) or "" for f in fields}  # None -> ""
                yield f"{file_index}:{row_index}", example


def build_pairs_dataset(
    name: str,
    source: str,
    split_paths: Mapping[str, str | Sequence[str]],
    data_dir: str | os.PathLike,
    *,
    skip_invalid: bool = False,
    **reader_kwargs: Any,
) -> Gramr2Pairs:
    """Builds ``gramr2_pairs/<name>`` under data_dir; read with tfds.data_source."""
    config = PairsConfig(name=name, source=source, split_paths=dict(split_paths),
                         skip_invalid=skip_invalid, reader_kwargs=dict(reader_kwargs))
    builder = Gramr2Pairs(config=config, data_dir=os.fspath(data_dir))
    builder.download_and_prepare()
    return builder


class PairsSource:
    """Wraps a tfds data source: decodes bytes and returns LabelledPair / UnlabelledPair.

    Works on anything indexable that yields the stored feature dicts.
    """

    def __init__(self, data_source: Any):
        self._source = data_source
        keys = set(data_source[0].keys()) if len(data_source) else set(LABELLED_FIELDS)
        self._unlabelled = "response_a" in keys

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> LabelledPair | UnlabelledPair:
        raw = self._source[int(index)]
        row = {k: _text(v) for k, v in raw.items()}
        optional = {k: (row[k] or None) for k in ("rationale", "category", "id") if k in row}
        if self._unlabelled:
            return UnlabelledPair(row["prompt"], row["response_a"], row["response_b"], **optional)
        return LabelledPair(row["prompt"], row["chosen"], row["rejected"], **optional)


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
