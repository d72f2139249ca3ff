"""The `prover` rationale source: a preference-proving model with proof selection.

As in the AAAI paper (method.md (a) steps 3 and 5), rationales for pseudo-labelled
pairs come from a separate model π_ψ trained on the seed set to explain a GIVEN
label: its prompt is the judge's data block plus the label, its target the full
judgment (rationale + that verdict). Here the "reversible transform" between the
proof and the judge target is the identity: the prover writes judge-format text.

For each kept pair with pseudo-label l, π_ψ samples k candidate proofs z; those
whose own verdict is not l are discarded; the rest are scored by

    Score(z) = −log π_ψ(z | s, l) / log π_ψ(z)

(our reading of Eq. 5, range (−∞, 0], higher is better): likely given the pair and
the label, unlikely unconditionally — which penalizes generic, templated text.
Both log-probabilities are sums over z's tokens; π_ψ(z) is scored after BOS alone.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gramr2_jax.data import judge_format
from gramr2_jax.data.batching import sft_encoder
from gramr2_jax.data.prompts import JudgePromptBuilder
from gramr2_jax.selftrain import stages

PROVER_TEMPLATE = "Explain why Response {label} is better.\n\n{data}\n"


def _builders(config, tokenizer) -> dict[str, JudgePromptBuilder]:
    return {v: JudgePromptBuilder(tokenizer, template=PROVER_TEMPLATE.replace("{label}", v),
                                  max_prompt_len=config.judge.max_prompt_len)
            for v in judge_format.VERDICTS}


def train_prover(config, base_dir: pathlib.Path, seed_rows: list[dict[str, Any]],
                 out_dir: pathlib.Path, tokenizer) -> pathlib.Path:
    """π_ψ: SFT of the base LM on (pair + label → judgment) over the seed set."""
    encoders = {v: sft_encoder(b, config.judge.max_len) for v, b in _builders(config, tokenizer).items()}
    examples = [stages.to_judge_example(r) for r in seed_rows]
    return stages.run_training(
        stages.train_config(config, config.stage1, len(examples)), base_dir, examples,
        lambda ex: encoders[ex.verdict](ex), out_dir, tokenizer=tokenizer,
        batch_size=config.stage1.batch_size, seed=config.seed, max_len=config.judge.max_len)


def proof_scores(logp_conditional: np.ndarray, logp_unconditional: np.ndarray) -> np.ndarray:
    """−log π(z|s,l) / log π(z): in (−∞, 0] for log-probabilities < 0; higher is better."""
    return -logp_conditional / np.minimum(logp_unconditional, -1e-9)


def _score_after_bos(sampler, bos_id: int, conts: list[list[int]], chunk: int) -> np.ndarray:
    """log π(z) of each continuation after BOS alone, scored shortest first in chunks of
    `chunk` rows: a chunk pads to its own longest row, not to the longest of all (and
    the last chunk's rows to the sampler's batch_bucket)."""
    order = sorted(range(len(conts)), key=lambda i: len(conts[i]))
    out = np.zeros(len(conts))
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        out[part] = sampler.score([[bos_id]] * len(part), [conts[i] for i in part]).total
    return out


def prove(config, prover_dir: pathlib.Path, rows: list[dict[str, Any]], *, num_candidates: int,
          seed: int, coherence: Callable[[str, str, str], Sequence[str]] | None = None
          ) -> tuple[list[dict[str, Any]], int]:
    """Replaces each row's rationale by the best proof of its verdict; drops rows with none.

    coherence: (row id, proof, label) -> problems; when given, a proof must also pass it
    (the rationale filter's coherence rule, applied to the candidate proofs).

    Works through `config.judge.batch_size` rows per sampler call (all kept pairs × k
    candidates at once needed 23 GB on the demo); random keys are per row index, so
    the proofs do not depend on the batch size.
    Returns (rows with proofs, number dropped because no candidate concluded with the label
    or passed the coherence rule).
    """
    from gramr2_jax import sharding
    from gramr2_jax.models import from_pretrained, load_tokenizer
    from gramr2_jax.sampling import Sampler
    from gramr2_jax.sampling.methods import make_method

    if not rows:
        return [], 0
    tokenizer = load_tokenizer(prover_dir)
    mesh = sharding.local_mesh()
    # Each round's last chunk is padded to a power of two (dummy rows, dropped from the
    # results), so its remainder does not compile a shape of its own.
    sampler = Sampler(from_pretrained(prover_dir, mesh=mesh), tokenizer, mesh=mesh,
                      batch_bucket=config.judge.batch_size)
    builders = _builders(config, tokenizer)
    size = config.judge.batch_size
    parts = [list(range(start, min(start + size, len(rows))))
             for start in range(0, len(rows), size)]

    def prompts_of(part):
        return [builders[rows[p]["verdict"]].encode_prompt(
            rows[p]["prompt"], rows[p]["response_a"], rows[p]["response_b"]) for p in part]

    options = dict(max_new_tokens=config.judge.max_new_tokens, num_samples=num_candidates,
                   method=make_method(config.selftrain.temperature, None, None),
                   return_logprobs=True)
    # The later calls' new shapes compile in the background while the first run.
    sampler.compile_ahead((prompts_of(part) for part in parts[1:]), **options)
    best: dict[int, tuple[float, str]] = {}
    for part in parts:
        out = sampler.generate(prompts_of(part), seed=seed, prompt_ids=part, **options)
        conts = [out.tokens[i, :out.lengths[i]].tolist() for i in range(len(out.tokens))]
        # log π(z | s, l): the raw log p of each sampled token, recorded while sampling
        # (0 after a row's end), so the k candidates need no second pass over the prompt.
        conditional = out.logprobs.sum(axis=1)
        unconditional = _score_after_bos(sampler, tokenizer.bos_token_id, conts,
                                         config.judge.batch_size)
        scores = proof_scores(conditional, unconditional)
        for i, (local, text) in enumerate(zip(out.prompt_index, out.texts)):
            p = part[local]
            judgment = judge_format.parse_judgment(text)
            if judgment.verdict != rows[p]["verdict"] or not judgment.rationale:
                continue  # a proof must conclude with the label it was asked to prove
            if coherence is not None and coherence(rows[p]["id"], judgment.rationale,
                                                   rows[p]["verdict"]):
                continue
            if p not in best or scores[i] > best[p][0]:
                best[p] = (float(scores[i]), judgment.rationale)
    proved = [dict(rows[p], rationale=best[p][1], proof_score=best[p][0]) for p in sorted(best)]
    return proved, len(rows) - len(proved)
