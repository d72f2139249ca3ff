r"""The CPU demo of the whole GRAM-R² pipeline on the synthetic verifiable domain.

    python -m gramr2_jax.main --config=configs/demo.py --workdir=runs/demo
    python -m gramr2_jax.main --config=configs/demo.py:smoke --workdir=/tmp/smoke
    python launch/sweep.py --config=configs/demo.py:stage_cache=runs/stage_cache \
        --workdir=runs/ablations_full --seeds=0,1,2

arg keys: smoke (shrinks everything for tests), seed, sweep (variants for get_sweep, a+b),
stage_cache (a dir: variants of one seed share data, stage 0 and stage 1; see
selftrain/stage_cache.py), base (the pipeline an ablation changes: full or self_rationale),
variant — one of VARIANTS:
  full           the pipeline: seed SFT, then rounds of label → filter → prove →
                 retrain. Rationales come from the prover π_ψ (the paper's design);
                 the judge's agreeing sample and the chosen proof must both be coherent
                 (synthetic.check_coherence: the claims agree with each other and the
                 prompt, never checked against the truth); 3 of 4 votes suffice (kappa
                 0.75) and coherence stands in for the confidence filter (tau 0)
  self_rationale the default before 2026-11-27: the judge's own best agreeing sample
                 as rationale, unanimous votes, tau 0.9 → 0.8, no coherence rule
The ablations change one thing of the base (base=full unless given; the README's older
ablation rows were measured with base=self_rationale). One that changes nothing of its
base is an error (prover, coherence or no_curriculum on full, whose thresholds are the
same every round; own_rationale and strict_curriculum on self_rationale):
  label_only     pseudo-labels without rationales (empty <think>)
  no_filter      every filter off (a majority verdict is still required)
  single_round   one round, with the pool of all rounds
  no_curriculum  every round uses the last (loosest) round's thresholds
  strict_curriculum  a curriculum on full: round 1 keeps only unanimous votes (kappa 1.0 →
                 0.75), the strict-early schedule full's flat thresholds leave out
  prover         rationales from the prover, with proof selection
  own_rationale  rationales from the judge's own best agreeing sample
  adaptive_tau   the confidence threshold set per round from the round's own labels
                 (tau_quantile 0.7 → 0.5: the 30 % → 50 % most confident pairs pass it)
  coherence      the coherence rule on the judge's own rationales
  baselines      no self-training; the same-data BT and GRAM-v1 verdict-token baselines
"""

from gramr2_jax import config_lib
from gramr2_jax.selftrain import curriculum

BASES = ("full", "self_rationale")
VARIANTS = BASES + ("label_only", "no_filter", "single_round", "no_curriculum", "prover",
                    "own_rationale", "strict_curriculum", "adaptive_tau", "coherence", "baselines")
# What `python launch/sweep.py --config=configs/demo.py[:base=...]` runs with no sweep= arg:
# the variants that change something of that base.
DEFAULT_SWEEPS = {
    "full": ("full", "label_only", "no_filter", "single_round", "own_rationale",
             "strict_curriculum", "baselines"),
    "self_rationale": ("self_rationale", "label_only", "no_filter", "single_round",
                       "no_curriculum", "prover", "adaptive_tau", "coherence", "baselines"),
}


_ARG_DEFAULTS = dict(smoke=False, seed=0, variant="full", base="full", sweep="", stage_cache="")


