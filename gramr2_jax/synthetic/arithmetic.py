"""Arithmetic pairs: "What is 17 + 25?" answered with a short worked step, right vs wrong."""

from __future__ import annotations

import dataclasses
import random
import re

from gramr2_jax.synthetic.task import Task, match_claim

_PROMPT_RE = re.compile(r"^What is (\d+(?: [-+*] \d+)+)\?$")
_EQUATION_RE = re.compile(r"^(\d+(?: [-+*] \d+)+) = (-?\d+)$")
_ANSWER_RE = re.compile(r"The answer is (-?\d+)\.")


def evaluate(expression: str) -> int:
    """Integer value of "a op b op c" with * before + and - (no eval())."""
    tokens = expression.split()
    terms: list[int] = [int(tokens[0])]
    signs: list[int] = [1]
    for op, number in zip(tokens[1::2], tokens[2::2]):
        if op == "*":
            terms[-1] *= int(number)
        else:
            terms.append(int(number))
            signs.append(1 if op == "+" else -1)
    return sum(sign * term for sign, term in zip(signs, terms))


@dataclasses.dataclass(frozen=True)
class ArithmeticTask(Task):
    expression: str
    category = "arithmetic"

    @property
    def value(self) -> int:
        return evaluate(self.expression)

    def fact(self) -> str:
        return f"{self.expression} = {self.value}"

    def check_fact(self, claim: str) -> bool:
        # Recompute the stated equation; it must also be about this prompt.
        match = _EQUATION_RE.match(" ".join(claim.split()))
        return bool(
            match
            and match.group(1) == self.expression
            and evaluate(match.group(1)) == int(match.group(2))
        )

    def answer(self, response: str) -> int | None:
        found = _ANSWER_RE.findall(response)
        return int(found[-1]) if found else None

    def describe(self, response: str) -> str:
        answer = self.answer(response)
        return "gives no answer" if answer is None else f"answers {answer}"

    def is_good(self, response: str) -> bool:
        return self.answer(response) == self.value

    def implied_good(self, fact: str, description: str) -> bool | None:
        stated = match_claim(re.escape(self.expression) + r" = (-?\d+)", fact)
        if stated is None:
            return None
        if match_claim("gives no answer", description):
            return False
        answer = match_claim(r"answers (-?\d+)", description)
        return None if answer is None else int(answer.group(1)) == int(stated.group(1))


def parse(prompt: str) -> ArithmeticTask | None:
    match = _PROMPT_RE.match(prompt)
    return ArithmeticTask(match.group(1)) if match else None


def _wrong_value(rng: random.Random, value: int, difficulty: int) -> int:
    # Easy items are off by a lot; hard ones by a slip of 1-2 or a carry of 10.
    offsets = {0: range(5, 16), 1: range(1, 4), 2: (1, 2, 10)}[difficulty]
    offset = rng.choice(list(offsets))
    return value + offset if value - offset < 0 or rng.random() < 0.5 else value - offset


def _solution(steps: list[str], answer: int) -> str:
    return f"{', '.join(steps)}. The answer is {answer}."


def generate(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    """(prompt, chosen, rejected)."""
    if difficulty == 0:
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        op = rng.choice("+-")
        a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
        expression = f"{a} {op} {b}"
    elif difficulty == 1:
        op = rng.choice("+-*")
        a = rng.randint(10, 99)
        b = rng.randint(2, 9) if op == "*" else rng.randint(10, a if op == "-" else 99)
        expression = f"{a} {op} {b}"
    else:
        return _generate_two_step(rng)
    value = evaluate(expression)
    wrong = _wrong_value(rng, value, difficulty)
    chosen = _solution([f"{expression} = {value}"], value)
    rejected = _solution([f"{expression} = {wrong}"], wrong)
    return f"What is {expression}?", chosen, rejected


def _generate_two_step(rng: random.Random) -> tuple[str, str, str]:
    """"a + b * c": multiply first, then add; the wrong answer slips in a step or at the end."""
    b, c = rng.randint(2, 9), rng.randint(2, 9)
    product = b * c
    op = rng.choice("+-")
    a = rng.randint(product if op == "-" else 10, 99)
    expression = f"{a} {op} {b} * {c}"
    value = evaluate(expression)
    chosen = _solution([f"{b} * {c} = {product}", f"{a} {op} {product} = {value}"], value)
    if rng.random() < 0.5:  # wrong product carried through
        bad_product = product + rng.choice((-1, 1))
        wrong = a + bad_product if op == "+" else a - bad_product
        steps = [f"{b} * {c} = {bad_product}", f"{a} {op} {bad_product} = {wrong}"]
        rejected = _solution(steps, wrong)
    else:  # correct working, wrong final answer copied out
        wrong = _wrong_value(rng, value, 2)
        steps = [f"{b} * {c} = {product}", f"{a} {op} {product} = {value}"]
        rejected = _solution(steps, wrong)
    return f"What is {expression}?", chosen, rejected
