"""Per-round pseudo-label filter thresholds: strict in early rounds, looser later (SPEC §2).

Config (a plain dict or an ml_collections.ConfigDict), rounds numbered 1..num_rounds:

    num_rounds: 3
    schedule: "constant" | "explicit" | "linear"
    base: {kappa: 0.8, ...}          # every round starts from these (defaults below)
    rounds: [{kappa: 1.0}, {...}, {...}]   # explicit: one override dict per round
    start: {kappa: 1.0, tau: 0.9}    # linear: numeric fields go from start (round 1)
    end: {kappa: 0.6, tau: 0.6}      #   to end (last round); ints are rounded

A threshold set to None switches its filter off (kappa, tau, sigma); swap_agreement,
rationale_rules and coherence are switches themselves. tau_quantile, when set, replaces the
fixed tau by one set each round from that round's labels: that quantile of the
confidences of its labelled pairs (0.7: the 30 % most confident pass), so a judge
whose confidence drifts after retraining still passes its best pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class FilterThresholds:
    kappa: float | None = 0.8  # min share of all samples voting for the majority label
    tau: float | None = 0.7  # min mean probability of the majority label
    tau_quantile: float | None = None  # if set, tau = this quantile of the round's confidences
    sigma: float | None = None  # min teacher-forced p(verdict | rationale); None = no self-check
    swap_agreement: bool = True  # majority in original order == majority in swapped order
    rationale_rules: bool = True  # tags, length bounds, sections, conclusion == verdict
    coherence: bool = False  # the rationale's claims agree with each other (a domain check)
    min_chars: int = 20  # rationale length bounds (characters inside <think>)
    max_chars: int = 2000
    required_sections: tuple[str, ...] = ("Feedback:", "Conclusion:")

    @property
    def checks_coherence(self) -> bool:
        """Coherence is part of the rationale rules: on only when both are."""
        return self.coherence and self.rationale_rules

    def __post_init__(self) -> None:
        errors = threshold_errors(dataclasses.asdict(self), "thresholds")
        if errors:
            raise ValueError("; ".join(errors))


FIELDS = tuple(field.name for field in dataclasses.fields(FilterThresholds))
_PROBABILITIES = ("kappa", "tau", "tau_quantile", "sigma")
_SWITCHES = ("swap_agreement", "rationale_rules", "coherence")
_LENGTHS = ("min_chars", "max_chars")
_SCHEDULES = ("constant", "explicit", "linear")
_CONFIG_KEYS = ("num_rounds", "schedule", "base", "rounds", "start", "end")


def threshold_errors(values: Mapping[str, Any], where: str) -> list[str]:
    """Problems with a (partial) thresholds mapping, each naming its field."""
    known = ", ".join(FIELDS)
    errors = [f"{where}.{key}: unknown field (known: {known})" for key in values if key not in FIELDS]
    for key in _PROBABILITIES:
        value = values.get(key)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (is_number and 0.0 <= value <= 1.0):
            errors.append(f"{where}.{key}: must be a number in [0, 1] or None, got {value!r}")
    for key in _SWITCHES:
        if key in values and not isinstance(values[key], bool):
            errors.append(f"{where}.{key}: must be True or False, got {values[key]!r}")
    for key in _LENGTHS:
        value = values.get(key)
        if key in values and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            errors.append(f"{where}.{key}: must be an integer >= 0, got {value!r}")
    low, high = values.get("min_chars"), values.get("max_chars")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        errors.append(f"{where}.max_chars: must be >= min_chars ({low}), got {high}")
    sections = values.get("required_sections", ())
    if not isinstance(sections, (list, tuple)) or not all(isinstance(s, str) and s for s in sections):
        errors.append(
            f"{where}.required_sections: must be a list of non-empty strings, got {sections!r}"
        )
    return errors


def _plain(cfg: Any) -> dict[str, Any]:
    """A plain dict from a dict or ml_collections.ConfigDict (anything with to_dict())."""
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _with_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    defaults = dataclasses.asdict(FilterThresholds())
    return {**defaults, **values}


def validate(cfg: Any, prefix: str = "curriculum") -> list[str]:
    """Every problem in a curriculum config, each naming its field; [] when valid."""
    cfg = _plain(cfg)
    errors = [
        f"{prefix}.{key}: unknown field (known: {', '.join(_CONFIG_KEYS)})"
        for key in cfg
        if key not in _CONFIG_KEYS
    ]
    num_rounds = cfg.get("num_rounds")
    if isinstance(num_rounds, bool) or not isinstance(num_rounds, int) or num_rounds < 1:
        return errors + [f"{prefix}.num_rounds: must be an integer >= 1, got {num_rounds!r}"]
    schedule = cfg.get("schedule", "constant")
    if schedule not in _SCHEDULES:
        return errors + [f"{prefix}.schedule: must be one of {_SCHEDULES}, got {schedule!r}"]
    base = _plain(cfg.get("base") or {})
    errors += threshold_errors(_with_defaults(base), f"{prefix}.base")
    used = {"explicit": ("rounds",), "linear": ("start", "end")}.get(schedule, ())
    errors += [
        f"{prefix}.{key}: not used by schedule {schedule!r}"
        for key in ("rounds", "start", "end")
        if key in cfg and key not in used
    ]

    if schedule == "explicit":
        rounds = cfg.get("rounds")
        if not isinstance(rounds, (list, tuple)) or len(rounds) != num_rounds:
            got = len(rounds) if isinstance(rounds, (list, tuple)) else rounds
            return errors + [f"{prefix}.rounds: must list {num_rounds} rounds, got {got!r}"]
        for index, overrides in enumerate(rounds):
            merged = _with_defaults({**base, **_plain(overrides)})
            errors += threshold_errors(merged, f"{prefix}.rounds[{index}]")
    elif schedule == "linear":
        for key in ("start", "end"):
            if key not in cfg:
                errors.append(f"{prefix}.{key}: required by schedule 'linear'")
                continue
            part = _plain(cfg[key])
            errors += threshold_errors(_with_defaults({**base, **part}), f"{prefix}.{key}")
            errors += [
                f"{prefix}.{key}.{field}: only numeric fields are interpolated"
                for field in part
                if field in FIELDS and field not in _PROBABILITIES + _LENGTHS
            ]
        if "start" in cfg and "end" in cfg:
            start, end = _plain(cfg["start"]), _plain(cfg["end"])
            errors += [
                f"{prefix}.end.{field}: must be set in both start and end"
                for field in sorted(set(start) ^ set(end))
            ]
            # None switches a filter off, which cannot happen half-way through a schedule.
            errors += [
                f"{prefix}.end.{field}: None in only one of start and end"
                for field in sorted(set(start) & set(end))
                if (start[field] is None) != (end[field] is None)
            ]
    return errors


def thresholds_for_round(cfg: Any, round_index: int) -> FilterThresholds:
    """The thresholds of round *round_index* (1-based); raises ValueError naming bad fields."""
    errors = validate(cfg)
    if errors:
        raise ValueError("invalid curriculum config: " + "; ".join(errors))
    cfg = _plain(cfg)
    num_rounds = cfg["num_rounds"]
    if not 1 <= round_index <= num_rounds:
        raise ValueError(
            f"round must be in 1..{num_rounds} (curriculum.num_rounds), got {round_index}"
        )
    values = _with_defaults(_plain(cfg.get("base") or {}))
    schedule = cfg.get("schedule", "constant")
    if schedule == "explicit":
        values.update(_plain(cfg["rounds"][round_index - 1]))
    elif schedule == "linear":
        start, end = _plain(cfg["start"]), _plain(cfg["end"])
        fraction = (round_index - 1) / (num_rounds - 1) if num_rounds > 1 else 0.0
        for field in start:
            values[field] = _interpolate(field, start[field], end[field], fraction)
    values["required_sections"] = tuple(values["required_sections"])
    return FilterThresholds(**values)


def _interpolate(
    field: str, start: float | None, end: float | None, fraction: float
) -> float | int | None:
    if start is None:
        return None
    value = start + (end - start) * fraction
    return round(value) if field in _LENGTHS else round(value, 6)