def _optional(kind):
    """A field that is None here and can be set by a --config.x=... flag."""
    return config_lib.ml_collections.config_dict.placeholder(kind)


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, **_ARG_DEFAULTS)
    c = config_lib.ml_collections.ConfigDict()
    c.seed = arg.seed
    c.variant = arg.variant
    c.stage_cache = arg.stage_cache

    c.data = dict(
        source="synthetic",
        seed=0,  # the data stays fixed across run seeds, so seeds measure training spread
        categories=["arithmetic", "constraint", "safety", "logic"],
        # The pool's first half is difficulty 0, its second half difficulty 1, so with
        # 2 rounds of fresh slices round 1 labels the easy pairs and round 2 the harder.
        # (3 rounds over 6000 pairs, the default until 2026-11-28, ran over the main job's
        # 15 minutes on a 2-core AVX2 machine; times of both in README, "Measured results".)
        num_seed=256, num_unlabelled=3000, num_test=200,
        train_difficulties=[0, 1], ood_difficulty=2, num_pretrain=6000,
        # Share of pretraining texts that are full judgments. 0: stage 0 sees only
        # questions with response pairs (GRAM's unlabelled pretraining), so every
        # label the judge learns from comes from the seed set or self-training.
        pretrain_judgment_share=0.0,
        # Share of pretraining texts that state domain knowledge with no preference in
        # them (the fact behind a question; what one response does): what a pretrained
        # LLM would know before being taught to judge.
        pretrain_knowledge_share=0.5)
    # causal_blocks: a forward without a cache (training, scoring) splits its queries
    # into up to this many blocks that skip the keys above the diagonal; 1 = off.
    c.model = dict(preset="tiny", hf_path="", dtype="float32", param_dtype="float32",
                   remat="none", scan_layers=False, causal_blocks=8)
    c.mesh = dict(shape=(-1, 1, 1))
    c.sharding = dict(rules=None)

    # Stage 0: tokenizer + base LM pretrained on domain text (ignored when model.hf_path is set).
    c.stage0 = dict(vocab_size=512, max_len=256, batch_size=32, epochs=4.0,
                    train=dict(learning_rate=3e-3, warmup_steps=20, weight_decay=0.01,
                               checkpoint_every=50))
    # A judgment runs about 85 tokens (99th percentile 96-110 on the demo's pool).
    c.judge = dict(template="compact", max_prompt_len=192, max_len=384, max_new_tokens=128,
                   batch_size=64, swap_augment=False)
    # Stage 1: seed SFT on the labelled seed set with rule-written rationales.
    c.stage1 = dict(batch_size=16, epochs=20.0, min_steps=160,
                    train=dict(learning_rate=1e-3, warmup_steps=10, weight_decay=0.01,
                               checkpoint_every=50))
    # Stage 2: self-training rounds.
    c.selftrain = dict(
        num_rounds=2, num_samples=2, swap=True, temperature=0.75, shard_size=64,
        pool_per_round="fresh",  # "fresh": a new slice of the pool per round; "all"
        merge="cumulative",  # training set = seed + kept pairs of all rounds so far ("latest")
        # "previous" (last round's judge), "seed" (the stage-1 judge) or "base" (stage-0 LM)
        retrain_from="previous",
        rationale_source="prover",  # "prover" (π_ψ proofs) or "self" (best agreeing own sample)
        num_proofs=4,  # prover: candidate proofs per kept pair
        label_only=False, filters_enabled=True,
        curriculum_enabled=True,
        # Per-round thresholds (a linear schedule from start to end; strict early is possible,
        # e.g. self_rationale's tau 0.9 → 0.8). The seed judge's p(verdict) after its own
        # rationale is ≈ 0.999, so tau only re-measures vote agreement: off by default.
        curriculum=dict(schedule="linear", base=dict(min_chars=20, max_chars=600, coherence=True),
                        start=dict(kappa=0.75, tau=0.0, tau_quantile=_optional(float)),
                        end=dict(kappa=0.75, tau=0.0, tau_quantile=_optional(float))),
        batch_size=16, epochs=4.0, min_steps=100,
        train=dict(learning_rate=1e-3, warmup_steps=10, weight_decay=0.01, checkpoint_every=50))
    c.run_baselines = False  # the same-data BT and GRAM-v1 verdict-token baselines
    # The seed-only and final judges on up to this many fresh pairs per difficulty
    # (selftrain/extra_eval.py; 0 = off): the 200-pair test sets above leave ±0.035, 500
    # pairs ±0.022 (difficulty 0's easy logic and safety items run out near 500).
    c.larger_test = dict(num_per_difficulty=500)

    _apply_variant(c, arg.base, arg.variant)
    if arg.smoke:
        c.data.update(num_seed=16, num_unlabelled=32, num_test=8, num_pretrain=300)
        c.stage0.update(vocab_size=384, epochs=1.0)
        c.stage1.update(epochs=2.0, min_steps=1)
        c.selftrain.update(num_rounds=min(c.selftrain.num_rounds, 2), shard_size=8, epochs=1.0,
                           min_steps=1)
        c.judge.update(max_new_tokens=48)
        c.larger_test.num_per_difficulty = 16
        for stage in (c.stage0, c.stage1, c.selftrain):  # checkpoints inside every stage
            stage.train.checkpoint_every = 3
    return c


