"""AdamW with linear warmup + cosine decay and global-norm clipping."""

from __future__ import annotations

import jax
import optax


def learning_rate_schedule(peak: float, warmup_steps: int, total_steps: int,
                           end_ratio: float) -> optax.Schedule:
    """0 → peak over warmup_steps, then cosine down to peak·end_ratio at total_steps."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1), end_value=peak * end_ratio)


def _decay_mask(params):
    # No weight decay on norm scales and biases (standard for LLM fine-tuning).
    def keep(path, _):
        names = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        return not ("norm" in names or "bias" in names)
    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(schedule: optax.Schedule, *, weight_decay: float, b1: float, b2: float,
                   eps: float, max_grad_norm: float | None) -> optax.GradientTransformation:
    parts = []
    if max_grad_norm:
        parts.append(optax.clip_by_global_norm(max_grad_norm))
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                             mask=_decay_mask))
    return optax.chain(*parts)
