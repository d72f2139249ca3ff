r"""A larger held-out test of a finished synthetic run's judges, one set per difficulty.

    python -m gramr2_jax.selftrain.extra_eval --workdir=RUN [--num=N] \
        [--difficulties=0,1,2] [--judges=stage1,last]

The pipeline's own test sets (data.num_test pairs, 200 in the demo) leave a
binomial standard error of about ±0.035 on an accuracy, and its ID set mixes the
training difficulties. This draws up to --num fresh pairs per difficulty from the
synthetic domain (split name "extra_eval@<difficulty>", seeded by --seed), none
equal to a pair of the run's seed, pool or test splits (so the same --seed gives the
same pairs for runs that share their data), and judges them like the
held-out tests (greedy, both orders; selftrain/evaluation.py). The pairs were
never labelled for the run, though the pretraining text may show a pair's texts
without its label, as it may for the pool.

--num and --difficulties default to the run's own larger test (its config.json:
larger_test.num_per_difficulty, its training and OOD difficulties), so a rerun reads the
pipeline's results instead of judging again.

Judges: `stage1` (the seed-only judge), `round_<r>`, or `last` (the last round's).
Writes <workdir>/extra_eval/<stage>-n<num>-seed<seed>.json (reused on rerun; it keeps
whether each pair was judged right) and prints one JSON object; with two judges it also
holds "difference": the second's accuracy minus the first's per set, with a paired 95 %
interval over the pairs (`paired_difference`).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import random
import sys

from absl import app, flags

_GIVE_UP_AFTER = 2000  # duplicate draws in a row: the category's pairs are used up


def judge_dir(workdir: pathlib.Path, judge: str) -> tuple[str, pathlib.Path]:
    """(stage name, exported model dir) of a judge, found from the workdir's layout (so the
    workdir may have moved since the run): a round that kept no pair did not retrain and
    carries the previous judge forward."""
    from gramr2_jax.selftrain import artifacts

    if judge == "last":
        rounds = sorted((p for p in workdir.glob("round_*") if artifacts.is_done(p)),
                        key=lambda p: int(p.name.split("_")[1]))
        if not rounds:
            raise ValueError(f"--judges: last: {workdir} has no finished round")
        judge = rounds[-1].name
    if not artifacts.is_done(workdir / judge):
        raise ValueError(f"--judges: {judge}: {workdir / judge} is not a finished stage")
    if judge == "stage1" or artifacts.read_json(workdir / judge / "metrics.json").get(
            "retrained", True):  # runs before 2026-11-27 always retrained
        return judge, workdir / judge / "train" / "export"
    r = int(judge.split("_")[1])
    return judge, judge_dir(workdir, "stage1" if r == 1 else f"round_{r - 1}")[1]


DEFAULT_NUM = 500  # for a run whose config has no larger test


def run_defaults(workdir: pathlib.Path) -> tuple[int, list[int]]:
    """(pairs per difficulty, difficulties) of the run's own larger test, from the config
    it was started with."""
    import ml_collections

    from gramr2_jax.selftrain import artifacts

    config = ml_collections.ConfigDict(artifacts.read_json(workdir / "config.json"))
    num = config.get("larger_test", {}).get("num_per_difficulty") or DEFAULT_NUM
    try:
        return num, run_difficulties(config)
    except (AttributeError, KeyError):
        raise ValueError(f"{workdir / 'config.json'}: data.train_difficulties, "
                         "data.ood_difficulty: missing; pass --difficulties") from None


def run_difficulties(config) -> list[int]:
    """The difficulties a run's larger test covers: its training ones and its OOD one."""
    return sorted({*config.data.train_difficulties, config.data.ood_difficulty})


def extra_test_sets(workdir: pathlib.Path, num: int, difficulties: list[int], seed: int = 0
                    ) -> dict[str, list[dict]]:
    """Fresh pairs per difficulty (num / categories per category), disjoint from every
    split in <workdir>/data. A category whose space of distinct pairs runs out (the
    easiest logic items number 850, and the demo pool holds 750 of them) gives fewer."""
    from gramr2_jax import synthetic
    from gramr2_jax.selftrain import artifacts

    data = workdir / "data"
    rows = [r for name in ("seed", "unlabelled", "test_id", "test_ood")
            for r in artifacts.read_jsonl(data / f"{name}.jsonl")]
    categories = sorted({r["category"] for r in rows})
    taken = {synthetic.pair_key(r["prompt"], r["response_a"], r["response_b"]) for r in rows}
    out = {}
    for d in difficulties:
        rng = random.Random(f"extra_eval@{d}:{seed}")
        pairs = []
        for category in categories:
            misses, count = 0, 0
            while count < num // len(categories) and misses < _GIVE_UP_AFTER:
                prompt, chosen, rejected = synthetic.generate(category, d, rng)
                key = synthetic.pair_key(prompt, chosen, rejected)
                if key in taken:
                    misses += 1
                    continue
                misses, count = 0, count + 1
                taken.add(key)
                pairs.append({"id": f"extra_eval@{d}-{len(pairs):06d}", "category": category,
                              "difficulty": d, "prompt": prompt, "chosen": chosen,
                              "rejected": rejected})
        out[f"difficulty_{d}"] = synthetic.to_unlabelled(pairs, f"extra_eval@{d}:{seed}")
    return out


