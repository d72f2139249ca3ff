r"""The CPU demo of the whole GRAM-R² pipeline on the synthetic verifiable domain.

    python -m gramr2_jax.main --config=configs/demo.py --workdir=runs/demo
    python -m gramr2_jax.main --config=configs/demo.py:smoke --workdir=/tmp/smoke

arg keys: smoke (shrinks everything for tests), seed.
"""

from gramr2_jax import config_lib


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, smoke=False, seed=0)
    c = config_lib.ml_collections.ConfigDict()
    c.seed = arg.seed

    c.data = dict(
        seed=0,  # the data stays fixed across run seeds, so seeds measure training spread
        categories=["arithmetic", "constraint", "safety", "logic"],
        num_seed=64, num_unlabelled=800, num_test=200,
        train_difficulties=[0, 1], ood_difficulty=2, num_pretrain=6000)
    c.stage0 = dict(vocab_size=512)
    c.model = dict(preset="tiny", hf_path="", dtype="float32", param_dtype="float32",
                   remat="none", scan_layers=False)
    c.mesh = dict(shape=(-1, 1, 1))
    c.sharding = dict(rules=None)

    if arg.smoke:
        c.data.update(num_seed=16, num_unlabelled=32, num_test=16, num_pretrain=400)
        c.stage0.vocab_size = 384
    return c
