"""Token ids for the judge: prompts, SFT examples, verdict tokens, order balancing.

Untrusted text. Prompts and responses are user data: a special token written inside
them (e.g. "<|im_end|>") must stay plain text. The prompt is laid out with
placeholder slots; the template and chat-template text around them is tokenized
normally (its control tokens are real), and each slot's content is tokenized with
``split_special_tokens=True``. Slots are tokenized separately, so token merges never
cross a slot boundary (the same at training and at inference).

Truncation policy (``max_prompt_len``). The template, chat markup and verdict part
are never cut. The two responses are shortened evenly at the token level, keeping
their beginnings (the longer one is cut first, down to equal length). Only if both
are already down to ``min_response_tokens`` is the user prompt cut too, keeping its
end (the latest turn of a dialogue). `PromptStats` counts truncations.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import numpy as np

from gramr2_jax.data import judge_format as jf
from gramr2_jax.data.schema import JudgeExample, LabelledPair

# Private-use characters: never produced by tokenizers' normalizers, never in templates.
_SLOT = "\ue000{}\ue001"
_SLOT_RE = re.compile("\ue000(\\w+)\ue001")


def _encode_untrusted(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids)


def _encode_trusted(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []


def _bos_prefix(tokenizer: Any) -> list[int]:
    """The ids a tokenizer puts before text by itself (e.g. Llama's BOS; none for GPT-2)."""
    with_special = list(tokenizer("x", add_special_tokens=True).input_ids)
    plain = list(tokenizer("x", add_special_tokens=False).input_ids)
    n = len(with_special) - len(plain)
    return with_special[:n] if n > 0 and with_special[n:n + len(plain)] == plain else []


class SlotTemplate:
    """Text with named slots, pre-tokenized around the slots."""

    def __init__(self, tokenizer: Any, text: str, prefix_ids: Sequence[int] = ()):
        parts = _SLOT_RE.split(text)  # trusted, slot, trusted, slot, ..., trusted
        self.slots = parts[1::2]
        if len(set(self.slots)) != len(self.slots):
            raise ValueError(f"template repeats a slot: {self.slots}")
        self.trusted_ids = [_encode_trusted(tokenizer, p) for p in parts[0::2]]
        self.trusted_ids[0] = list(prefix_ids) + self.trusted_ids[0]
        self.num_fixed = sum(map(len, self.trusted_ids))

    def join(self, slot_ids: dict[str, list[int]]) -> list[int]:
        ids = list(self.trusted_ids[0])
        for slot, trusted in zip(self.slots, self.trusted_ids[1:]):
            ids += slot_ids[slot] + trusted
        return ids


def make_slot_template(tokenizer: Any, messages_or_text: list[dict] | str,
                       use_chat_template: bool | None = None) -> SlotTemplate:
    """Chat template (one conversation, generation prompt if it ends with a user turn)
    when the tokenizer has one (or ``use_chat_template``), else plain text with BOS."""
    if use_chat_template is None:
        use_chat_template = getattr(tokenizer, "chat_template", None) is not None
    if isinstance(messages_or_text, str):
        messages = [{"role": "user", "content": messages_or_text}]
    else:
        messages = messages_or_text
    if use_chat_template:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=messages[-1]["role"] == "user"
        )
        return SlotTemplate(tokenizer, text)
    text = "\n\n".join(m["content"] for m in messages)
    return SlotTemplate(tokenizer, text, prefix_ids=_bos_prefix(tokenizer))


@dataclasses.dataclass
class PromptStats:
    num_prompts: int = 0
    num_truncated: int = 0  # prompts where any response or the user prompt was cut
    num_tokens_removed: int = 0
    num_dropped: int = 0  # SFT examples whose target alone did not fit


