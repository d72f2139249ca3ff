"""RLHF with the judge as reward: GRPO in JAX, and its evaluation against best-of-n.

Choice: GRPO (no value network; the group of G samples per prompt is the baseline),
with the GRAM v1 reward: the judge's p(sample ≻ greedy reference response of the
CURRENT policy), order-averaged (Judge.reward). Per update:

  1. per prompt: a greedy reference and G samples at temperature 1 (Sampler);
  2. rewards r; group-normalized advantages A = (r − mean_group) / (std_group + ε);
  3. `ppo_epochs` clipped policy-gradient steps with a k3 KL penalty to the initial
     policy (reference log-probs by teacher-forced scoring), optax AdamW; the step is
     a jitted pure function of (graphdef, params, opt_state, batch).

The policy is the stage-0 base LM after a short SFT on domain responses, so it answers
a prompt in `POLICY_TEMPLATE` with a response ending in EOS. Gold accuracy
(synthetic.parse_task(prompt).is_good) of greedy responses to held-out prompts is
measured before and after, against best-of-n (the judge picks among n samples of the
initial policy) and random-of-n. Workdir: sft/, grpo/ (export, history.json), DONE
markers; rlhf.json, rlhf.md. GRPO itself restarts from the SFT policy if interrupted.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from gramr2_jax import models, synthetic
from gramr2_jax.downstream import ranking
from gramr2_jax.sampling import Sampler
from gramr2_jax.selftrain import artifacts, stages
from gramr2_jax.training import optimizer as optimizer_lib

log = logging.getLogger(__name__)

# The response slot of the stage-0 text (judge_format.DATA_TEMPLATE), which the base LM knows.
POLICY_TEMPLATE = "[User Question]\n{prompt}\n\n[The Start of Assistant A's Response]\n"
RewardFn = Callable[[Sequence[str], Sequence[str], Sequence[str]], np.ndarray]


def policy_prompt(prompt: str) -> str:
    return POLICY_TEMPLATE.format(prompt=prompt)


# ---------------------------------------------------------------------- GRPO math


def group_advantages(rewards: np.ndarray, group_size: int, eps: float = 1e-6) -> np.ndarray:
    """(r − group mean) / (group std + eps); rows are prompt-major groups of group_size."""
    r = np.asarray(rewards, np.float64).reshape(-1, group_size)
    adv = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + eps)
    return adv.reshape(-1).astype(np.float32)


def kl_k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Per-token unbiased, non-negative estimator of KL(π ‖ π_ref) on samples of π (k3)."""
    delta = ref_logp - logp
    return jnp.exp(delta) - delta - 1.0