def evaluate_run(workdir: pathlib.Path, judges: list[str], num: int, difficulties: list[int],
                 seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """{judge as given: {"difficulty_<d>": evaluate_judge metrics + num_pairs}}, cached in
    <workdir>/extra_eval/<stage>-n<num>-seed<seed>.json ("last" resolves to its round).
    Each cached set carries the SHA-256 of its pairs; one drawn differently now (another
    generator, changed run data) is judged again instead of reused."""
    from gramr2_jax import sharding
    from gramr2_jax.judge import Judge
    from gramr2_jax.selftrain import artifacts
    from gramr2_jax.selftrain.evaluation import evaluate_judge_per_pair

    named = {j: judge_dir(workdir, j) for j in judges}
    sets = extra_test_sets(workdir, num, difficulties, seed)
    digests = {key: _digest(rows) for key, rows in sets.items()}
    report = {}
    for name, (stage, model_dir) in named.items():
        out = _cache_path(workdir, stage, num, seed)
        metrics = artifacts.read_json(out) if out.exists() else {}
        missing = {key: rows for key, rows in sets.items()
                   if metrics.get(key, {}).get(_DIGEST) != digests[key]}
        if missing:
            judge = Judge.from_pretrained(model_dir, mesh=sharding.local_mesh())
            for key, rows in missing.items():
                result, correct = evaluate_judge_per_pair(judge, rows)
                metrics[key] = {**result, _DIGEST: digests[key],
                                _CORRECT: "".join("1" if c else "0" for c in correct)}
            metrics = artifacts.write_json(out, metrics)
        report[name] = {key: {**{k: v for k, v in metrics[key].items()
                                 if k not in (_DIGEST, _CORRECT)},
                              "num_pairs": len(rows)} for key, rows in sets.items()}
    return report


def paired_difference(workdir: pathlib.Path, base: str, other: str, num: int, seed: int = 0
                      ) -> dict[str, dict[str, float]]:
    """{"difficulty_<d>": {"delta", "ci95"}}: judge `other`'s accuracy minus `base`'s on the
    same pairs of evaluate_run's cache, and the half-width of a 95 % interval for it over
    the pairs (normal approximation on the per-pair differences, so pairs both judges get
    right or wrong add no noise). It measures only the test's sampling of pairs, not how
    another seed's run would land. Sets judged before per-pair results were kept (or with
    different pairs) are left out."""
    import statistics

    from gramr2_jax.selftrain import artifacts

    def cached(judge):
        path = _cache_path(workdir, judge_dir(workdir, judge)[0], num, seed)
        return artifacts.read_json(path) if path.exists() else {}

    a, b = cached(base), cached(other)
    out = {}
    for key in sorted(set(a) & set(b)):
        if _CORRECT not in a[key] or _CORRECT not in b[key] or \
                a[key].get(_DIGEST) != b[key].get(_DIGEST):
            continue
        diff = [int(y) - int(x) for x, y in zip(a[key][_CORRECT], b[key][_CORRECT])]
        spread = statistics.stdev(diff) if len(diff) > 1 else 0.0
        out[key] = {"delta": statistics.fmean(diff), "ci95": 1.96 * spread / len(diff) ** 0.5}
    return out


def _cache_path(workdir: pathlib.Path, stage: str, num: int, seed: int) -> pathlib.Path:
    return workdir / "extra_eval" / f"{stage}-n{num}-seed{seed}.json"


_DIGEST = "pairs_sha256"
_CORRECT = "correct"  # "0"/"1" per pair, in the set's order


def _digest(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _define_flags() -> None:
    """The command line's flags (defined only when run as a script: the pipeline imports
    this module next to main.py's own --workdir)."""
    flags.DEFINE_string("workdir", None, "A finished run's workdir.", required=True)
    flags.DEFINE_integer("num", None, "Pairs per difficulty (default: the run's own "
                         f"larger_test.num_per_difficulty, {DEFAULT_NUM} if it has none).")
    flags.DEFINE_list("difficulties", None, "Difficulties to test (default: the run's "
                      "training and OOD difficulties).")
    flags.DEFINE_list("judges", ["stage1", "last"], "stage1, round_<r> or last.")
    flags.DEFINE_integer("seed", 0, "Seed of the extra test pairs.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    workdir = pathlib.Path(args.workdir)
    try:
        num = args.num
        difficulties = None if args.difficulties is None else [int(d) for d in args.difficulties]
        if num is None or difficulties is None:
            default_num, default_difficulties = run_defaults(workdir)
            num = default_num if num is None else num
            difficulties = default_difficulties if difficulties is None else difficulties
        report = evaluate_run(workdir, args.judges, num, difficulties, args.seed)
        if len(args.judges) == 2:  # the second minus the first, paired over the pairs
            report["difference"] = {"judges": f"{args.judges[1]} - {args.judges[0]}",
                                    **paired_difference(workdir, *args.judges, num, args.seed)}
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps({"workdir": str(workdir), "num_per_difficulty": num, **report},
                     indent=1))


if __name__ == "__main__":
    from gramr2_jax import host_devices, hostmem

    hostmem.configure_process()
    host_devices.configure()
    _define_flags()
    app.run(main)