def fit_evenly(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Kept lengths of two texts within budget: cut the longer first, then both equally."""
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if 2 * short <= budget:
        return (len_a, budget - len_a) if len_a == short else (budget - len_b, len_b)
    return budget - budget // 2, budget // 2


def check_verdict_tokens(tokenizer: Any) -> tuple[int, int]:
    """(id of "A", id of "B") as they appear after "<answer>\\n"; ValueError if either
    verdict is not a single token there, or both share one id."""
    head = f"{jf.ANSWER_OPEN}\n"
    head_ids = _encode_untrusted(tokenizer, head)
    ids = []
    for verdict in jf.VERDICTS:
        alone = _encode_untrusted(tokenizer, verdict)
        in_context = _encode_untrusted(tokenizer, head + verdict)
        if len(alone) != 1 or in_context != head_ids + alone:
            raise ValueError(
                f"verdict {verdict!r} is not a single token after {head!r} for this "
                f"tokenizer (alone: {alone}, in context: {in_context[len(head_ids):]}); "
                "the judge needs one token per verdict"
            )
        ids.append(alone[0])
    if ids[0] == ids[1]:
        raise ValueError(f"verdicts {jf.VERDICTS} map to the same token id {ids[0]}")
    return ids[0], ids[1]


@dataclasses.dataclass(frozen=True)
class SFTExample:
    """prompt_ids then target_ids; the loss is on target tokens only."""

    prompt_ids: np.ndarray  # int32 [P]
    target_ids: np.ndarray  # int32 [T]: judgment tokens + end token
    label: int  # 0 = A, 1 = B
    verdict_index: int  # index into target_ids of the verdict token

    @property
    def tokens(self) -> np.ndarray:
        return np.concatenate([self.prompt_ids, self.target_ids])

    @property
    def loss_mask(self) -> np.ndarray:
        return np.concatenate([np.zeros(len(self.prompt_ids), bool), np.ones(len(self.target_ids), bool)])


class JudgePromptBuilder:
    """Builds judge prompt ids and SFT examples for one tokenizer and template."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        template: str = "gram_r2",
        max_prompt_len: int | None = None,
        min_response_tokens: int = 16,
        use_chat_template: bool | None = None,
        end_token_id: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.max_prompt_len = max_prompt_len
        self.min_response_tokens = min_response_tokens
        self.stats = PromptStats()
        filled = jf.format_judge_prompt(_SLOT.format("prompt"), _SLOT.format("response_a"),
                                        _SLOT.format("response_b"), template)
        self.template = make_slot_template(tokenizer, filled, use_chat_template)
        if sorted(self.template.slots) != ["prompt", "response_a", "response_b"]:
            raise ValueError(f"template must hold each of prompt/response_a/response_b once, got {self.template.slots}")
        self.end_token_id = tokenizer.eos_token_id if end_token_id is None else end_token_id
        if self.end_token_id is None:
            raise ValueError("tokenizer has no eos_token_id; pass end_token_id")
        self.verdict_ids = check_verdict_tokens(tokenizer)

    def encode_prompt(self, prompt: str, response_a: str, response_b: str,
                      max_len: int | None = None) -> list[int]:
        """Token ids of the judge prompt, truncated per the module's policy."""
        max_len = self.max_prompt_len if max_len is None else max_len
        slot_ids = {"prompt": _encode_untrusted(self.tokenizer, prompt),
                    "response_a": _encode_untrusted(self.tokenizer, response_a),
                    "response_b": _encode_untrusted(self.tokenizer, response_b)}
        self.stats.num_prompts += 1
        if max_len is not None:
            self._truncate(slot_ids, max_len)
        return self.template.join(slot_ids)

    def _truncate(self, slot_ids: dict[str, list[int]], max_len: int) -> None:
        budget = max_len - self.template.num_fixed
        if budget < 0:
            raise ValueError(f"max_prompt_len={max_len} is shorter than the template "
                             f"({self.template.num_fixed} tokens)")
        p, a, b = slot_ids["prompt"], slot_ids["response_a"], slot_ids["response_b"]
        total = len(p) + len(a) + len(b)
        if total <= budget:
            return
        floor = min(len(a), self.min_response_tokens) + min(len(b), self.min_response_tokens)
        keep_p = min(len(p), max(budget - floor, budget - len(a) - len(b), 0))
        keep_a, keep_b = fit_evenly(len(a), len(b), budget - keep_p)
        slot_ids["prompt"] = p[len(p) - keep_p:]
        slot_ids["response_a"], slot_ids["response_b"] = a[:keep_a], b[:keep_b]
        self.stats.num_truncated += 1
        self.stats.num_tokens_removed += total - keep_p - keep_a - keep_b

    def encode_target(self, rationale: str, verdict: str) -> tuple[list[int], int]:
        """format_judgment(rationale, verdict) + end token, and the verdict's index.

        Tokenized in three pieces around the verdict so the verdict is always the
        single token that `check_verdict_tokens` found."""
        text = jf.format_judgment(rationale, verdict)
        at = text.rindex(f"{jf.ANSWER_OPEN}\n") + len(jf.ANSWER_OPEN) + 1
        head = _encode_untrusted(self.tokenizer, text[:at])
        tail = _encode_untrusted(self.tokenizer, text[at + len(verdict):])
        verdict_id = self.verdict_ids[jf.VERDICTS.index(verdict)]
        return head + [verdict_id] + tail + [self.end_token_id], len(head)

    def sft_example(self, example: JudgeExample, max_len: int | None = None) -> SFTExample | None:
        """Prompt + target fitted into max_len (responses shortened first); None (counted
        in stats.num_dropped) if the target and template alone do not fit."""
        if example.rationale is None:
            raise ValueError(f"example {example.id!r} has no rationale; SFT needs one")
        target, verdict_index = self.encode_target(example.rationale, example.verdict)
        prompt_limit = self.max_prompt_len
        if max_len is not None:
            room = max_len - len(target)
            if room < self.template.num_fixed:
                self.stats.num_dropped += 1
                return None
            prompt_limit = room if prompt_limit is None else min(prompt_limit, room)
        prompt = self.encode_prompt(example.prompt, example.response_a, example.response_b, prompt_limit)
        return SFTExample(np.asarray(prompt, np.int32), np.asarray(target, np.int32),
                          example.label, verdict_index)


_NAME_RE = re.compile(r"\b(Response|Assistant|Answer|Output) ([AB])\b")


def swap_response_names(text: str) -> str:
    """'Response A' <-> 'Response B' (also Assistant/Answer/Output A|B)."""
    return _NAME_RE.sub(lambda m: f"{m.group(1)} {'B' if m.group(2) == 'A' else 'A'}", text)


def balance_order(pairs: Sequence[LabelledPair], seed: int,
                  rationale_chosen_as: str = "A") -> list[JudgeExample]:
    """Labelled pairs -> judge examples with chosen shown as A in exactly half of them
    (which half is a seeded permutation). Rationales are taken to name the chosen
    response ``rationale_chosen_as``; names are swapped when the order differs."""
    chosen_at_b = np.zeros(len(pairs), bool)
    chosen_at_b[: len(pairs) // 2] = True
    chosen_at_b = np.random.default_rng(seed).permutation(chosen_at_b)
    examples = []
    for pair, at_b in zip(pairs, chosen_at_b):
        rationale = pair.rationale
        if rationale is not None and ("B" if at_b else "A") != rationale_chosen_as:
            rationale = swap_response_names(rationale)
        a, b = (pair.rejected, pair.chosen) if at_b else (pair.chosen, pair.rejected)
        examples.append(JudgeExample(pair.prompt, a, b, label=int(at_b), rationale=rationale,
                                     category=pair.category, id=pair.id))
    return examples


class PairSequenceBuilder:
    """Bradley-Terry inputs: (prompt, response) as a user + assistant conversation
    (chat template) or "prompt\\n\\nresponse" (plain, with BOS), ending with EOS so
    the reward is read at the last real token. Truncation: the response's end, then
    the prompt's beginning."""

    def __init__(self, tokenizer: Any, *, max_len: int, use_chat_template: bool | None = None):
        self.tokenizer, self.max_len = tokenizer, max_len
        messages = [{"role": "user", "content": _SLOT.format("prompt")},
                    {"role": "assistant", "content": _SLOT.format("response")}]
        self.template = make_slot_template(tokenizer, messages, use_chat_template)
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.num_truncated = 0

    def encode(self, prompt: str, response: str) -> list[int]:
        p, r = _encode_untrusted(self.tokenizer, prompt), _encode_untrusted(self.tokenizer, response)
        budget = self.max_len - self.template.num_fixed - len(self.eos)
        if budget < 2:
            raise ValueError(f"max_len={self.max_len} leaves no room after the template")
        if len(p) + len(r) > budget:
            self.num_truncated += 1
            keep_p = min(len(p), max(budget // 2, budget - len(r)))
            p, r = p[len(p) - keep_p:], r[: budget - keep_p]
        return self.template.join({"prompt": p, "response": r}) + self.eos
