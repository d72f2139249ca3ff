"""The pairwise judge (SPEC §3, §6): sampled judgments, voting, rewards, ranking; and its CLI.

    python -m gramr2_jax.judge --model=DIR --input=IN.jsonl --output=OUT.jsonl \
        [--num_samples=K] [--swap] [--skip_invalid] [--batch_size=N] [--seed=S]

Frames. A pair (prompt, A, B) is shown to the model as (A, B) and, with swap, as
(B, A). `Sample.verdict` / `Sample.p_first` are in the order the model SAW;
`Comparison` fields are in the ORIGINAL frame (a swapped "A" is a vote for B).

Rules used by `compare`:
- votes: every sample of both orders, mapped to the original frame; abstains
  (no parseable verdict) are counted under None and never vote.
- verdict: the majority of the A/B votes. A tie is broken by the side of 0.5 that
  p_a lies on (> 0.5 → A, < 0.5 → B), decided exactly from the samples' log-odds
  (sampling.verdict.mean_prob_side), so probabilities that round to 0 or 1 still
  decide; with p_a unknown or exactly 0.5 the verdict is None.
- p_a: mean over samples of both orders of p(original A ≻ B) read at the
  verdict position; samples without one are left out (None if none is left). Its side
  of 0.5 is the exact one above (sampling.verdict.mean_prob): a mean that rounds to 0.5
  off it reads as the double next to 0.5 on that side, so rankings, which order a pair
  by p_a, agree with the tie rule.
- position_flip: the majority of the original-order samples differs from the
  majority of the swapped-order samples (None without swap, or when either
  order has no majority).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import tempfile
import threading
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gramr2_jax import models
from gramr2_jax.data import judge_format as jf, schema
from gramr2_jax.data.errors import ReadReport
from gramr2_jax.data.jsonl import read_rows
from gramr2_jax.data.prompts import JudgePromptBuilder, check_verdict_tokens, swap_response_names
from gramr2_jax.data.schema import UnlabelledPair
from gramr2_jax.downstream import ranking
from gramr2_jax.sampling import (
    Greedy,
    Method,
    Sampler,
    Verdict,
    make_method,
    verdict as verdict_lib,
)

JUDGE_CONFIG = "gramr2_judge.json"
JUDGE_CONFIG_KEYS = ("template", "max_prompt_len", "max_new_tokens", "temperature", "top_p")
_OTHER = {"A": "B", "B": "A"}
# Judge method names → downstream.ranking methods, for full rankings and for best-of-n.
_RANK_METHODS = {"linear": "linear_full", "knockout": "knockout", "round_robin": "round_robin_bt"}
_BEST_METHODS = {"linear": "linear", "knockout": "knockout", "round_robin": "round_robin_bt"}


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated judgment, in the order the model saw the pair."""

    text: str  # generated text only (stop token excluded)
    verdict: str | None  # "A" | "B" | None (abstain), parsed with judge_format
    p_first: float  # p(first-listed response better) at the verdict position; NaN if none
    num_tokens: int  # generated tokens, stop token included
    # log p(first) / p(second) there, which does not round off as p_first does; NaN if none
    log_odds_first: float = math.nan


@dataclasses.dataclass(frozen=True)
class PairJudgments:
    original: tuple[Sample, ...]  # k samples with the pair shown as (A, B)
    swapped: tuple[Sample, ...] = ()  # k samples shown as (B, A); empty without swap


@dataclasses.dataclass(frozen=True)
class Comparison:
    verdict: str | None  # original frame; see the module docstring for the rules
    p_a: float | None
    votes: dict[str | None, int]  # {"A": n, "B": n, None: abstains}
    rationale: str | None  # of a sample agreeing with the verdict, letters in the original frame
    position_flip: bool | None
    order_verdicts: tuple[str | None, str | None]  # majority per order, original frame


def _majority(verdicts: Sequence[str | None]) -> str | None:
    return verdict_lib.vote(verdicts, ())  # a tie stays None


