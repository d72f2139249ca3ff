"""Greedy decoding equals transformers' greedy `generate`, token for token."""

import numpy as np
import pytest

from gramr2_jax.models import from_pretrained
from gramr2_jax.sampling import Sampler
from tests.models.hf_fixtures import make_hf_model

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch")

PROMPTS = [[5, 17, 33, 9, 71, 4, 88, 12, 40, 3, 66], [7, 21], [90, 14, 2, 55, 31]]
NEW_TOKENS = 12


def _hf_greedy(hf_model, prompts) -> np.ndarray:
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    with torch.no_grad():
        out = hf_model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                pad_token_id=0, eos_token_id=None)
    return out[:, width:].numpy()


@pytest.mark.parametrize("family", ["llama3", "qwen3"])
def test_greedy_matches_transformers_and_each_row_alone(family, tmp_path):
    hf_model = make_hf_model(family, tmp_path)
    expected = _hf_greedy(hf_model, PROMPTS)
    sampler = Sampler(from_pretrained(tmp_path))
    out = sampler.generate(PROMPTS, max_new_tokens=NEW_TOKENS, temperature=0, stop_tokens=())
    np.testing.assert_array_equal(out.tokens, expected)
    for row, prompt in enumerate(PROMPTS):
        alone = sampler.generate([prompt], max_new_tokens=NEW_TOKENS, temperature=0,
                                 stop_tokens=())
        np.testing.assert_array_equal(alone.tokens[0], out.tokens[row])
