r"""RLHF (GRPO) of a small policy with the self-trained judge as reward.

    python -m gramr2_jax.downstream.experiments --config=configs/rlhf.py --workdir=runs/rlhf \
        --config.rlhf.pipeline_dir=runs/adaptation/pipeline
    python -m gramr2_jax.downstream.experiments --config=configs/rlhf.py:smoke --workdir=/tmp/r

arg keys: smoke (tiny sizes), seed. The pipeline sections are configs/adaptation.py's, so
`rlhf.pipeline_dir` may point at an adaptation run's pipeline/ (its judge and stage-0 LM
are reused, not retrained); empty = run the pipeline in <workdir>/pipeline. Prompts come
from the judge's categories (data.categories).
"""

import pathlib


def get_config(arg=None):
    from gramr2_jax import config_lib

    arg = config_lib.parse_arg(arg, smoke=False, seed=0)
    c = config_lib.load_config_file(pathlib.Path(__file__).with_name("adaptation.py"),
                                    f"smoke={arg.smoke},seed={arg.seed}")
    c.experiment = "rlhf"
    del c["adaptation"]
    c.rlhf = dict(
        pipeline_dir="", num_train_prompts=64, num_eval_prompts=64, best_of_n=4,
        # SFT so the base LM answers in the policy format; half the pairs teach their wrong
        # response, so the start policy is a right/wrong mix that RL can improve on.
        sft=dict(num_examples=512, rejected_share=0.5, batch_size=16, epochs=2.0,
                 train=dict(learning_rate=1e-3, warmup_steps=10, weight_decay=0.01,
                            checkpoint_every=50)),
        grpo=dict(num_updates=24, prompts_per_update=16, group_size=4, max_new_tokens=48,
                  temperature=1.0, ppo_epochs=2, learning_rate=1e-4, weight_decay=0.0,
                  max_grad_norm=1.0, clip_eps=0.2, kl_coef=0.04))
    if arg.smoke:
        c.rlhf.update(num_train_prompts=6, num_eval_prompts=6, best_of_n=2)
        c.rlhf.sft.update(num_examples=12, epochs=1.0)
        c.rlhf.grpo.update(num_updates=2, prompts_per_update=3, group_size=2, max_new_tokens=16)
    return c
