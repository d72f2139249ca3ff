r"""Task adaptation: a foundation judge trained without one category, then fine-tuned on it.

    python -m gramr2_jax.downstream.experiments --config=configs/adaptation.py \
        --workdir=runs/adaptation
    python -m gramr2_jax.downstream.experiments --config=configs/adaptation.py:smoke \
        --workdir=/tmp/a

arg keys: smoke (tiny sizes, for tests), seed, held_out (a synthetic category).
The pipeline sections are configs/demo.py's, with data.categories minus held_out, a larger
labelled seed set and a smaller pool/evaluation so the run fits a shared 2-core CPU.
"""

import pathlib

from gramr2_jax import config_lib


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, smoke=False, seed=0, held_out="logic")
    c = config_lib.load_config_file(pathlib.Path(__file__).with_name("demo.py"),
                                    f"smoke={arg.smoke},seed={arg.seed}")
    c.experiment = "adaptation"
    c.data.categories = [x for x in c.data.categories if x != arg.held_out]
    # Pinned: a judgment (rationale + verdict) takes up to ~160 tokens with the demo tokenizer.
    c.judge.update(max_len=384, max_new_tokens=176)
    # Fine-tunes of both arms: the seed-SFT recipe (same lr, epochs), on N held-out pairs.
    c.adaptation = dict(held_out=arg.held_out, sizes=[32, 64, 128, 256], num_test=96,
                        batch_size=16, epochs=8.0,
                        train=dict(learning_rate=1e-3, warmup_steps=10, weight_decay=0.01,
                                   checkpoint_every=50))
    if arg.smoke:
        c.selftrain.num_rounds = 0  # the seed-SFT judge stands in for the foundation judge
        c.judge.max_new_tokens = 48
        c.adaptation.update(sizes=[4, 8], num_test=4, epochs=1.0)
    else:
        # A foundation judge needs more labels than the demo's seed set (a 64-seed judge stayed
        # near chance with a strong position bias); GRAM-R² starts from 1M labelled pairs.
        c.data.update(num_seed=384, num_unlabelled=384, num_test=64)
        c.stage1.epochs = 8.0
        c.selftrain.num_rounds = 1
    return c
