"""Run in a subprocess with 8 simulated CPU devices (see test_sharded.py).

Prints a JSON line: whether mesh-sharded sampling/scoring matched 1 device.
"""

import json

import jax
import numpy as np
from flax import nnx

from gramr2_jax import sharding
from gramr2_jax.sampling import Sampler
from tests.sampling.conftest import MIXED, PROMPTS, tiny_model


def main() -> None:
    assert jax.device_count() == 8, jax.devices()
    model = tiny_model()
    single = Sampler(model)
    mesh = sharding.make_mesh((2, 2, 2))
    sharded = Sampler(model, mesh=mesh, batch_multiple=4)
    report = {}
    for name, kw in {"greedy": dict(temperature=0),
                     "topp": dict(temperature=1.0, top_k=20, top_p=0.9, num_samples=2)}.items():
        a = single.generate(PROMPTS, max_new_tokens=10, stop_tokens=(), seed=5, **kw)
        b = sharded.generate(PROMPTS, max_new_tokens=10, stop_tokens=(), seed=5, **kw)
        report[name] = bool(np.array_equal(a.tokens, b.tokens))
        report[name + "_logprob_diff"] = float(np.abs(a.logprobs - b.logprobs).max())
    # A packed prefill on the mesh (packed rows and the gather sharded over the batch)
    # against the padded prefill on one device.
    prompts = MIXED * 2
    tokens, mask, _ = sharded._pad_prompts(prompts, 1)  # the batch generate pads
    report["sharded_packs"] = sharded._packing(tokens, mask) is not None
    packed_kw = dict(max_new_tokens=10, stop_tokens=(), seed=5, temperature=1.0, num_samples=2)
    a = Sampler(model, pack_prompts=False).generate(prompts, **packed_kw)
    b = sharded.generate(prompts, **packed_kw)
    report["packed"] = bool(np.array_equal(a.tokens, b.tokens))
    report["packed_logprob_diff"] = float(np.abs(a.logprobs - b.logprobs).max())
    conts = [[4, 8, 15], [9], [60, 61]]
    report["score_diff"] = float(np.abs(single.score(PROMPTS, conts).total
                                        - sharded.score(PROMPTS, conts).total).max())
    specs = {str(v.value.sharding.spec) for _, v in nnx.to_flat_state(sharded.params)}
    report["param_specs_sharded"] = any("tensor" in s or "fsdp" in s for s in specs)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
