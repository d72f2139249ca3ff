"""A tiny random judge model directory and a scripted fake sampling step, for the judge tests.

The model is a random Hugging Face Llama (transformers + torch) with a byte-level BPE
tokenizer trained here on judge-format strings, so "A" and "B" are single tokens.
Being random, it rarely writes the answer tags; verdict logic is tested with `Script`.
"""

from __future__ import annotations

import pathlib
import re

from gramr2_jax.data import judge_format as jf

JUDGE_SETTINGS = {"template": "compact", "max_prompt_len": 192, "max_new_tokens": 12}


def _tokenizer_texts() -> list[str]:
    texts = []
    for i in range(40):
        verdict = "AB"[i % 2]
        prompt = jf.format_judge_prompt(f"What is {i} plus {i}?", f"It is {2 * i}.",
                                        f"It is {2 * i + 1}.", "compact")
        texts.append(prompt + jf.format_judgment(f"Response {verdict} is correct.", verdict))
    return texts


def make_judge_dir(out_dir: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Writes tokenizer + random Llama + gramr2_judge.json into out_dir and returns it."""
    import torch
    import transformers

    from gramr2_jax.judge import write_judge_config
    from gramr2_jax.selftrain.stage0 import train_tokenizer

    tokenizer = train_tokenizer(_tokenizer_texts(), vocab_size=320, out_dir=out_dir)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights: far-from-uniform outputs, so seeds matter
        for param in model.parameters():
            if param.ndim > 1:
                param.normal_(0.0, 0.3)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_judge_config(out_dir, **JUDGE_SETTINGS)
    return out_dir


_SHOWN_RE = re.compile(r"\[The Start of Assistant ([AB])'s Response\]\n(.*?)\n"
                       r"\[The End of Assistant \1's Response\]", re.S)


def shown_responses(prompt: str) -> tuple[str, str]:
    """(first, second) response as they appear in a decoded judge prompt."""
    found = dict(_SHOWN_RE.findall(prompt))
    return found["A"], found["B"]


def judgment(verdict: str | None, rationale: str = "Feedback: fine.") -> str:
    """A generated judgment text; verdict None gives one without an answer block."""
    if verdict is None:
        return f"{jf.THINK_OPEN}\n{rationale}\n{jf.THINK_CLOSE}\n"
    return jf.format_judgment(rationale, verdict)


class Script:
    """Replaces `Judge._sample_rows`: each prompt's samples come from `respond`.

    respond(prompt_text, swapped) -> list of (text, p_first) or (text, p_first,
    log_odds_first) per sample, where prompt_text is the decoded judge prompt and swapped
    says whether the pair was shown as (B, A).
    Calls are recorded as lists of decoded prompts.
    """

    def __init__(self, judge, respond):
        self.judge, self.respond, self.calls = judge, respond, []

    def __call__(self, prompt_ids, keys, *, num_samples, seed, method):
        del seed, method
        prompts = [self.judge.tokenizer.decode(ids) for ids in prompt_ids]
        self.calls.append(prompts)
        out = []
        for text, key in zip(prompts, keys):
            samples = self.respond(text, bool(key % 2))
            if len(samples) != num_samples:
                raise ValueError(f"respond gave {len(samples)} samples, not {num_samples}")
            out.append([(t, p, len(t), *log_odds) for t, p, *log_odds in samples])
        return out


def scripted(judge, monkeypatch, respond) -> Script:
    """Makes `judge` sample from `respond` for the rest of the test."""
    script = Script(judge, respond)
    monkeypatch.setattr(judge, "_sample_rows", script)
    monkeypatch.setattr(judge, "_compile_ahead", lambda *args, **kwargs: None)
    return script
