"""Readers for each on-disk preference format, all returning (records, ReadReport).

Labelled formats return `LabelledPair` (chosen is better); the judge input format
returns `UnlabelledPair`. Ties are DROPPED with a counted reason ("tie") in both
strict and skipping modes: a judge that must answer A or B has nothing to learn
from them. Every reader is strict by default (the first bad row raises DataError)
and takes ``skip_invalid=True`` to skip and count bad rows instead.
"""

from __future__ import annotations

import collections
import os
import re
from typing import Any, Mapping

from gramr2_jax.data import schema
from gramr2_jax.data.errors import FieldError, ReadReport
from gramr2_jax.data.jsonl import DEFAULT_MAX_LINE_CHARS, Drop, iter_json_list, read_rows
from gramr2_jax.data.schema import LabelledPair, UnlabelledPair

Path = str | os.PathLike
Result = tuple[list[LabelledPair], ReadReport]


def read_labelled_pairs(
    path: Path, *, skip_invalid: bool = False, max_line_chars: int = DEFAULT_MAX_LINE_CHARS
) -> Result:
    """JSONL rows {prompt, chosen, rejected, rationale?, category?, id?}."""
    return read_rows(path, lambda v, _: schema.parse_labelled_pair(v),
                     skip_invalid=skip_invalid, max_line_chars=max_line_chars)


def read_unlabelled_pairs(
    path: Path, *, skip_invalid: bool = False, max_line_chars: int = DEFAULT_MAX_LINE_CHARS
) -> tuple[list[UnlabelledPair], ReadReport]:
    """JSONL rows {prompt, response_a, response_b, id?} (the judge CLI's input)."""
    return read_rows(path, lambda v, _: schema.parse_unlabelled_pair(v),
                     skip_invalid=skip_invalid, max_line_chars=max_line_chars)


def _response(row: Mapping[str, Any], field: str) -> str:
    """A response text; in public datasets an empty response is real data, so drop, not error."""
    value = row.get(field)
    if isinstance(value, str) and not value.strip():
        raise Drop("empty_response")
    return schema.required_text(row, field)


# --- HH-RLHF -----------------------------------------------------------------

_ASSISTANT = "\n\nAssistant:"


def _split_transcript(row: Mapping[str, Any], field: str) -> tuple[str, str]:
    text = schema.required_text(row, field)
    if _ASSISTANT not in text:
        raise FieldError(field, "no '\\n\\nAssistant:' turn in the transcript", "bad_transcript")
    prefix, answer = text.rsplit(_ASSISTANT, 1)
    return prefix, answer.strip()


def _parse_hh(row: Any, line: int) -> LabelledPair:
    row = schema.require_object(row)
    prefix_c, chosen = _split_transcript(row, "chosen")
    prefix_r, rejected = _split_transcript(row, "rejected")
    # A few pairs (5 in harmless-base test) differ before the last assistant turn.
    if prefix_c != prefix_r:
        raise Drop("prefix_mismatch")
    if not chosen or not rejected:
        raise Drop("empty_response")
    if chosen == rejected:
        raise Drop("identical")
    return LabelledPair(prompt=prefix_c.strip() + _ASSISTANT, chosen=chosen,
                        rejected=rejected, category="hh_rlhf", id=f"hh:{line}")


def read_hh_rlhf(
    path: Path, *, skip_invalid: bool = False, max_line_chars: int = DEFAULT_MAX_LINE_CHARS
) -> Result:
    """HH-RLHF {chosen, rejected} transcripts (.jsonl or .jsonl.gz).

    The shared text up to the last "\\n\\nAssistant:" becomes the prompt (it keeps
    the Human:/Assistant: dialogue and ends with "\\n\\nAssistant:"); the two final
    assistant turns become chosen/rejected. Ids are "hh:<line>".
    """
    return read_rows(path, _parse_hh, skip_invalid=skip_invalid, max_line_chars=max_line_chars)


# --- LLMBar (and its Processed/ sets) ------------------------------------------

def _parse_llmbar(row: Any, item: str, tag: str) -> LabelledPair:
    row = schema.require_object(row)
    prompt = schema.required_text(row, "input")
    out1, out2 = _response(row, "output_1"), _response(row, "output_2")
    label = row.get("label")
    if label == 0 and not isinstance(label, bool):
        raise Drop("tie")
    if label not in (1, 2) or isinstance(label, bool):
        raise FieldError("label", f"expected 1 or 2 (0 = tie), got {label!r}", "bad_label")
    chosen, rejected = (out1, out2) if label == 1 else (out2, out1)
    if chosen.strip() == rejected.strip():
        raise Drop("identical")
    return LabelledPair(prompt=prompt, chosen=chosen, rejected=rejected, category=tag,
                        id=f"{tag}:{item.split()[-1]}")


def read_llmbar(path: Path, *, skip_invalid: bool = False, category: str | None = None) -> Result:
    """An LLMBar-style dataset.json: a list of {input, output_1, output_2, label 1|2}.

    ``category`` defaults to the folder name (e.g. "Natural", "Neighbor", "MT-Bench").
    """
    tag = category or os.path.basename(os.path.dirname(os.path.abspath(path)))
    return read_rows(path, lambda v, item: _parse_llmbar(v, item, tag),
                     skip_invalid=skip_invalid, items=iter_json_list(path))