# Each variant as field overrides, so the sweep can pass them as --config.x=y flags.
_BASE_OVERRIDES = {
    "full": {},
    "self_rationale": {"selftrain.rationale_source": "self",
                       "selftrain.curriculum.base.coherence": False,
                       "selftrain.curriculum.start.kappa": 1.0,
                       "selftrain.curriculum.start.tau": 0.9,
                       "selftrain.curriculum.end.kappa": 1.0, "selftrain.curriculum.end.tau": 0.8},
}
_ABLATIONS = {
    "label_only": {"selftrain.label_only": True},
    "no_filter": {"selftrain.filters_enabled": False},
    "single_round": {"selftrain.num_rounds": 1, "selftrain.pool_per_round": "all"},
    "no_curriculum": {"selftrain.curriculum_enabled": False},
    "prover": {"selftrain.rationale_source": "prover"},
    "own_rationale": {"selftrain.rationale_source": "self"},
    "strict_curriculum": {"selftrain.curriculum.start.kappa": 1.0},
    "adaptive_tau": {"selftrain.curriculum.start.tau_quantile": 0.7,
                     "selftrain.curriculum.end.tau_quantile": 0.5},
    "coherence": {"selftrain.curriculum.base.coherence": True},
    "baselines": {"selftrain.num_rounds": 0, "run_baselines": True},
}


def _check(base, variant):
    if base not in BASES:
        raise ValueError(f"config arg: base: {base!r} is not one of {BASES}")
    if variant not in VARIANTS:
        raise ValueError(f"config arg: variant: {variant!r} is not one of {VARIANTS}")


def _overrides(base, variant):
    _check(base, variant)
    if variant in BASES:  # a base is its own variant, whatever base= says
        return dict(_BASE_OVERRIDES[variant])
    return {**_BASE_OVERRIDES[base], **_ABLATIONS[variant]}


def _set(c, overrides):
    for key, value in overrides.items():
        section, _, field = key.rpartition(".")
        (c[section] if section else c)[field] = value


def _apply_variant(c, base, variant):
    """Sets the variant's fields; raises ValueError for an ablation that changes nothing."""
    _check(base, variant)
    if variant in BASES:
        _set(c, _BASE_OVERRIDES[variant])
        return
    _set(c, _BASE_OVERRIDES[base])
    before = c.to_dict()
    _set(c, _ABLATIONS[variant])
    if variant == "no_curriculum":  # the switch only matters if thresholds change by round
        changed = len(set(_per_round_thresholds(c.selftrain))) > 1
    else:
        changed = c.to_dict() != before
    if not changed:
        raise ValueError(f"config arg: variant: {variant!r} changes nothing of base {base!r}: "
                         "that is the base itself")


def _per_round_thresholds(st):
    cur = {**st.curriculum.to_dict(), "num_rounds": st.num_rounds}
    return [curriculum.thresholds_for_round(cur, r) for r in range(1, st.num_rounds + 1)]


def get_sweep(arg=None):
    """The ablation table: the base's variants (DEFAULT_SWEEPS), or those in arg sweep=a+b
    (crossed with --seeds by launch/sweep.py)."""
    arg = config_lib.parse_arg(arg, **_ARG_DEFAULTS)
    _check(arg.base, "full")
    variants = arg.sweep.split("+") if arg.sweep else DEFAULT_SWEEPS[arg.base]
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"config arg: sweep: {v!r} is not one of {VARIANTS}")
    return [{"variant": v, **_overrides(arg.base, v)} for v in variants]