def _frame(verdict: str | None, swapped: bool) -> str | None:
    return _OTHER[verdict] if swapped and verdict is not None else verdict


def _p_original_a(sample: Sample, swapped: bool) -> float:
    return 1.0 - sample.p_first if swapped else sample.p_first


def _log_odds_original_a(sample: Sample, swapped: bool) -> float:
    x = sample.log_odds_first
    if math.isnan(x):  # a sample given p only (a scripted one)
        x = verdict_lib.log_odds(sample.p_first)
    return -x if swapped else x


def _rationale(agreeing: list[tuple[Sample, bool]], verdict: str) -> str:
    """The rationale of an original-order sample if any (its letters need no renaming), the
    one most confident in the verdict; a swapped sample's letters are renamed."""
    def preference(item: tuple[Sample, bool]) -> tuple[bool, float]:
        p = _p_original_a(*item)
        return item[1], -(-1.0 if math.isnan(p) else p if verdict == "A" else 1.0 - p)

    sample, swapped = min(agreeing, key=preference)
    judgment = jf.parse_judgment(sample.text)
    text = judgment.rationale or sample.text.split(jf.ANSWER_OPEN)[0].strip()
    return swap_response_names(text) if swapped else text


def combine(pair: PairJudgments) -> Comparison:
    """Votes, p_a, verdict and rationale of one pair's samples (rules: module docstring)."""
    tagged = [(s, False) for s in pair.original] + [(s, True) for s in pair.swapped]
    verdicts = [_frame(s.verdict, swapped) for s, swapped in tagged]
    votes = {v: verdicts.count(v) for v in ("A", "B", None)}
    probs = [p for p in (_p_original_a(s, swapped) for s, swapped in tagged) if not math.isnan(p)]
    log_odds = [x for x in (_log_odds_original_a(s, swapped) for s, swapped in tagged)
                if not math.isnan(x)]
    p_a = verdict_lib.mean_prob(probs, log_odds) if probs else None
    verdict = verdict_lib.vote(verdicts, log_odds)
    order_verdicts = (_majority(verdicts[:len(pair.original)]),
                      _majority(verdicts[len(pair.original):]))
    flip = None
    if pair.swapped and None not in order_verdicts:
        flip = order_verdicts[0] != order_verdicts[1]
    rationale = None
    if verdict is not None:
        rationale = _rationale([t for t, v in zip(tagged, verdicts) if v == verdict], verdict)
    return Comparison(verdict, p_a, votes, rationale, flip, order_verdicts)


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes a file so readers never see it half-written (tmp file + rename)."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_judge_config(path: str | os.PathLike, **settings) -> None:
    """Writes the judge defaults (JUDGE_CONFIG_KEYS) next to an exported model."""
    unknown = sorted(set(settings) - set(JUDGE_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"write_judge_config: unknown settings {unknown}; "
                         f"known: {list(JUDGE_CONFIG_KEYS)}")
    write_atomic(pathlib.Path(path) / JUDGE_CONFIG, json.dumps(settings, indent=2) + "\n")


def read_judge_config(path: str | os.PathLike) -> dict:
    """The settings in DIR/gramr2_judge.json, or {} when the file is absent."""
    file = pathlib.Path(path) / JUDGE_CONFIG
    if not file.exists():
        return {}
    settings = json.loads(file.read_text())
    if not isinstance(settings, dict):
        raise ValueError(f"{file}: expected a JSON object")
    unknown = sorted(set(settings) - set(JUDGE_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{file}: unknown settings {unknown}; known: {list(JUDGE_CONFIG_KEYS)}")
    return settings


def _check_columns(**columns: Sequence[str]) -> int:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns have different lengths: {lengths}")
    return next(iter(lengths.values()))


def _check_batch_size(value: int) -> None:
    """The judge's own error (the Sampler's would name batch_bucket, a field the caller never set)."""
    if value < 1:
        raise ValueError(f"batch_size: must be >= 1, got {value}")


class Judge:
    """A generative pairwise judge over a Flax NNX model and its tokenizer.

    batch_size: judge prompts per sampler call (each with its k samples). Prompts are
    sorted by length before batching and the prompt count of a call is padded to a
    power of two, so few shapes compile. Random keys are per (pair index, order):
    results do not depend on batch_size.
    max_prompt_len: None = the model's max positions minus max_new_tokens; longer
    prompts are truncated by JudgePromptBuilder (responses first).
    temperature / top_p: the default sampling (0.75 is the released GRAM-R² vLLM setting).
    default_reference: used by `reward` when no references are given.
    """

    def __init__(self, model, tokenizer, *, template: str = "gram_r2",
                 max_prompt_len: int | None = None, max_new_tokens: int = 1024,
                 temperature: float = 0.75, top_p: float | None = None, batch_size: int = 16,
                 mesh: jax.sharding.Mesh | None = None, default_reference: str | None = None,
                 use_chat_template: bool | None = None):
        positions = model.config.max_position_embeddings
        if max_prompt_len is None:
            max_prompt_len = positions - max_new_tokens
        if max_prompt_len + max_new_tokens > positions:
            raise ValueError(f"max_prompt_len ({max_prompt_len}) + max_new_tokens "
                             f"({max_new_tokens}) exceed the model's {positions} positions")
        _check_batch_size(batch_size)  # before the sampler places the weights
        self.tokenizer = tokenizer
        self.verdict_ids = check_verdict_tokens(tokenizer)
        self.builder = JudgePromptBuilder(tokenizer, template=template,
                                          max_prompt_len=max_prompt_len,
                                          use_chat_template=use_chat_template)
        self.max_new_tokens = max_new_tokens
        self.method = make_method(temperature, None, top_p)
        self.default_reference = default_reference
        # Pads each call's prompts to a power of two up to batch_size (and to the mesh).
        self.sampler = Sampler(model, tokenizer, mesh=mesh, batch_bucket=batch_size)
        self.verdict = Verdict(self._verdict_trigger(), self.verdict_ids)

    @property
    def batch_size(self) -> int:
        """Prompts per sampler call: the sampler's batch_bucket, so the two never part."""
        return self.sampler.batch_bucket

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        _check_batch_size(value)
        self.sampler.batch_bucket = value

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, dtype=jnp.float32,
                        mesh: jax.sharding.Mesh | None = None, **overrides) -> "Judge":
        """Loads an HF model dir; its gramr2_judge.json gives defaults that overrides beat."""
        settings = {**read_judge_config(path), **overrides}
        model = models.from_pretrained(path, dtype=dtype, mesh=mesh)
        return cls(model, models.load_tokenizer(path), mesh=mesh, **settings)

    def _verdict_trigger(self) -> tuple[int, ...]:
        """The shortest tail of a training target's ids before the verdict that holds
        "<answer>": exactly the ids a model trained on those targets emits there."""
        target, verdict_index = self.builder.encode_target("x", "A")
        head = target[:verdict_index]
        for n in range(1, len(head) + 1):
            if jf.ANSWER_OPEN in self.tokenizer.decode(head[-n:]):
                return tuple(head[-n:])
        raise ValueError("the judge target has no <answer> tag before the verdict")

    # ------------------------------------------------------------------ sampling

    def _method(self, temperature: float | None, greedy: bool, num_samples: int) -> Method:
        if num_samples < 1:
            raise ValueError(f"num_samples: must be >= 1, got {num_samples}")
        if greedy:
            if num_samples > 1:
                raise ValueError("greedy judgments are identical; use num_samples=1")
            return Greedy()
        if temperature is None:
            return self.method
        return make_method(temperature, None, getattr(self.method, "top_p", None))

    def _sample_rows(self, prompt_ids: list[list[int]], keys: list[int], *, num_samples: int,
                     seed: int, method: Method
                     ) -> list[list[tuple[str, float, int] | tuple[str, float, int, float]]]:
        """Per prompt, k (generated text, p_first, num_tokens, log_odds_first): one sampler
        call, the k samples sharing one prefill (the sampler pads the call to its
        batch_bucket). Tests replace this with a scripted fake, which may leave out
        log_odds_first."""
        num = len(prompt_ids)
        out = self.sampler.generate(
            prompt_ids, max_new_tokens=self.max_new_tokens, method=method,
            num_samples=num_samples, seed=seed, prompt_ids=keys, verdict=self.verdict,
            return_logprobs=False)
        p_first = out.verdict_probs[:, 0]
        log_odds = out.verdict_logprobs[:, 0] - out.verdict_logprobs[:, 1]
        return [[(out.texts[r], float(p_first[r]), int(out.lengths[r]), float(log_odds[r]))
                 for r in range(i * num_samples, (i + 1) * num_samples)] for i in range(num)]

    def _compile_ahead(self, chunks: Iterable[list[list[int]]], *, num_samples: int,
                       method: Method) -> threading.Thread | None:
        """Starts compiling, in the background, what `_sample_rows` will need for these
        chunks of prompt ids (Sampler.compile_ahead); returns the thread. Tests that
        script `_sample_rows` replace this too."""
        return self.sampler.compile_ahead(chunks, max_new_tokens=self.max_new_tokens,
                                          method=method, num_samples=num_samples,
                                          verdict=self.verdict, return_logprobs=False)

    def compile_ahead(self, calls: Iterable[tuple[Sequence[str], Sequence[str], Sequence[str]]],
                      *, num_samples: int = 1, swap: bool = True,
                      temperature: float | None = None, greedy: bool = False
                      ) -> threading.Thread | None:
        """Compiles, in the background, what `sample_judgments` calls on these (prompts,
        responses_a, responses_b) will need, in order, e.g. a labelling loop's next
        shards; returns the thread (None with several JAX processes). The prompts are
        built in the background thread too. Results do not change; a call that comes
        before its compile compiles as usual."""
        method = self._method(temperature, greedy, num_samples)

        def chunks():
            for prompts, responses_a, responses_b in calls:
                _, prompt_ids, call_chunks = self._chunks(prompts, responses_a, responses_b,
                                                          swap)
                for chunk in call_chunks:
                    yield [prompt_ids[r] for r in chunk]

        return self._compile_ahead(chunks(), num_samples=num_samples, method=method)

    def _chunks(self, prompts: Sequence[str], responses_a: Sequence[str],
                responses_b: Sequence[str], swap: bool
                ) -> tuple[list[tuple[int, bool]], list[list[int]], list[list[int]]]:
        """Rows (pair index, swapped), their prompt ids, and the rows of each sampler call:
        sorted by prompt length, batch_size prompts per call."""
        num = _check_columns(prompts=prompts, responses_a=responses_a, responses_b=responses_b)
        orders = (False, True) if swap else (False,)
        rows = [(i, swapped) for i in range(num) for swapped in orders]
        prompt_ids = []
        for i, swapped in rows:
            a, b = responses_a[i], responses_b[i]
            shown = (b, a) if swapped else (a, b)
            prompt_ids.append(self.builder.encode_prompt(prompts[i], *shown))
        order = sorted(range(len(rows)), key=lambda r: len(prompt_ids[r]))
        chunks = [order[start:start + self.batch_size]
                  for start in range(0, len(order), self.batch_size)]
        return rows, prompt_ids, chunks

    def sample_judgments(self, prompts: Sequence[str], responses_a: Sequence[str],
                         responses_b: Sequence[str], *, num_samples: int = 1, swap: bool = True,
                         seed: int = 0, temperature: float | None = None, greedy: bool = False,
                         progress: Callable[[int], None] | None = None) -> list[PairJudgments]:
        """k judgments per pair in the presented order and, with swap, k in the swapped one.

        All rows go through as few sampler calls as batch_size allows. Deterministic given
        seed. progress(n) is called after each sampler call with the prompts it judged.
        """
        method = self._method(temperature, greedy, num_samples)
        rows, prompt_ids, chunks = self._chunks(prompts, responses_a, responses_b, swap)
        chunk_ids = [[prompt_ids[r] for r in chunk] for chunk in chunks]
        # The later calls' new shapes compile in the background while the first run.
        self._compile_ahead(chunk_ids[1:], num_samples=num_samples, method=method)
        samples: list[tuple[Sample, ...]] = [()] * len(rows)
        for chunk, ids in zip(chunks, chunk_ids):
            keys = [2 * rows[r][0] + rows[r][1] for r in chunk]
            outputs = self._sample_rows(ids, keys, num_samples=num_samples, seed=seed,
                                        method=method)
            for r, row_out in zip(chunk, outputs):
                samples[r] = tuple(self._sample(*o) for o in row_out)
            if progress is not None:
                progress(len(chunk))
        per_pair = 2 if swap else 1
        return [PairJudgments(*samples[i * per_pair:(i + 1) * per_pair])
                for i in range(len(prompts))]

    @staticmethod
    def _sample(text: str, p_first: float, num_tokens: int,
                log_odds_first: float = math.nan) -> Sample:
        # The sampler records p at the FIRST "<answer>"; the parser reads the LAST one.
        # With several, the recorded p may belong to another verdict, so drop it.
        if text.count(jf.ANSWER_OPEN) > 1:
            p_first = log_odds_first = math.nan
        return Sample(text, jf.parse_verdict(text), p_first, num_tokens, log_odds_first)

    # ------------------------------------------------------------------ judging

    def compare(self, prompts: Sequence[str], responses_a: Sequence[str],
                responses_b: Sequence[str], *, num_samples: int = 1, swap: bool = True,
                seed: int = 0, temperature: float | None = None, greedy: bool = False,
                progress: Callable[[int], None] | None = None) -> list[Comparison]:
        """Voted judgments per pair (rules: module docstring)."""
        pairs = self.sample_judgments(prompts, responses_a, responses_b,
                                      num_samples=num_samples, swap=swap, seed=seed,
                                      temperature=temperature, greedy=greedy, progress=progress)
        return [combine(pair) for pair in pairs]

    def compare_probs(self, prompts: Sequence[str], responses_a: Sequence[str],
                      responses_b: Sequence[str], **options) -> np.ndarray:
        """p(A ≻ B) per pair, 0.5 where unknown (no verdict position in any sample).

        The `compare_fn` of downstream.ranking and the reward server.
        """
        results = self.compare(prompts, responses_a, responses_b, **options)
        return np.array([0.5 if c.p_a is None else c.p_a for c in results], np.float64)

    def reward(self, prompts: Sequence[str], responses: Sequence[str],
               references: Sequence[str] | None = None, **options) -> np.ndarray:
        """p(response ≻ reference) per row (a pairwise judge needs something to compare to)."""
        if references is None:
            if self.default_reference is None:
                raise ValueError("reward: a pairwise judge needs references (or a Judge "
                                 "default_reference); none were given")
            references = [self.default_reference] * len(responses)
        return self.compare_probs(prompts, responses, references, **options)

    def score(self, prompt: str, response: str, reference: str, **options) -> float:
        return float(self.reward([prompt], [response], [reference], **options)[0])

    def rank(self, prompt: str, responses: Sequence[str], method: str = "linear",
             **options) -> ranking.Ranking:
        """Full ranking of responses (method: linear | knockout | round_robin)."""
        return self._rank(prompt, responses, _RANK_METHODS, method, options)

    def best_of_n(self, prompt: str, responses: Sequence[str], method: str = "linear",
                  **options) -> int:
        """Index of the best response (linear: n−1 comparisons; knockout; round_robin)."""
        return self._rank(prompt, responses, _BEST_METHODS, method, options).best

    def _rank(self, prompt, responses, methods, method, options) -> ranking.Ranking:
        if method not in methods:
            raise ValueError(f"unknown method {method!r}; choose from {sorted(methods)}")
        compare_fn = lambda p, a, b: self.compare_probs(p, a, b, **options)  # noqa: E731
        return ranking.rank(compare_fn, prompt, responses, method=methods[method])


# ---------------------------------------------------------------------- CLI library

def read_pairs(path: str | os.PathLike, *, skip_invalid: bool = False
               ) -> tuple[list[tuple[int, UnlabelledPair]], ReadReport]:
    """The CLI input with read_unlabelled_pairs' validation, each pair with its 0-based row
    index (the default output id, so rows stay traceable when invalid ones are skipped)."""
    return read_rows(path, lambda value, line: (line - 1, schema.parse_unlabelled_pair(value)),
                     id_of=lambda row: row[1].id, skip_invalid=skip_invalid)


def judge_pairs_to_file(judge: Judge, rows: Sequence[tuple[int, UnlabelledPair]],
                        output_path: str | os.PathLike, *, num_samples: int = 1,
                        swap: bool = True, seed: int = 0, greedy: bool = False,
                        show_progress: bool = True) -> None:
    """Judges (row index, pair) rows into a JSONL of SPEC §6 output rows, in input order,
    written atomically: {"id", "verdict", "p_a", "votes": {"A", "B", "abstain"}, "rationale"};
    the id defaults to the row index.
    """
    from tqdm import tqdm

    pairs = [pair for _, pair in rows]
    with tqdm(total=len(pairs) * (2 if swap else 1), unit="prompt", disable=not show_progress,
              desc="judging") as bar:
        results = judge.compare([p.prompt for p in pairs], [p.response_a for p in pairs],
                                [p.response_b for p in pairs], num_samples=num_samples,
                                swap=swap, seed=seed, greedy=greedy, progress=bar.update)
    lines = []
    for (index, pair), result in zip(rows, results):
        votes = {"A": result.votes["A"], "B": result.votes["B"], "abstain": result.votes[None]}
        lines.append(json.dumps({"id": pair.id if pair.id is not None else index,
                                 "verdict": result.verdict, "p_a": result.p_a, "votes": votes,
                                 "rationale": result.rationale}, ensure_ascii=False) + "\n")
    write_atomic(output_path, "".join(lines))


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("model", None, "Judge model directory (Hugging Face format).",
                        required=True)
    flags.DEFINE_string("input", None, "JSONL of {prompt, response_a, response_b, id?}.",
                        required=True)
    flags.DEFINE_string("output", None, "Output JSONL (written atomically).", required=True)
    flags.DEFINE_integer("num_samples", 1, "Sampled judgments per pair and order.")
    flags.DEFINE_bool("swap", True, "Also judge each pair with the responses swapped.")
    flags.DEFINE_bool("greedy", False, "Greedy judgments (needs --num_samples=1).")
    flags.DEFINE_bool("skip_invalid", False, "Skip and count bad rows instead of failing.")
    flags.DEFINE_integer("batch_size", None, "Judge prompts per sampler call.")
    flags.DEFINE_integer("max_new_tokens", None, "Override the model dir's judge setting.")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")


def _main(argv: list[str]) -> None:
    import sys

    from absl import app, flags

    from gramr2_jax.data.errors import exit_on_data_error

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    jax.config.update("jax_threefry_partitionable", True)
    FLAGS = flags.FLAGS
    overrides = {k: FLAGS[k].value for k in ("batch_size", "max_new_tokens")
                 if FLAGS[k].value is not None}
    with exit_on_data_error():  # bad input: `file:line: field: problem`, exit 2
        rows, report = read_pairs(FLAGS.input, skip_invalid=FLAGS.skip_invalid)
    judge = Judge.from_pretrained(FLAGS.model, **overrides)
    judge_pairs_to_file(judge, rows, FLAGS.output, num_samples=FLAGS.num_samples,
                        swap=FLAGS.swap, seed=FLAGS.seed, greedy=FLAGS.greedy)
    print(report.summary(), file=sys.stderr)
    for message in report.messages:
        print(f"  skipped: {message}", file=sys.stderr)


if __name__ == "__main__":
    from absl import app

    from gramr2_jax import hostmem

    hostmem.configure_process()  # re-executes once with glibc malloc tunables (CPU only)
    _define_flags()
    app.run(_main)
