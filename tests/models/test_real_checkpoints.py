"""The real stories260K checkpoint and the real tokenizers in ../shared."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from gramr2_jax.models import from_pretrained, load_tokenizer

pytestmark = pytest.mark.shared


def test_stories260k_logits_after_bos(shared_dir):
    expected = json.loads((shared_dir / "models/stories260K/expected_greedy.json").read_text())
    model = from_pretrained(shared_dir / "models/stories260K_hf")
    logits = np.asarray(model(jnp.asarray([expected["start_ids"]]))[0, -1])
    np.testing.assert_allclose(logits[:8], expected["logits_after_bos_first8"], atol=2e-4)
    top5 = np.argsort(-logits)[:5]
    assert top5.tolist() == expected["logits_after_bos_top5"]["ids"]
    np.testing.assert_allclose(logits[top5], expected["logits_after_bos_top5"]["values"], atol=2e-4)


def test_stories260k_scanned_layout_same_logits(shared_dir):
    path = shared_dir / "models/stories260K_hf"
    tokens = jnp.asarray([[1, 403, 407, 261, 378]])
    a = np.asarray(from_pretrained(path)(tokens))
    b = np.asarray(from_pretrained(path, scan_layers=True, remat="full")(tokens))
    np.testing.assert_allclose(a, b, atol=5e-5)  # f32 reassociation only


# (directory, text, ids) exactly as listed in each tokenizer's SOURCE.md
TOKENIZER_VECTORS = [
    ("tokenizers/gpt2", "Hello world! The quick brown fox jumps over the lazy dog.",
     [15496, 995, 0, 383, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]),
    ("tokenizers/mistral_v1_sentencepiece",
     "Hello world! The quick brown fox jumps over 12345 lazy dogs.",
     [22557, 1526, 28808, 415, 2936, 9060, 285, 1142, 461, 10575, 754, 28705, 28740, 28750,
      28770, 28781, 28782, 17898, 9540, 28723]),
    ("tokenizers/qwen2", "<|im_start|>hello<|im_end|>", [151644, 14990, 151645]),
    ("tokenizers/qwen2", "Hello, world!", [9707, 11, 1879, 0]),
    ("tokenizers/qwen2", "1234567 numbers", [16, 17, 18, 19, 20, 21, 22, 5109]),
    ("tokenizers/qwen2", "  two spaces\n\nnewline", [220, 1378, 12621, 271, 89202]),
    ("tokenizers/qwen2", "def f():\n    return 1\n", [750, 282, 3932, 262, 470, 220, 16, 198]),
    ("models/stories260K_hf", "Once upon a time, there was a little girl named Lily.",
     [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]),
]


@pytest.mark.parametrize("directory,text,ids", TOKENIZER_VECTORS,
                         ids=[f"{d.split('/')[-1]}-{i}" for i, (d, _, _) in enumerate(TOKENIZER_VECTORS)])
def test_real_tokenizer_ids(shared_dir, directory, text, ids):
    tok = load_tokenizer(shared_dir / directory)
    assert tok.encode(text, add_special_tokens=False) == ids
    assert tok.decode(ids) == text
