r"""GRAM-R² at real scale on Cloud TPU slices.

    python -m gramr2_jax.plan --config=configs/gram_r2_pod.py:model=llama3.1_8b,slice=v5litepod-64
    python launch/tpu_vm.py run ... -- --config=configs/gram_r2_pod.py:model=qwen3_8b,slice=v5p-64

arg keys: model (llama3.1_8b | llama3.2_3b | qwen3_8b), slice (v4-32 | v5litepod-64 | v5p-64).
Mesh per slice: FSDP over the chips of a slice, tensor parallelism where HBM is
small (v5e), so parameters + AdamW state are fully sharded and the per-chip
batch stays a whole number of sequences.
"""

from gramr2_jax import config_lib

# slice → (mesh (data, fsdp, tensor), global train batch in sequences, microbatches).
# Attention scores are materialized (b·heads·s² floats), so long sequences need
# small microbatches: gradient accumulation keeps the global batch.
SLICES = {
    "v4-32": ((1, -1, 1), 64, 4),          # 16 chips × 32 GiB
    "v5litepod-64": ((1, -1, 4), 64, 2),   # 64 chips × 16 GiB
    "v5p-64": ((2, -1, 1), 128, 4),        # 32 chips × 95 GiB
}


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, model="llama3.1_8b", slice="v5p-64", seed=0)
    if arg.slice not in SLICES:
        raise ValueError(f"config arg: slice: {arg.slice!r} is not one of {sorted(SLICES)}")
    mesh_shape, batch, accum = SLICES[arg.slice]
    c = config_lib.ml_collections.ConfigDict()
    c.seed = arg.seed
    c.multihost = True

    c.model = dict(preset=arg.model, hf_path="", dtype="bfloat16", param_dtype="float32",
                   remat="full", scan_layers=True)
    c.mesh = dict(shape=mesh_shape, slice=arg.slice)
    c.sharding = dict(rules=None)  # None = gramr2_jax.sharding.DEFAULT_RULES

    # Judge SFT: prompt (template + pair) up to ~3k tokens, rationale + verdict ~1k.
    c.train = dict(batch_size=batch, grad_accum_steps=accum, seq_len=4096, learning_rate=1e-5, warmup_ratio=0.1,
                   num_epochs=1, grad_clip=1.0, weight_decay=0.0)
    # Self-training labelling: k votes in each order share one prefilled prompt.
    c.label = dict(batch_size=64, num_samples=8, prompt_len=3072, max_new_tokens=1024,
                   temperature=0.75, swap=True)
    return c