def llmbar_files(root: Path) -> dict[str, str]:
    """{subset name: dataset.json path} under an LLMBar folder, e.g. "Adversarial/Neighbor"."""
    found = {}
    for dirpath, _, files in sorted(os.walk(root)):
        if "dataset.json" in files:
            found[os.path.relpath(dirpath, root)] = os.path.join(dirpath, "dataset.json")
    return dict(sorted(found.items()))


# --- PandaLM test set ------------------------------------------------------------

def _parse_pandalm(row: Any, item: str) -> LabelledPair:
    row = schema.require_object(row)
    # The prompt is instruction + input; either part may be blank (one upstream row
    # has only an input), but not both.
    parts = []
    for key in ("instruction", "input"):
        value = row.get(key, "")
        if not isinstance(value, str):
            raise FieldError(key, f"expected a string, got {type(value).__name__}", "wrong_type")
        if value.strip():
            parts.append(value.strip())
    if not parts:
        raise FieldError("instruction", "instruction and input are both empty", "empty")
    prompt = "\n\n".join(parts)
    # 6 upstream rows store the model output "True" as a JSON boolean; restore the text.
    row = {k: (str(v) if k.startswith("response") and isinstance(v, bool) else v)
           for k, v in row.items()}
    r1, r2 = _response(row, "response1"), _response(row, "response2")
    votes = []
    for key in ("annotator1", "annotator2", "annotator3"):
        vote = row.get(key)
        if vote not in (0, 1, 2) or isinstance(vote, bool):
            raise FieldError(key, f"expected 0, 1 or 2, got {vote!r}", "bad_label")
        votes.append(vote)
    (winner, count), = collections.Counter(votes).most_common(1)
    # Majority of three; a majority for 0, or a 1-1-1 split, is a tie.
    if count < 2 or winner == 0:
        raise Drop("tie")
    chosen, rejected = (r1, r2) if winner == 1 else (r2, r1)
    if chosen.strip() == rejected.strip():
        raise Drop("identical")
    idx = row.get("idx", item.split()[-1])
    return LabelledPair(prompt=prompt, chosen=chosen, rejected=rejected,
                        category=str(row.get("motivation_app") or "pandalm"), id=f"pandalm:{idx}")


def read_pandalm(path: Path, *, skip_invalid: bool = False) -> Result:
    """PandaLM testset-v1.json: majority of 3 annotators (1/2; 0 = tie -> dropped)."""
    return read_rows(path, _parse_pandalm, skip_invalid=skip_invalid, items=iter_json_list(path))


# --- GSM8K model solutions -------------------------------------------------------

GSM8K_MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
_FINAL_ANSWER = re.compile(r"(?:^|\n)\s*(?:A:|####)\s*(.+?)\s*$")


def gsm8k_final_answer(solution: str) -> str | None:
    """The number after the final "A:" (model) or "####" (reference), commas removed."""
    match = _FINAL_ANSWER.search(solution.strip())
    return match.group(1).replace(",", "").strip() if match else None


def _parse_gsm8k(row: Any, line: int, include_reference: bool) -> list[LabelledPair]:
    row = schema.require_object(row)
    question = schema.required_text(row, "question")
    reference = schema.required_text(row, "ground_truth")
    truth = gsm8k_final_answer(reference)
    if truth is None:
        raise FieldError("ground_truth", "no final 'A: <number>' line", "no_final_answer")
    correct, incorrect = [], []
    for model in GSM8K_MODELS:
        entry = row.get(model)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise FieldError(model, f"expected an object, got {type(entry).__name__}", "wrong_type")
        solution = schema.required_text(entry, "solution")
        # The final-answer check decides (SOURCE.md); a stored is_correct must agree.
        is_correct = gsm8k_final_answer(solution) == truth
        stored = entry.get("is_correct")
        if stored is not None and stored != is_correct:
            raise FieldError(f"{model}.is_correct", f"{stored} disagrees with the final-answer check",
                             "label_mismatch")
        (correct if is_correct else incorrect).append((model, solution))
    if include_reference:
        correct.append(("reference", reference))
    pairs = [
        LabelledPair(prompt=question, chosen=good, rejected=bad, category="gsm8k",
                     id=f"gsm8k:{line}:{good_name}>{bad_name}")
        for good_name, good in correct for bad_name, bad in incorrect
        if good.strip() != bad.strip()
    ]
    if not pairs:
        raise Drop("no_correct_incorrect_pair")
    return pairs


def read_gsm8k_pairs(
    path: Path, *, skip_invalid: bool = False, include_reference: bool = False,
    max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
) -> Result:
    """GSM8K example_model_solutions.jsonl -> every (correct, incorrect) solution pair.

    Correctness is the final-answer check (model "A: n" vs the reference's, commas
    removed); a model solution with no final answer is incorrect. With
    ``include_reference`` the human reference solution also counts as correct.
    """
    return read_rows(path, lambda v, line: _parse_gsm8k(v, line, include_reference),
                     skip_invalid=skip_invalid, max_line_chars=max_line_chars, expand=True)


READERS = {
    "labelled": read_labelled_pairs,
    "unlabelled": read_unlabelled_pairs,
    "hh_rlhf": read_hh_rlhf,
    "llmbar": read_llmbar,
    "pandalm": read_pandalm,
    "gsm8k": read_gsm8k_pairs,
}


def read_source(source: str, path: Path, **kwargs: Any) -> tuple[list, ReadReport]:
    """Dispatches to the reader for ``source`` (a key of READERS)."""
    if source not in READERS:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(READERS)}")
    return READERS[source](path, **kwargs)
