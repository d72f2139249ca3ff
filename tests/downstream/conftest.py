"""Session fixtures shared by the judge and evaluate tests: one tiny judge, built once."""

import pytest

from tests.downstream.judge_fixtures import make_judge_dir


@pytest.fixture(scope="session")
def judge_dir(tmp_path_factory):
    return make_judge_dir(tmp_path_factory.mktemp("judge_model"))


@pytest.fixture(scope="session")
def judge(judge_dir):
    from gramr2_jax.judge import Judge

    return Judge.from_pretrained(judge_dir, batch_size=4)
