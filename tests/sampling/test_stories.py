"""The real stories260K checkpoint reproduces llama2.c's greedy sample."""

import json

import numpy as np
import pytest

from gramr2_jax.models import from_pretrained, load_tokenizer
from gramr2_jax.sampling import Sampler

pytestmark = pytest.mark.shared


def test_stories260k_greedy_256_tokens(shared_dir):
    expected = json.loads((shared_dir / "models/stories260K/expected_greedy.json").read_text())
    model_dir = shared_dir / "models/stories260K_hf"
    sampler = Sampler(from_pretrained(model_dir), load_tokenizer(model_dir))
    # llama2.c stops when it samples BOS (id 1); the reference ran all 256 steps.
    out = sampler.generate([expected["start_ids"]], max_new_tokens=256, temperature=0,
                           stop_tokens=[1])
    n = int(out.lengths[0]) - int(out.stopped[0])
    assert out.tokens[0, :n].tolist() == expected["greedy_ids"]
    assert out.texts[0] == expected["greedy_text"]
    assert np.all(out.logprobs[0, :n] <= 0)
