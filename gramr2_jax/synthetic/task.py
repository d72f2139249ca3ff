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

    @abc.abstractmethod
    def implied_good(self, fact: str, description: str) -> bool | None:
        """Whether a response that `description` describes is good IF `fact` were true.

        None when the fact does not restate this prompt, or a phrase does not parse.
        It never decides whether the fact (or the description) is true -- only what
        the two say together -- so a rationale checked with it is checked for
        coherence, not against the truth a verifier or gold label would give.
        """


def match_claim(pattern: str, claim: str) -> re.Match | None:
    """A claim phrase matched whole, case- and whitespace-insensitively."""
    return re.fullmatch(pattern, normalize(claim))
