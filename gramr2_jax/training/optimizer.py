"""AdamW with linear warmup + cosine decay and global-norm clipping.

Learning-rate schedules here are pytrees of scalars with a `__call__(step)`, not
closures: the train step takes its schedule as an argument, so stages that differ
only in their schedule (peak, warmup, length) run one compiled step, and share its
entry in the persistent compilation cache, instead of baking the constants into
each stage's HLO.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct


@struct.dataclass
class WarmupCosine:
    """0 → peak over `warmup` steps, then cosine down to peak·alpha over `decay` steps:
    optax.warmup_cosine_decay_schedule, bit for bit on the CPU. Built by
    `learning_rate_schedule`, which computes the divisions' reciprocals on the host
    as XLA folds optax's constants (x / c → x · (1/c)), so runs keep their learning
    rates to the last bit."""
    peak: jax.Array  # f32
    warmup: jax.Array  # i32
    inv_warmup: jax.Array  # f32: 1 / max(warmup, 1)
    decay: jax.Array  # f32
    pi_over_decay: jax.Array  # f32: π · (1 / decay)
    alpha: jax.Array  # f32: end value / peak
    one_minus_alpha: jax.Array  # f32

    def __call__(self, step):
        step = jnp.asarray(step)
        rising = (0.0 - self.peak) * (1 - jnp.clip(step, 0, self.warmup) * self.inv_warmup)
        rising = rising + self.peak
        count = jnp.minimum(step - self.warmup, self.decay)
        cosine = 0.5 * (1 + jnp.cos(count * self.pi_over_decay))
        falling = self.peak * (self.one_minus_alpha * cosine + self.alpha)
        return jnp.where(step < self.warmup, rising, falling)


@struct.dataclass
class Constant:
    value: jax.Array  # f32

    def __call__(self, step):
        return jnp.broadcast_to(self.value, jnp.shape(step))


def learning_rate_schedule(peak: float, warmup_steps: int, total_steps: int,
                           end_ratio: float) -> WarmupCosine:
    """0 → peak over warmup_steps, then cosine down to peak·end_ratio at total_steps."""
    f32 = np.float32
    decay = max(total_steps, warmup_steps + 1) - warmup_steps
    alpha = 0.0 if peak == 0.0 else peak * end_ratio / peak  # as optax computes it
    return WarmupCosine(peak=f32(peak), warmup=np.int32(warmup_steps),
                        inv_warmup=f32(1) / f32(max(warmup_steps, 1)), decay=f32(decay),
                        pi_over_decay=f32(np.pi) * (f32(1) / f32(decay)), alpha=f32(alpha),
                        one_minus_alpha=f32(1 - alpha))


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
