"""Tokenizer loading through transformers, from the same local directory as the model."""

from __future__ import annotations

import os
import pathlib


def load_tokenizer(path: str | os.PathLike):
    """A transformers tokenizer from a local directory (never the hub).

    Uses AutoTokenizer when the directory has tokenizer.json or
    tokenizer_config.json; a bare SentencePiece `tokenizer.model` loads as a
    Llama tokenizer and bare `vocab.json` + `merges.txt` as GPT-2 BPE.
    """
    import transformers

    d = pathlib.Path(path)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: tokenizer directory not found")
    if (d / "tokenizer.json").exists() or (d / "tokenizer_config.json").exists():
        return transformers.AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    if (d / "tokenizer.model").exists():
        # from_pretrained converts the SentencePiece model; the bare constructor
        # in transformers 5 silently builds an empty vocabulary.
        return transformers.LlamaTokenizer.from_pretrained(str(d), local_files_only=True)
    if (d / "vocab.json").exists() and (d / "merges.txt").exists():
        return transformers.GPT2TokenizerFast.from_pretrained(str(d), local_files_only=True)
    raise FileNotFoundError(f"{d}: no tokenizer files (tokenizer.json, tokenizer_config.json, "
                            "tokenizer.model or vocab.json + merges.txt)")