def grpo_loss(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array, mask: jax.Array,
              advantages: jax.Array, *, clip_eps: float, kl_coef: float
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate + kl_coef·KL per token, averaged per sequence, then over sequences."""
    ratio = jnp.exp(logp - old_logp)
    adv = advantages[:, None]
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    kl = kl_k3(logp, ref_logp)
    per_token = -surrogate + kl_coef * kl
    tokens = jnp.maximum(mask.sum(axis=1), 1.0)

    def seq_mean(x: jax.Array) -> jax.Array:
        return jnp.mean((x * mask).sum(axis=1) / tokens)

    clipped = (jnp.abs(ratio - 1) > clip_eps).astype(jnp.float32)
    return seq_mean(per_token), {"pg_loss": seq_mean(-surrogate), "kl": seq_mean(kl),
                                 "clip_frac": seq_mean(clipped)}


def token_logprobs(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array) -> jax.Array:
    """[B, T-1] log p(tokens[:, t+1] | tokens[:, :t+1]) of right-padded rows (causal, so
    padding after a row's end never changes its earlier positions)."""
    logits = nnx.merge(graphdef, params)(tokens[:, :-1])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def grpo_update(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, clip_eps: float,
                kl_coef: float, params: nnx.State, opt_state: optax.OptState,
                batch: dict[str, jax.Array]) -> tuple[nnx.State, optax.OptState, dict]:
    """One optimizer step on the GRPO loss (pure; jit with the first four args static)."""
    def loss_fn(p):
        logp = token_logprobs(graphdef, p, batch["tokens"])
        return grpo_loss(logp, batch["old_logp"], batch["ref_logp"], batch["mask"],
                         batch["advantages"], clip_eps=clip_eps, kl_coef=kl_coef)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {"loss": loss, "grad_norm": optax.global_norm(grads), **metrics}


# ---------------------------------------------------------------------- GRPO loop


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    num_updates: int = 32
    prompts_per_update: int = 16
    group_size: int = 4
    max_new_tokens: int = 48
    temperature: float = 1.0
    ppo_epochs: int = 2  # optimizer steps per sampled batch (> 1 makes the clip matter)
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    clip_eps: float = 0.2
    kl_coef: float = 0.04
    seed: int = 0


def rollout_batch(prompt_ids: list[list[int]], responses: list[np.ndarray],
                  group_size: int, bucket: int = 32) -> dict[str, np.ndarray]:
    """Right-padded prompt+response rows (length padded to a multiple of bucket, so few
    shapes compile) and the [B, T-1] mask of response-token predictions."""
    rows = [prompt_ids[i // group_size] + r.tolist() for i, r in enumerate(responses)]
    length = -(-max(len(r) for r in rows) // bucket) * bucket
    tokens = np.zeros((len(rows), length), np.int32)
    mask = np.zeros((len(rows), length - 1), np.float32)
    for i, row in enumerate(rows):
        tokens[i, :len(row)] = row
        start = len(prompt_ids[i // group_size]) - 1  # prediction of the first response token
        mask[i, start:len(row) - 1] = 1.0
    return {"tokens": tokens, "mask": mask}


def train_grpo(model: nnx.Module, tokenizer, prompts: Sequence[str], reward_fn: RewardFn,
               cfg: GRPOConfig) -> tuple[nnx.Module, list[dict[str, float]]]:
    """GRPO from `model` (also the KL reference) on task prompts; returns the policy and a
    per-update history (mean reward of the samples, loss terms)."""
    graphdef, params = nnx.split(model)
    ref_params = jax.tree.map(jnp.copy, params)
    sampler = Sampler(model, tokenizer)
    tx = optimizer_lib.make_optimizer(optax.constant_schedule(cfg.learning_rate),
                                      weight_decay=cfg.weight_decay, b1=0.9, b2=0.999,
                                      eps=1e-8, max_grad_norm=cfg.max_grad_norm)
    opt_state = tx.init(params)
    update = jax.jit(functools.partial(grpo_update, graphdef, tx, cfg.clip_eps, cfg.kl_coef))
    logprobs = jax.jit(functools.partial(token_logprobs, graphdef))
    ids = [tokenizer.encode(policy_prompt(p)) for p in prompts]
    g, history = cfg.group_size, []
    for step in range(cfg.num_updates):
        start = (step * cfg.prompts_per_update) % len(prompts)
        chosen = [(start + i) % len(prompts) for i in range(cfg.prompts_per_update)]
        batch_ids = [ids[i] for i in chosen]
        refs = sampler.generate(batch_ids, max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                                return_logprobs=False, params=params)
        out = sampler.generate(batch_ids, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, num_samples=g,
                               seed=cfg.seed * 100_003 + step, params=params)
        rewards = np.asarray(reward_fn([prompts[i] for i in chosen for _ in range(g)], out.texts,
                                       [t for t in refs.texts for _ in range(g)]), np.float64)
        batch = rollout_batch(batch_ids, [t[:n] for t, n in zip(out.tokens, out.lengths)], g)
        batch["advantages"] = group_advantages(rewards, g)
        batch = {k: jnp.asarray(v) for k, v in batch.items()}
        batch["old_logp"] = logprobs(params, batch["tokens"])
        batch["ref_logp"] = logprobs(ref_params, batch["tokens"])
        for _ in range(cfg.ppo_epochs):
            params, opt_state, metrics = update(params, opt_state, batch)
        record = {"step": step + 1, "reward": float(rewards.mean()),
                  "response_tokens": float(out.lengths.mean()),
                  **{k: float(v) for k, v in jax.device_get(metrics).items()}}
        history.append(record)
        log.info("grpo %d: reward %.3f kl %.4f", step + 1, record["reward"], record["kl"])
    return nnx.merge(graphdef, params), history


# ---------------------------------------------------------------------- evaluation


def gold_correct(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    return np.array([synthetic.parse_task(p).is_good(r) for p, r in zip(prompts, responses)])


def greedy_accuracy(sampler: Sampler, rows: Sequence[dict], max_new_tokens: int
                    ) -> dict[str, float]:
    """Gold accuracy of greedy responses, overall and per category."""
    prompts = [r["prompt"] for r in rows]
    out = sampler.generate([policy_prompt(p) for p in prompts], max_new_tokens=max_new_tokens,
                           temperature=0.0, return_logprobs=False)
    correct = gold_correct(prompts, out.texts)
    categories = np.array([r["category"] for r in rows])
    return {"accuracy": float(correct.mean()),
            **{f"accuracy/{c}": float(correct[categories == c].mean())
               for c in sorted(set(categories))}}


def best_of_n(sampler: Sampler, judge, prompts: Sequence[str], *, n: int,
              max_new_tokens: int, seed: int, method: str = "linear") -> dict[str, float]:
    """Gold accuracy of the judge's pick among n samples per prompt (ranking batched across
    prompts), the expected accuracy of a random pick, and of an oracle pick (pass@n)."""
    out = sampler.generate([policy_prompt(p) for p in prompts], max_new_tokens=max_new_tokens,
                           temperature=1.0, num_samples=n, seed=seed, return_logprobs=False)
    candidates = [out.texts[i * n:(i + 1) * n] for i in range(len(prompts))]
    correct = np.array([gold_correct([p] * n, c) for p, c in zip(prompts, candidates)])
    compare = functools.partial(judge.compare_probs, greedy=True)
    picks = [r.best for r in ranking.rank_batch(compare, prompts, candidates, method=method)]
    return {"judge_pick": float(np.mean([c[i] for c, i in zip(correct, picks)])),
            "random_pick": float(correct.mean()), "oracle_pick": float(correct.any(axis=1).mean())}


# ---------------------------------------------------------------------- experiment


def make_prompts(config: ml_collections.ConfigDict) -> dict[str, list[dict]]:
    """Disjoint SFT pairs, RL train prompts and held-out eval prompts, judge categories only."""
    rl, difficulties = config.rlhf, list(config.data.train_difficulties)
    sizes = {}
    for name, n in (("sft", rl.sft.num_examples), ("train", rl.num_train_prompts),
                    ("eval", rl.num_eval_prompts)):
        sizes.update({f"{name}@{d}": (n // len(difficulties), d) for d in difficulties})
    parts = synthetic.make_splits(sizes, list(config.data.categories),
                                  seed=f"rlhf:{config.data.seed}")
    return {name: [p for d in difficulties for p in parts[f"{name}@{d}"]]
            for name in ("sft", "train", "eval")}


def sft_policy(config: ml_collections.ConfigDict, base_dir: pathlib.Path, pairs: list[dict],
               out_dir: pathlib.Path, tokenizer) -> pathlib.Path:
    """Short SFT of the base LM on prompt → response + EOS (loss on the response only).

    A share `rejected_share` of pairs contributes its wrong response, so the start policy
    imitates the domain's mix of right and wrong answers and RL has room to improve."""
    sft, rng = config.rlhf.sft, np.random.default_rng(config.data.seed)
    rows = [(p["prompt"], p["rejected"] if rng.random() < sft.rejected_share else p["chosen"])
            for p in pairs]

    def encode(row: tuple[str, str]) -> dict[str, np.ndarray]:
        prompt = tokenizer.encode(policy_prompt(row[0]))
        response = tokenizer.encode(row[1], add_special_tokens=False) + [tokenizer.eos_token_id]
        mask = np.r_[np.zeros(len(prompt), bool), np.ones(len(response), bool)]
        return {"tokens": np.asarray(prompt + response, np.int32), "loss_mask": mask}

    return stages.run_training(stages.train_config(config, sft, len(rows)), base_dir, rows,
                               encode, out_dir, tokenizer=tokenizer, batch_size=sft.batch_size,
                               seed=config.seed, max_len=config.judge.max_len)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
    from gramr2_jax.downstream.adaptation import pipeline_models
    from gramr2_jax.judge import Judge

    workdir, rl = pathlib.Path(workdir), config.rlhf
    judge_dir, base_dir, tokenizer = pipeline_models(
        config, pathlib.Path(rl.pipeline_dir) if rl.pipeline_dir else workdir / "pipeline")
    judge = Judge.from_pretrained(judge_dir, batch_size=config.judge.batch_size)
    data = make_prompts(config)
    sft_dir = sft_policy(config, base_dir, data["sft"], workdir / "sft", tokenizer)
    cfg = GRPOConfig(**rl.grpo.to_dict(), seed=config.seed)
    grpo_dir = workdir / "grpo"
    if not artifacts.is_done(grpo_dir):
        reward = functools.partial(judge.reward, greedy=True)
        train_prompts = [p["prompt"] for p in data["train"]]
        policy, history = train_grpo(models.from_pretrained(sft_dir), tokenizer, train_prompts,
                                     reward, cfg)
        models.save_pretrained(policy, grpo_dir / "export", tokenizer=tokenizer)
        artifacts.write_json(grpo_dir / "history.json", history)
        artifacts.mark_done(grpo_dir)
    history = artifacts.read_json(grpo_dir / "history.json")

    eval_prompts = [p["prompt"] for p in data["eval"]]
    initial = Sampler(models.from_pretrained(sft_dir), tokenizer)
    final = Sampler(models.from_pretrained(grpo_dir / "export"), tokenizer)
    summary = {
        "grpo": dataclasses.asdict(cfg), "judge_dir": str(judge_dir), "sft_dir": str(sft_dir),
        "categories": list(config.data.categories), "num_eval_prompts": len(eval_prompts),
        "greedy_before": greedy_accuracy(initial, data["eval"], cfg.max_new_tokens),
        "greedy_after": greedy_accuracy(final, data["eval"], cfg.max_new_tokens),
        f"best_of_{rl.best_of_n}": best_of_n(initial, judge, eval_prompts, n=rl.best_of_n,
                                             max_new_tokens=cfg.max_new_tokens,
                                             seed=config.seed + 1),
        "reward_first_updates": float(np.mean([h["reward"] for h in history[:4]])),
        "reward_last_updates": float(np.mean([h["reward"] for h in history[-4:]])),
        "history": history,
    }
    artifacts.write_json(workdir / "rlhf.json", summary)
    write_report(workdir, summary, rl.best_of_n)
    return summary


def write_report(workdir: pathlib.Path, summary: dict[str, Any], n: int) -> None:
    g, sel = summary["grpo"], summary[f"best_of_{n}"]
    before, after = summary["greedy_before"], summary["greedy_after"]
    lines = [
        "# RLHF with the judge as reward (GRPO)", "",
        f"Policy: stage-0 base LM + short SFT; {g['num_updates']} GRPO updates × "
        f"{g['prompts_per_update']} prompts × G={g['group_size']} samples, {g['ppo_epochs']} "
        f"steps per batch, lr {g['learning_rate']}, clip {g['clip_eps']}, KL coef "
        f"{g['kl_coef']}. Reward: judge p(sample ≻ greedy reference of the current policy), "
        f"greedy judgments, both orders. Gold accuracy on {summary['num_eval_prompts']} "
        f"held-out prompts ({', '.join(summary['categories'])}).", "",
        "| policy / selection | gold accuracy |", "|---|---|",
        f"| initial policy, greedy | {before['accuracy']:.3f} |",
        f"| GRPO policy, greedy | {after['accuracy']:.3f} |",
        f"| initial policy, best-of-{n} by the judge | {sel['judge_pick']:.3f} |",
        f"| initial policy, random-of-{n} (expected) | {sel['random_pick']:.3f} |",
        f"| initial policy, oracle-of-{n} (pass@{n}) | {sel['oracle_pick']:.3f} |", "",
        "| category | greedy before | greedy after |", "|---|---|---|",
        *[f"| {c} | {before[f'accuracy/{c}']:.3f} | {after[f'accuracy/{c}']:.3f} |"
          for c in sorted(k.split("/", 1)[1] for k in before if "/" in k)], "",
        f"Mean judge reward of the samples: first 4 updates "
        f"{summary['reward_first_updates']:.3f}, last 4 {summary['reward_last_updates']:.3f} "
        "(against a moving reference: the current policy's greedy response).",
    ]
    artifacts.atomic_write_text(workdir / "rlhf.md", "\n".join(lines) + "\n")
