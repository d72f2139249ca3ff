"""Sampling: batched generation with a KV cache, verdict probabilities, scoring."""

from gramr2_jax.sampling.methods import Greedy, Method, Temperature, TopK, TopP, make_method
from gramr2_jax.sampling.padding import bucket_length, left_pad, padded_count
from gramr2_jax.sampling.sampler import SampleOutput, Sampler
from gramr2_jax.sampling.scoring import ScoreOutput
from gramr2_jax.sampling.verdict import Verdict

__all__ = [
    "Greedy", "Method", "Temperature", "TopK", "TopP", "make_method", "bucket_length",
    "left_pad", "padded_count", "SampleOutput", "Sampler", "ScoreOutput", "Verdict",
]
