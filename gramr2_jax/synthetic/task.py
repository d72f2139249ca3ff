"""What every synthetic category provides: a task parsed from the prompt text alone.

A task knows the truth about its prompt, so a program can judge any response
text and any rationale claim without a gold label. Rationales state facts in
the phrases these methods produce, which is what makes their claims checkable.
"""

from __future__ import annotations

import abc
import re

_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form used to compare claim phrases."""
    return _SPACES.sub(" ", text.strip().lower())


class Task(abc.ABC):
    """One prompt's ground truth."""

    category: str

    @abc.abstractmethod
    def fact(self) -> str:
        """The one fact a rationale states about the prompt, e.g. "17 + 25 = 42"."""

    @abc.abstractmethod
    def describe(self, response: str) -> str:
        """What a response does, as a phrase, e.g. "answers 41"."""

    @abc.abstractmethod
    def is_good(self, response: str) -> bool:
        """Whether the response does what the prompt asks."""

    def check_fact(self, claim: str) -> bool:
        """Whether a stated fact is true for this prompt."""
        return normalize(claim) == normalize(self.fact())
