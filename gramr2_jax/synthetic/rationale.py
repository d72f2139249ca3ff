"""Rule-written seed rationales and a program that checks a rationale's claims.

A rationale is a compact GRAM-R² Feedback / Comparison / Conclusion text:

    Feedback: 17 + 25 = 42. Response A answers 42, so it is correct.
    Response B answers 41, so it is wrong. Comparison: only Response A is
    correct. Conclusion: Response A is better.

(on one line). Every sentence is a claim a program can check from the prompt
and response texts alone -- never from a gold label -- so the checker works on
unlabelled pairs and on rationales the judge writes itself.

Two checks:
  check_rationale    every claim against the truth (is the fact right, does each
                     response do what it says): for reporting faithfulness only --
                     it is a verifier, so nothing that filters or trains may use it.
  check_coherence    the claims against each other and the prompt, never against
                     the truth: the fact restates this prompt, each response's
                     status follows from the stated fact and its description, and
                     the comparison, conclusion and verdict name the one response
                     the rationale itself found correct. A coherent rationale may
                     still be wrong (a wrong fact, consistently applied), so this
                     is a rule-based rationale filter, not a label.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from gramr2_jax.data import judge_format
from gramr2_jax.synthetic.domain import parse_task
from gramr2_jax.synthetic.task import normalize

_FACT_RE = re.compile(r"Feedback:\s*(.+?)\.\s+Response [AB] ")
_RESPONSE_RE = re.compile(r"Response ([AB]) ([^.]+?), so it is (correct|wrong)\.")
_COMPARISON_RE = re.compile(r"Comparison:\s*only Response ([AB]) is correct\.")
_CONCLUSION_RE = re.compile(r"Conclusion:\s*Response ([AB]) is better\.")


def write_rationale(prompt: str, response_a: str, response_b: str) -> tuple[str, str]:
    """(rationale, verdict) for a pair where exactly one response is good."""
    task = parse_task(prompt)
    good_a, good_b = task.is_good(response_a), task.is_good(response_b)
    if good_a == good_b:
        raise ValueError(f"exactly one response must be good: {prompt!r}")
    verdict = "A" if good_a else "B"
    claims = [f"Feedback: {task.fact()}."]
    for name, response, good in (("A", response_a, good_a), ("B", response_b, good_b)):
        status = "correct" if good else "wrong"
        claims.append(f"Response {name} {task.describe(response)}, so it is {status}.")
    claims.append(f"Comparison: only Response {verdict} is correct.")
    claims.append(f"Conclusion: Response {verdict} is better.")
    return " ".join(claims), verdict


def seed_judgment(prompt: str, response_a: str, response_b: str) -> str:
    """The stage-1 training target: the rule rationale and verdict in the judge format."""
    return judge_format.format_judgment(*write_rationale(prompt, response_a, response_b))


@dataclasses.dataclass(frozen=True)
class RationaleCheck:
    claims_total: int  # claims found in the rationale
    claims_true: int
    conclusion_matches_verdict: bool
    faithful: bool  # complete, every claim true, conclusion == verdict
    problems: tuple[str, ...]  # false or missing claims, for reading


def check_rationale(pair: Mapping[str, str], rationale: str, verdict: str | None) -> RationaleCheck:
    """Checks a rationale against the pair's texts: pair["prompt"], ["response_a"], ["response_b"].

    Any "gold" field is ignored: truth is recomputed from the texts.
    """
    task = parse_task(pair["prompt"])
    responses = {"A": pair["response_a"], "B": pair["response_b"]}
    good = {name: task.is_good(text) for name, text in responses.items()}
    # (claim text, is it true) for every claim found, in reading order.
    claims: list[tuple[str, bool]] = []
    problems: list[str] = []

    fact = _FACT_RE.search(rationale)
    if fact:
        claims.append((fact.group(1), task.check_fact(fact.group(1))))
    else:
        problems.append("missing: fact")

    described = set()
    for match in _RESPONSE_RE.finditer(rationale):
        name, evidence, status = match.groups()
        described.add(name)
        evidence_true = normalize(evidence) == normalize(task.describe(responses[name]))
        claims.append((f"Response {name} {evidence}", evidence_true))
        claims.append((f"Response {name} is {status}", good[name] == (status == "correct")))
    problems += [f"missing: Response {name}" for name in "AB" if name not in described]

    for label, pattern in (("comparison", _COMPARISON_RE), ("conclusion", _CONCLUSION_RE)):
        found = pattern.findall(rationale)
        if not found:
            problems.append(f"missing: {label}")
        for name in found:
            other = "B" if name == "A" else "A"
            claims.append((f"{label} names {name}", good[name] and not good[other]))

    conclusions = _CONCLUSION_RE.findall(rationale)
    matches_verdict = bool(conclusions) and conclusions[-1] == verdict
    problems += [f"false: {text}" for text, true in claims if not true]
    if conclusions and not matches_verdict:
        problems.append(f"conclusion names {conclusions[-1]} but verdict is {verdict}")
    claims_true = sum(true for _, true in claims)
    return RationaleCheck(
        claims_total=len(claims),
        claims_true=claims_true,
        conclusion_matches_verdict=matches_verdict,
        faithful=not problems,
        problems=tuple(problems),
    )


def check_coherence(prompt: str, rationale: str, verdict: str | None) -> tuple[str, ...]:
    """Why a rationale contradicts itself or misstates the prompt (() if it is coherent).

    Reads only the prompt and the rationale's own claims (see the module doc): the
    verdict and statuses must follow from what the rationale states, true or not.
    """
    task = parse_task(prompt)
    problems: list[str] = []
    fact = _FACT_RE.search(rationale)
    if fact is None:
        return ("missing: fact",)
    statuses: dict[str, bool] = {}
    for match in _RESPONSE_RE.finditer(rationale):
        name, evidence, status = match.groups()
        if name in statuses:
            problems.append(f"Response {name} described twice")
            continue
        statuses[name] = status == "correct"
        implied = task.implied_good(fact.group(1), evidence)
        if implied is None:
            problems.append(f"Response {name}: {evidence!r} does not fit the stated fact "
                            f"{fact.group(1)!r} for this prompt")
        elif implied != statuses[name]:
            problems.append(f"Response {name}: {evidence!r} with {fact.group(1)!r} makes it "
                            f"{'correct' if implied else 'wrong'}, not {status}")
    problems += [f"missing: Response {name}" for name in "AB" if name not in statuses]
    correct = [name for name, good in statuses.items() if good]
    if len(statuses) == 2 and len(correct) != 1:
        problems.append(f"{len(correct)} responses called correct, not 1")
    elif len(correct) == 1:
        for label, pattern in (("comparison", _COMPARISON_RE), ("conclusion", _CONCLUSION_RE)):
            named = pattern.findall(rationale)
            if named != correct:
                problems.append(f"{label} names {named or 'nothing'}, not {correct[0]}")
        if verdict != correct[0]:
            problems.append(f"verdict {verdict} is not {correct[0]}")
    return tuple(problems)
