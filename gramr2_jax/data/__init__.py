"""Preference data: reading, validating, storing, prompting and batching.

    errors.py        DataError (`path:line: field: problem`), ReadReport, exit_on_data_error
    schema.py        LabelledPair / UnlabelledPair / JudgeExample and per-field checks
    jsonl.py         strict or skipping JSONL / JSON-list row reading
    sources.py       one reader per format (labelled, unlabelled, HH-RLHF, LLMBar, PandaLM, GSM8K)
    tfds_builder.py  the `gramr2_pairs` TFDS builder (ArrayRecord, no TensorFlow)
    judge_format.py  judge template text and verdict parser
    prompts.py       token ids of judge prompts / SFT targets, verdict-token check, order balancing
    batching.py      per-example encoders and right-padded numpy batches
    loader.py        deterministic, resumable, host-sharded, length-bucketed Loader

Import submodules directly; this package imports nothing heavy (tfds, transformers).
"""
