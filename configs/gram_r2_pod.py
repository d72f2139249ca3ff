r"""GRAM-R² at real scale on Cloud TPU slices.

    python -m gramr2_jax.plan --config=configs/gram_r2_pod.py:model=llama3.1_8b,slice=v5litepod-64
    python launch/tpu_vm.py run ... -- --config=configs/gram_r2_pod.py:model=qwen3_8b,slice=v5p-64

arg keys: model (llama3.1_8b | llama3.2_3b | qwen3_8b), slice (v4-32 | v5litepod-64 | v5p-64).
Set model.hf_path to the local (or shared-disk) HF checkpoint of that preset and the
data.*_path fields to JSONL files (see gramr2_jax/data/sources.py for the row formats).
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
                   remat="full", scan_layers=True, causal_blocks=8)
    c.data = dict(source="files", seed=0, seed_path="", unlabelled_path="", test_id_path="",
                  test_ood_path="")
    c.mesh = dict(shape=mesh_shape, slice=arg.slice)
    c.sharding = dict(rules=None)  # None = gramr2_jax.sharding.DEFAULT_RULES

    # Judge SFT: prompt (template + pair) up to ~3k tokens, rationale + verdict ~1k.
    c.train = dict(batch_size=batch, grad_accum_steps=accum, seq_len=4096, learning_rate=1e-5, warmup_ratio=0.1,
                   num_epochs=1, grad_clip=1.0, weight_decay=0.0)
    # Self-training labelling: k votes in each order share one prefilled prompt.
    c.label = dict(batch_size=64, num_samples=8, prompt_len=3072, max_new_tokens=1024,
                   temperature=0.75, swap=True)

    # The pipeline stages (same fields as configs/demo.py).
    train = dict(learning_rate=c.train.learning_rate, warmup_steps=100,
                 weight_decay=c.train.weight_decay, max_grad_norm=c.train.grad_clip,
                 grad_accum_steps=accum, checkpoint_every=200)
    c.judge = dict(template="gram_r2", max_prompt_len=c.label.prompt_len, max_len=c.train.seq_len,
                   max_new_tokens=c.label.max_new_tokens, batch_size=c.label.batch_size,
                   swap_augment=True)
    c.stage1 = dict(batch_size=batch, epochs=2.0, train=train)
    c.selftrain = dict(
        num_rounds=3, num_samples=c.label.num_samples, swap=True,
        temperature=c.label.temperature, shard_size=1024, pool_per_round="fresh",
        merge="cumulative", retrain_from="base", rationale_source="self", num_proofs=4,
        label_only=False,
        filters_enabled=True, curriculum_enabled=True,
        curriculum=dict(schedule="linear", base=dict(min_chars=50, max_chars=8000),
                        start=dict(kappa=1.0, tau=0.9), end=dict(kappa=0.75, tau=0.7)),
        batch_size=batch, epochs=1.0, train=train)
    c.run_baselines = False
    c.stage_cache = ""  # a dir shared by runs that agree on data/stage 0/stage 1
    return c
