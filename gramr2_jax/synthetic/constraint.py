"""Instruction-constraint pairs: one response obeys a checkable rule, the other breaks it.

Rules: an exact word count, lowercase only, a list of N items of a kind, and
naming items of a kind that avoid a letter. Harder items break the rule more
subtly (off by one word, a single capital, one intruder in the list).
"""

from __future__ import annotations

import dataclasses
import random
import re

from gramr2_jax.synthetic.task import Task, match_claim

KINDS = {
    "colours": tuple("red blue green yellow pink black white brown grey purple".split()),
    "animals": tuple("cat dog cow pig fox owl bear wolf lion duck goat horse".split()),
    "fruits": tuple("apple pear plum kiwi fig lime lemon mango grape peach melon banana".split()),
}
SINGULAR = {"colours": "colour", "animals": "animal", "fruits": "fruit"}
TOPICS = ("sea", "sky", "cat", "forest", "city", "rain", "sun", "river", "garden", "night")
ADJECTIVES = (
    "calm", "blue", "deep", "wide", "cold", "quiet", "bright", "dark",
    "soft", "warm", "old", "green", "still", "vast", "grey", "wild",
)

_WORDS_RE = re.compile(r"^Describe the (\w+) in exactly (\d+) words\.$")
_LOWER_RE = re.compile(r"^Describe the (\w+) using only lowercase letters\.$")
_LIST_RE = re.compile(r"^List (\d+) (colours|animals|fruits)\.$")
_LETTER_RE = re.compile(
    r"^Name (?:an? (colour|animal|fruit)|(\d+) (colours|animals|fruits)) without the letter ([a-z])\.$"
)


def _with_article(kind: str) -> str:
    noun = SINGULAR[kind]
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _count_phrase(count: int, kind: str) -> str:
    return f"{count} {SINGULAR[kind] if count == 1 else kind}"


def _items(response: str) -> list[str]:
    return [item.strip().lower() for item in response.split(",") if item.strip()]


@dataclasses.dataclass(frozen=True)
class WordCountTask(Task):
    words: int
    category = "constraint"

    def fact(self) -> str:
        return f"The prompt asks for exactly {self.words} words"

    def describe(self, response: str) -> str:
        return f"has {len(response.split())} words"

    def is_good(self, response: str) -> bool:
        return len(response.split()) == self.words

    def implied_good(self, fact: str, description: str) -> bool | None:
        said = match_claim(r"has (\d+) words", description)
        if not self.check_fact(fact) or said is None:
            return None
        return int(said.group(1)) == self.words


@dataclasses.dataclass(frozen=True)
class LowercaseTask(Task):
    category = "constraint"

    def fact(self) -> str:
        return "The prompt asks for only lowercase letters"

    def describe(self, response: str) -> str:
        return "has no capital letters" if self.is_good(response) else "has capital letters"

    def is_good(self, response: str) -> bool:
        return not any(ch.isupper() for ch in response)

    def implied_good(self, fact: str, description: str) -> bool | None:
        said = match_claim(r"has (no )?capital letters", description)
        if not self.check_fact(fact) or said is None:
            return None
        return said.group(1) is not None


@dataclasses.dataclass(frozen=True)
class ListTask(Task):
    count: int
    kind: str
    category = "constraint"

    def fact(self) -> str:
        return f"The prompt asks for {_count_phrase(self.count, self.kind)}"

    def _split(self, response: str) -> tuple[int, int]:
        items = _items(response)
        in_kind = sum(item in KINDS[self.kind] for item in items)
        return in_kind, len(items) - in_kind

    def describe(self, response: str) -> str:
        in_kind, others = self._split(response)
        phrase = f"lists {_count_phrase(in_kind, self.kind)}"
        if others:
            phrase += f" and {others} other {'word' if others == 1 else 'words'}"
        return phrase

    def is_good(self, response: str) -> bool:
        return self._split(response) == (self.count, 0)

    def implied_good(self, fact: str, description: str) -> bool | None:
        nouns = f"(?:{SINGULAR[self.kind]}|{self.kind})"
        said = match_claim(rf"lists (\d+) {nouns}(?: and (\d+) other words?)?", description)
        if not self.check_fact(fact) or said is None:
            return None
        return int(said.group(1)) == self.count and said.group(2) is None


