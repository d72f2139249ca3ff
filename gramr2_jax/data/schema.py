"""Record types for preference data and per-field validation of raw JSON rows.

Rows may carry extra keys (ignored). Required text fields must be non-empty
strings (whitespace only counts as empty); optional fields may be absent or null.
An ``id`` may be a string or an integer and is kept as a string.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from gramr2_jax.data.errors import ROW, FieldError


@dataclasses.dataclass(frozen=True)
class LabelledPair:
    """A human/gold-labelled pair: ``chosen`` is better than ``rejected``."""

    prompt: str
    chosen: str
    rejected: str
    rationale: str | None = None
    category: str | None = None
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class UnlabelledPair:
    """A pair to be judged (SPEC §6 judge input rows)."""

    prompt: str
    response_a: str
    response_b: str
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class JudgeExample:
    """A pair in a fixed display order; ``label`` 0 = A is better, 1 = B is better."""

    prompt: str
    response_a: str
    response_b: str
    label: int
    rationale: str | None = None
    category: str | None = None
    id: str | None = None

    @property
    def verdict(self) -> str:
        return "AB"[self.label]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def require_object(row: Any) -> Mapping[str, Any]:
    if not isinstance(row, dict):
        raise FieldError(ROW, f"expected a JSON object, got {_type_name(row)}", "not_an_object")
    return row


def required_text(row: Mapping[str, Any], field: str) -> str:
    if field not in row:
        raise FieldError(field, "missing required field", "missing_field")
    return _text(row[field], field)


def optional_text(row: Mapping[str, Any], field: str) -> str | None:
    value = row.get(field)
    return None if value is None else _text(value, field)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise FieldError(
            field, f"expected a non-empty string, got {_type_name(value)}", "wrong_type"
        )
    if not value.strip():
        raise FieldError(field, "expected a non-empty string, got an empty string", "empty")
    return value


def optional_id(row: Mapping[str, Any], field: str = "id") -> str | None:
    value = row.get(field)
    if value is None:
        return None
    # bool is an int subclass; an id of `true` is a data bug, not the id "True".
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError(field, f"expected a string or integer, got {_type_name(value)}", "wrong_type")
    if isinstance(value, str) and not value.strip():
        raise FieldError(field, "expected a non-empty string, got an empty string", "empty")
    return str(value)


def require_different(a: str, b: str, field: str, other: str) -> None:
    if a.strip() == b.strip():
        raise FieldError(field, f"identical to {other}; a pair needs two different responses", "identical")


def parse_labelled_pair(row: Any) -> LabelledPair:
    row = require_object(row)
    pair = LabelledPair(
        prompt=required_text(row, "prompt"),
        chosen=required_text(row, "chosen"),
        rejected=required_text(row, "rejected"),
        rationale=optional_text(row, "rationale"),
        category=optional_text(row, "category"),
        id=optional_id(row),
    )
    require_different(pair.rejected, pair.chosen, "rejected", "chosen")
    return pair


def parse_unlabelled_pair(row: Any) -> UnlabelledPair:
    row = require_object(row)
    return UnlabelledPair(
        prompt=required_text(row, "prompt"),
        response_a=required_text(row, "response_a"),
        response_b=required_text(row, "response_b"),
        id=optional_id(row),
    )
