"""Small code and logic pairs: parity, len() of a string, sorting a list, the larger number."""

from __future__ import annotations

import dataclasses
import random
import re

from gramr2_jax.synthetic.task import Task, match_claim

WORDS = tuple("cat sun tree apple river blue stone house light garden moon bird".split())

_PARITY_RE = re.compile(r"^Is (\d+) (even|odd)\?$")
_LEN_RE = re.compile(r"^What does len\('([a-z ]+)'\) return\?$")
_SORT_RE = re.compile(r"^Sort \[([\d, ]+)\] in increasing order\.$")
_LARGER_RE = re.compile(r"^Which is larger, (\d+) or (\d+)\?$")


def _last_int(pattern: str, response: str) -> int | None:
    found = re.findall(pattern, response)
    return int(found[-1]) if found else None


def _format_list(numbers: list[int]) -> str:
    return "[" + ", ".join(str(n) for n in numbers) + "]"


def _same_stated_value(fact_pattern: str, fact: str, said_pattern: str,
                       description: str) -> bool | None:
    """For facts and descriptions that each state one value: the description's value is the
    fact's (a description that gives no answer implies a bad response)."""
    stated = match_claim(fact_pattern, fact)
    if stated is None:
        return None
    if match_claim(r"gives no (?:answer|list)", description):
        return False
    said = match_claim(said_pattern, description)
    return None if said is None else " ".join(said.group(1).split()) == " ".join(stated.group(1).split())


@dataclasses.dataclass(frozen=True)
class ParityTask(Task):
    number: int
    category = "logic"

    def _truth(self) -> str:
        return "even" if self.number % 2 == 0 else "odd"

    def fact(self) -> str:
        return f"{self.number} is {self._truth()}"

    def _said(self, response: str) -> str | None:
        found = re.findall(rf"\b{self.number} is (even|odd)\b", response)
        return found[-1] if found else None

    def describe(self, response: str) -> str:
        said = self._said(response)
        return f"says {self.number} is {said}" if said else "gives no answer"

    def is_good(self, response: str) -> bool:
        return self._said(response) == self._truth()

    def implied_good(self, fact: str, description: str) -> bool | None:
        return _same_stated_value(rf"{self.number} is (even|odd)", fact,
                                  rf"says {self.number} is (even|odd)", description)


@dataclasses.dataclass(frozen=True)
class LenTask(Task):
    text: str
    category = "logic"

    def fact(self) -> str:
        return f"len('{self.text}') is {len(self.text)}"

    def describe(self, response: str) -> str:
        said = _last_int(r"returns (\d+)", response)
        return "gives no answer" if said is None else f"says {said}"

    def is_good(self, response: str) -> bool:
        return _last_int(r"returns (\d+)", response) == len(self.text)

    def implied_good(self, fact: str, description: str) -> bool | None:
        return _same_stated_value(rf"len\('{re.escape(self.text)}'\) is (\d+)", fact,
                                  r"says (\d+)", description)


@dataclasses.dataclass(frozen=True)
class SortTask(Task):
    numbers: tuple[int, ...]
    category = "logic"

    def fact(self) -> str:
        return f"The sorted list is {_format_list(sorted(self.numbers))}"

    def _given(self, response: str) -> list[int] | None:
        found = re.findall(r"\[([\d, ]*)\]", response)
        if not found:
            return None
        return [int(n) for n in found[-1].replace(",", " ").split()]

    def describe(self, response: str) -> str:
        given = self._given(response)
        return "gives no list" if given is None else f"gives {_format_list(given)}"

    def is_good(self, response: str) -> bool:
        return self._given(response) == sorted(self.numbers)

    def implied_good(self, fact: str, description: str) -> bool | None:
        return _same_stated_value(r"the sorted list is (\[[\d, ]*\])", fact,
                                  r"gives (\[[\d, ]*\])", description)