@dataclasses.dataclass(frozen=True)
class AvoidLetterTask(Task):
    count: int
    kind: str
    letter: str
    category = "constraint"

    def _request(self) -> str:
        return _with_article(self.kind) if self.count == 1 else f"{self.count} {self.kind}"

    def fact(self) -> str:
        return f"The prompt asks for {self._request()} without the letter {self.letter}"

    def describe(self, response: str) -> str:
        items = _items(response)
        if any(item not in KINDS[self.kind] for item in items):
            return f"names something that is not {_with_article(self.kind)}"
        if len(items) != self.count:
            return f"names {_count_phrase(len(items), self.kind)}"
        if any(self.letter in item for item in items):
            return f"uses the letter {self.letter}"
        return f"avoids the letter {self.letter}"

    def is_good(self, response: str) -> bool:
        return self.describe(response) == f"avoids the letter {self.letter}"

    def implied_good(self, fact: str, description: str) -> bool | None:
        if not self.check_fact(fact):
            return None
        if match_claim(rf"avoids the letter {self.letter}", description):
            return True
        bad = (rf"uses the letter {self.letter}", rf"names something that is not an? {SINGULAR[self.kind]}",
               rf"names (\d+) (?:{SINGULAR[self.kind]}|{self.kind})")
        for pattern in bad:
            if said := match_claim(pattern, description):
                # "names N <kind>" is bad only for a count other than the one asked for.
                return None if said.groups() and int(said.group(1)) == self.count else False
        return None


def parse(prompt: str) -> Task | None:
    if match := _WORDS_RE.match(prompt):
        return WordCountTask(int(match.group(2)))
    if _LOWER_RE.match(prompt):
        return LowercaseTask()
    if match := _LIST_RE.match(prompt):
        return ListTask(int(match.group(1)), match.group(2))
    if match := _LETTER_RE.match(prompt):
        singular, count, plural, letter = match.groups()
        if singular:
            return AvoidLetterTask(1, singular + "s", letter)
        return AvoidLetterTask(int(count), plural, letter)
    return None


def _phrase(rng: random.Random, topic: str, words: int) -> str:
    return " ".join(rng.sample(ADJECTIVES, words - 1) + [topic])


def _word_count(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    low, high = {0: (3, 4), 1: (4, 6), 2: (5, 8)}[difficulty]
    words = rng.randint(low, high)
    miss = rng.choice({0: (-2, 2, 3), 1: (-2, -1, 1, 2), 2: (-1, 1)}[difficulty])
    topic = rng.choice(TOPICS)
    prompt = f"Describe the {topic} in exactly {words} words."
    return prompt, _phrase(rng, topic, words), _phrase(rng, topic, words + miss)


def _lowercase(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    topic = rng.choice(TOPICS)
    chosen = _phrase(rng, topic, rng.randint(3, 5))
    words = _phrase(rng, topic, rng.randint(3, 5)).split()
    if difficulty == 0:
        words = [word.upper() for word in words]
    elif difficulty == 1:
        words[0] = words[0].capitalize()
    else:  # one capital in the middle of the text
        index = rng.randrange(1, len(words))
        words[index] = words[index].capitalize()
    return f"Describe the {topic} using only lowercase letters.", chosen, " ".join(words)


def _list(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    kind = rng.choice(sorted(KINDS))
    count = rng.randint(*{0: (2, 3), 1: (2, 4), 2: (3, 5)}[difficulty])
    chosen = rng.sample(KINDS[kind], count)
    if difficulty == 2:  # right length, one item of another kind
        other = rng.choice([k for k in sorted(KINDS) if k != kind])
        intruder = rng.choice([w for w in KINDS[other] if w not in KINDS[kind]])
        rejected = rng.sample(KINDS[kind], count - 1)
        rejected.insert(rng.randrange(count), intruder)
    else:
        miss = rng.choice((-1, 1)) * (2 if difficulty == 0 and count > 2 else 1)
        rejected = rng.sample(KINDS[kind], count + miss)
    return f"List {count} {kind}.", ", ".join(chosen), ", ".join(rejected)


def _avoid_letter(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    kind = rng.choice(sorted(KINDS))
    count = 2 if difficulty == 2 else 1
    letters = sorted({ch for word in KINDS[kind] for ch in word})
    while True:  # a letter that some but not too few items avoid
        letter = rng.choice(letters)
        avoiding = [w for w in KINDS[kind] if letter not in w]
        using = [w for w in KINDS[kind] if letter in w]
        if len(avoiding) >= 2 and using:
            break
    chosen = rng.sample(avoiding, count)
    # Harder items hide the offending word among good ones.
    rejected = rng.sample(avoiding, count - 1) + [rng.choice(using)]
    rng.shuffle(rejected)
    if count == 1:
        prompt = f"Name {_with_article(kind)} without the letter {letter}."
    else:
        prompt = f"Name {count} {kind} without the letter {letter}."
    return prompt, ", ".join(chosen), ", ".join(rejected)


_RULES = (_word_count, _lowercase, _list, _avoid_letter)


def generate(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    """(prompt, chosen, rejected)."""
    return rng.choice(_RULES)(rng, difficulty)
