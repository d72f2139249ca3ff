r"""Evaluates a judge on labelled pair sets: accuracy per subset and section (SPEC §6).

    python -m gramr2_jax.evaluate --model=DIR --data=llmbar_natural --data=my_pairs.jsonl \
        [--num_samples=K] [--swap] [--limit=N] [--output=report.json]

--data is a built-in set (llmbar_natural, llmbar_adversarial, mtbench_human, faireval,
llmeval2, pandalm, hh_rlhf_harmless, gsm8k; `all` = every one), read under --shared_dir,
or a generic labelled JSONL (format: gramr2_jax/downstream/evaluation.py). The report is
printed as JSON on stdout (and written to --output); a table goes to stderr.
"""

import json
import os
import pathlib
import sys

from absl import app, flags

_REPO = pathlib.Path(__file__).resolve().parents[1]

_MODEL = flags.DEFINE_string("model", None, "Judge model directory (Hugging Face format).",
                             required=True)
_DATA = flags.DEFINE_multi_string("data", None, "A built-in set name, `all`, or a JSONL path.",
                                  required=True)
_SHARED_DIR = flags.DEFINE_string(
    "shared_dir", os.environ.get("GRAMR2_SHARED", str(_REPO.parent / "shared")),
    "Folder holding data/ for the built-in sets (default: env GRAMR2_SHARED or ../shared).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Sampled judgments per pair and order.")
_SWAP = flags.DEFINE_bool("swap", True, "Also judge each pair with the responses swapped.")
_GREEDY = flags.DEFINE_bool("greedy", None, "Greedy judgments (default: when --num_samples=1).")
_LIMIT = flags.DEFINE_integer("limit", None, "Judge at most this many pairs per set (seeded).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON report here.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for sampling, A/B order and --limit.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Judge prompts per sampler call.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", None,
                                       "Override the model dir's judge setting.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax

    jax.config.update("jax_threefry_partitionable", True)
    from gramr2_jax.data.errors import exit_on_data_error
    from gramr2_jax.downstream import evaluation
    from gramr2_jax.judge import Judge, write_atomic

    with exit_on_data_error():  # read (and validate) every set before loading the model
        try:
            sets = evaluation.load_sets(_DATA.value, shared_dir=_SHARED_DIR.value,
                                        limit=_LIMIT.value, seed=_SEED.value)
        except evaluation.SpecError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    overrides = {name: flag.value for name, flag in
                 (("batch_size", _BATCH_SIZE), ("max_new_tokens", _MAX_NEW_TOKENS))
                 if flag.value is not None}
    judge = Judge.from_pretrained(_MODEL.value, **overrides)
    report = evaluation.evaluate(judge, sets, num_samples=_NUM_SAMPLES.value, swap=_SWAP.value,
                                 greedy=_GREEDY.value, seed=_SEED.value)
    report["model"] = _MODEL.value
    text = json.dumps(report, indent=2)
    if _OUTPUT.value:
        write_atomic(_OUTPUT.value, text + "\n")
    print(evaluation.format_table(report), file=sys.stderr)
    print(text)


if __name__ == "__main__":
    from gramr2_jax import hostmem

    hostmem.configure_process()  # re-executes once with glibc malloc tunables (CPU only)
    app.run(main)