@dataclasses.dataclass(frozen=True)
class LargerTask(Task):
    first: int
    second: int
    category = "logic"

    def fact(self) -> str:
        return f"The larger number is {max(self.first, self.second)}"

    def describe(self, response: str) -> str:
        said = _last_int(r"(\d+) is larger", response)
        return "gives no answer" if said is None else f"says {said}"

    def is_good(self, response: str) -> bool:
        return _last_int(r"(\d+) is larger", response) == max(self.first, self.second)

    def implied_good(self, fact: str, description: str) -> bool | None:
        # The stated number must be one of the prompt's two (which one is not checked).
        return _same_stated_value(rf"the larger number is ({self.first}|{self.second})", fact,
                                  r"says (\d+)", description)


def parse(prompt: str) -> Task | None:
    if match := _PARITY_RE.match(prompt):
        return ParityTask(int(match.group(1)))
    if match := _LEN_RE.match(prompt):
        return LenTask(match.group(1))
    if match := _SORT_RE.match(prompt):
        return SortTask(tuple(int(n) for n in match.group(1).replace(",", " ").split()))
    if match := _LARGER_RE.match(prompt):
        return LargerTask(int(match.group(1)), int(match.group(2)))
    return None


def _parity(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    number = rng.randint(*{0: (2, 20), 1: (21, 199), 2: (200, 9999)}[difficulty])
    asked = rng.choice(("even", "odd"))
    truth = "even" if number % 2 == 0 else "odd"
    wrong = "odd" if truth == "even" else "even"
    yes, no = ("Yes", "No") if asked == truth else ("No", "Yes")
    if difficulty == 2:  # the same correct step, then a wrong conclusion
        step = f"{number} ends in {number % 10}, so"
        chosen = f"{yes}. {step} {number} is {truth}."
        rejected = f"{no}. {step} {number} is {wrong}."
    else:
        chosen, rejected = f"{yes}, {number} is {truth}.", f"{no}, {number} is {wrong}."
    return f"Is {number} {asked}?", chosen, rejected


def _len(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    if difficulty == 2:  # the space counts; the wrong answer forgets it
        text = " ".join(rng.sample(WORDS, 2))
        wrong = len(text) - 1
    else:
        pool = [w for w in WORDS if (len(w) <= 4) == (difficulty == 0)]
        text = rng.choice(pool)
        wrong = len(text) + rng.choice((-1, 1))
    if difficulty == 0:
        chosen, rejected = f"It returns {len(text)}.", f"It returns {wrong}."
    else:
        chosen = f"'{text}' has {len(text)} characters, so it returns {len(text)}."
        rejected = f"'{text}' has {wrong} characters, so it returns {wrong}."
    return f"What does len('{text}') return?", chosen, rejected


def _sort(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    size, top = {0: (3, 9), 1: (4, 20), 2: (5, 99)}[difficulty]
    numbers = rng.sample(range(1, top + 1), size)
    while numbers == sorted(numbers):
        rng.shuffle(numbers)
    ordered = sorted(numbers)
    if difficulty == 0:
        wrong = ordered[::-1]
    else:  # one adjacent pair out of place
        wrong = list(ordered)
        index = rng.randrange(size - 1)
        wrong[index], wrong[index + 1] = wrong[index + 1], wrong[index]
    prompt = f"Sort {_format_list(numbers)} in increasing order."
    answer = "The sorted list is {}."
    return prompt, answer.format(_format_list(ordered)), answer.format(_format_list(wrong))


def _larger(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    if difficulty == 2:  # the same digits in another order
        digits = rng.sample("123456789", 3)
        first = int("".join(digits))
        second = int("".join(digits[:1] + digits[:0:-1]))
    else:
        top = 20 if difficulty == 0 else 999
        first, second = rng.sample(range(1, top + 1), 2)
    big, small = max(first, second), min(first, second)
    return f"Which is larger, {first} or {second}?", f"{big} is larger.", f"{small} is larger."


_KINDS = (_parity, _len, _sort, _larger)


def generate(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    """(prompt, chosen, rejected)."""
    return rng.choice(_KINDS)(rng, difficulty)
