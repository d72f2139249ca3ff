"""Stage 0: the demo's data splits, its tokenizer, and a tiny base LM.

Data: disjoint synthetic splits — a small labelled seed set with rule-written
rationales, an unlabelled pool (its gold labels are kept for reporting only),
an in-distribution test set and a harder out-of-distribution one — plus domain
text for pretraining (GRAM-style: a question, then a pair of responses).
"""

from __future__ import annotations

import pathlib

import ml_collections

from gramr2_jax import synthetic
from gramr2_jax.selftrain import artifacts

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")


def _split_sizes(data: ml_collections.ConfigDict) -> dict[str, tuple[int, int]]:
    """Each split as one part per training difficulty (OOD: the harder one)."""
    sizes = {}
    for name, n in (("seed", data.num_seed), ("unlabelled", data.num_unlabelled),
                    ("test_id", data.num_test)):
        per = n // len(data.train_difficulties)
        for d in data.train_difficulties:
            sizes[f"{name}@{d}"] = (per, d)
    sizes[f"test_ood@{data.ood_difficulty}"] = (data.num_test, data.ood_difficulty)
    return sizes


def make_data(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> pathlib.Path:
    """Writes seed/unlabelled/test_id/test_ood JSONL (+ pretraining text); returns the dir."""
    out = workdir / "data"
    if artifacts.is_done(out):
        return out
    if config.data.source == "files":
        _copy_files(config.data, out)
    elif config.data.source == "synthetic":
        _make_synthetic(config.data, out)
    else:
        raise ValueError(f"data.source: expected 'synthetic' or 'files', got {config.data.source!r}")
    return out


def _judge_rows(examples) -> list[dict]:
    return [{"id": e.id or f"{i:07d}", "category": e.category or "all", "prompt": e.prompt,
             "response_a": e.response_a, "response_b": e.response_b, "gold": e.verdict,
             "rationale": e.rationale, "verdict": e.verdict} for i, e in enumerate(examples)]


def _copy_files(data: ml_collections.ConfigDict, out: pathlib.Path) -> None:
    """Real data from JSONL files: labelled seed (with rationales naming the chosen
    response as A), an unlabelled pool, and labelled test sets (gold for evaluation).
    Rows are validated strictly: a bad row stops the run with file:line: field."""
    from gramr2_jax.data.prompts import balance_order
    from gramr2_jax.data.sources import read_labelled_pairs, read_unlabelled_pairs

    seed_pairs, _ = read_labelled_pairs(data.seed_path)
    missing = [p.id or str(i) for i, p in enumerate(seed_pairs) if not p.rationale]
    if missing:
        raise ValueError(f"data.seed_path: {data.seed_path}: rows {missing[:5]} have no rationale "
                         "(stage 1 trains on rationale + verdict)")
    seed_rows = _judge_rows(balance_order(seed_pairs, data.seed))
    for row in seed_rows:
        row.pop("gold")
    artifacts.write_jsonl(out / "seed.jsonl", seed_rows)
    pool, _ = read_unlabelled_pairs(data.unlabelled_path)
    artifacts.write_jsonl(out / "unlabelled.jsonl", (
        {"id": p.id or f"{i:07d}", "category": "all", "prompt": p.prompt,
         "response_a": p.response_a, "response_b": p.response_b, "gold": None}
        for i, p in enumerate(pool)))
    for name in ("test_id", "test_ood"):
        pairs, _ = read_labelled_pairs(data[f"{name}_path"])
        rows = _judge_rows(balance_order(pairs, data.seed))
        artifacts.write_jsonl(out / f"{name}.jsonl", (
            {k: v for k, v in r.items() if k not in ("rationale", "verdict")} for r in rows))
    artifacts.mark_done(out, {"seed": len(seed_rows), "unlabelled": len(pool)})


def _make_synthetic(data: ml_collections.ConfigDict, out: pathlib.Path) -> None:
    categories = list(data.categories)
    parts = synthetic.make_splits(_split_sizes(data), categories, seed=data.seed)
    splits: dict[str, list[dict]] = {}
    for key, pairs in parts.items():
        splits.setdefault(key.split("@")[0], []).extend(pairs)
    artifacts.write_jsonl(out / "seed.jsonl", synthetic.seed_examples(splits["seed"], data.seed))
    artifacts.write_jsonl(out / "unlabelled.jsonl",
                          synthetic.to_unlabelled(splits["unlabelled"], data.seed))
    for name in ("test_id", "test_ood"):
        artifacts.write_jsonl(out / f"{name}.jsonl", synthetic.to_unlabelled(splits[name], data.seed))
    held_out = {synthetic.labelled_key(p) for name in ("test_id", "test_ood") for p in splits[name]}
    num_knowledge = int(data.num_pretrain * data.pretrain_knowledge_share)
    texts = synthetic.pretraining_texts(data.num_pretrain - num_knowledge, data.seed,
                                        categories=categories,
                                        judgment_share=data.pretrain_judgment_share,
                                        exclude=held_out)
    texts += synthetic.knowledge_texts(num_knowledge, data.seed, categories=categories,
                                       exclude=held_out)
    artifacts.write_jsonl(out / "pretrain.jsonl", ({"text": t} for t in texts))
    artifacts.mark_done(out, {name: len(rows) for name, rows in splits.items()})


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: pathlib.Path):
    """Byte-level BPE trained with `tokenizers`, saved as tokenizer.json (+ config).

    Byte-level means any text encodes (no <unk>); single letters are base tokens,
    so the verdicts "A" and "B" are one token each (checked at start-up).
    """
    import tokenizers
    import transformers
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(str(out_dir))
    return fast


def ensure_tokenizer(config: ml_collections.ConfigDict, workdir: pathlib.Path):
    """The run's tokenizer: the configured base model's, or one trained on domain text."""
    from gramr2_jax.models import load_tokenizer

    if config.model.hf_path:
        return load_tokenizer(config.model.hf_path)
    out = workdir / "stage0" / "tokenizer"
    if not artifacts.is_done(out):
        data = workdir / "data"
        texts = [r["text"] for r in artifacts.read_jsonl(data / "pretrain.jsonl")]
        texts += [r["target"] for r in artifacts.read_jsonl(data / "seed.jsonl")]
        train_tokenizer(texts, config.stage0.vocab_size, out)
        artifacts.mark_done(out)
    return load_tokenizer(out)
