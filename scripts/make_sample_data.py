#!/usr/bin/env python3
"""Generate the synthetic Sky-T1-style SFT sample shipped with rtrain.

The output, ``rtrain/assets/data/sky_t1_sample.jsonl``, mimics the schema of the
Sky-T1 SFT dataset (NovaSky-AI/Sky-T1_data_17k): one JSON object per line with a
``system`` prompt (STILL-2 style "thought / solution" instructions), a
``conversations`` list of ``{"from", "value"}`` turns and a ``domain`` tag, plus
per-domain reference fields:

* ``math``    -- ``answer``: the reference answer, equal to the final ``\\boxed{}``;
* ``code``    -- ``tests`` (``{"input": "f(...)", "output": "<repr>"}``) and ``entry_point``;
* ``science`` -- ``choices`` (four options) and ``answer`` (the letter A-D).

Every assistant turn has the layout::

    <|begin_of_thought|>\\n\\n{steps joined by blank lines}\\n\\n<|end_of_thought|>\\n\\n
    <|begin_of_solution|>\\n\\n{solution}\\n\\n<|end_of_solution|>

The problems are generated here and their answers computed here, so the file can
be used to train a tiny model end to end on CPU and to test the data pipeline
(tokenization, chat templating, loss masking, sequence packing). Thought lengths
follow a long-tailed distribution (roughly 300 to 9,000 characters per assistant
turn) so that packing matters. About 5% of the records are two-turn and about 2%
contain non-ASCII text.

Only the standard library is used and the output is deterministic: the same seed
always gives a byte-identical file. Regenerate it from the repository root with::

    python scripts/make_sample_data.py

(options: ``--seed`` (default 0), ``--out`` (default: the path above, resolved
relative to this script)). Generation is followed by a full check of the written
file; ``python scripts/make_sample_data.py --check`` only checks an existing file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import groupby
from pathlib import Path
from typing import Any, Callable

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "rtrain" / "assets" / "data" / "sky_t1_sample.jsonl"
DEFAULT_SEED = 0

DOMAIN_COUNTS = {"math": 240, "code": 120, "science": 40}
N_RECORDS = sum(DOMAIN_COUNTS.values())
N_TWO_TURN = 20  # 5%
N_NON_ASCII = 8  # 2%
MAX_FILE_BYTES = 1_200_000
MIN_ASSISTANT_CHARS = 300
MAX_ASSISTANT_CHARS = 9_000
# Target assistant length: lognormal (median ~550 characters) mixed with a small share
# of very long targets, so that a handful of records reach the 5k-9k range.
LENGTH_MEDIAN = 550
LENGTH_SIGMA = 0.85
LONG_SHARE = 0.03
LONG_RANGE = (5_000, MAX_ASSISTANT_CHARS)

BEGIN_THOUGHT, END_THOUGHT = "<|begin_of_thought|>", "<|end_of_thought|>"
BEGIN_SOLUTION, END_SOLUTION = "<|begin_of_solution|>", "<|end_of_solution|>"
BOXED_INSTRUCTION = "Return your final response within \\boxed{}."
CODE_HEADER = "Generate an executable Python function generated from the given prompt."
CODE_HEADER_FUNCTION = CODE_HEADER + " Return the function body without invoking it at the final solution."
CODE_HEADER_STDIN = (
    CODE_HEADER + " The function should take stdin as input and print the output."
    " Simply call the function after the definition."
)
LETTERS = "ABCD"

SYSTEM_PROMPT = (
    "As an assistant, your job is to work through each question with a long, systematic thinking process "
    "before committing to a final, precise and accurate solution. This means going through a full cycle of "
    "analysis, summarizing, exploration, reassessment, reflection, backtracking and iteration until the "
    "reasoning is well founded. Organize your response into two parts: Thought and Solution. In the Thought "
    "part, lay out your reasoning in this format: <|begin_of_thought|> {thought, with steps separated by "
    "'\\n\\n'} <|end_of_thought|> Each step should show careful work, such as analyzing the question, "
    "summarizing relevant findings, brainstorming new ideas, checking whether the current step is correct, "
    "fixing any mistakes and revisiting earlier steps. In the Solution part, drawing on the attempts, "
    "explorations and reflections of the Thought part, systematically present the final solution you judge "
    "to be correct. Keep the solution logical, accurate and concise, and include the steps needed to reach "
    "the conclusion, in this format: <|begin_of_solution|> {final formatted, precise and clear solution} "
    "<|end_of_solution|> Now, solve the following question following these guidelines:"
)

Probe = Callable[[random.Random], str]
Args = tuple[Any, ...]


@dataclass
class Draft:
    """A generated problem before its thought is padded to the sampled length."""

    domain: str
    user: str
    ask: str  # noun phrase naming what is asked, used in reflections
    final: str  # short phrase naming the result, used in conclusions and follow-ups
    steps: list[str]  # opener and core reasoning, in order
    conclusion: str  # last thought step
    solution: str
    recap: str  # solution of the follow-up turn in two-turn records
    probes: list[Probe]  # each returns a true, problem-specific verification sentence
    remarks: list[str] = field(default_factory=list)  # problem-specific reflections
    extra: dict[str, Any] = field(default_factory=dict)  # per-domain reference fields


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def signed(n: int) -> str:
    """``5 -> '+ 5'``, ``-5 -> '- 5'`` (for writing ``a + b`` with a signed ``b``)."""
    return f"+ {n}" if n >= 0 else f"- {-n}"


def paren(n: int | Fraction) -> str:
    return f"({n})" if n < 0 else str(n)


def linear_expr(a: int, b: int) -> str:
    """Render ``a*x + b`` as it would be written by hand."""
    coef = {1: "", -1: "-"}.get(a, str(a))
    text = f"{coef}x"
    return f"{text} {signed(b)}" if b else text


def fmt_num(x: int | Fraction) -> str:
    """Integers exactly, other rationals as a decimal with at most two places."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    return f"{float(x):.2f}".rstrip("0").rstrip(".")


def latex_frac(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    return f"{sign}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def factorize(n: int) -> list[tuple[int, int]]:
    factors, p = [], 2
    while p * p <= n:
        e = 0
        while n % p == 0:
            n, e = n // p, e + 1
        if e:
            factors.append((p, e))
        p += 1
    if n > 1:
        factors.append((n, 1))
    return factors


def factor_str(n: int) -> str:
    return " * ".join(f"{p}^{e}" if e > 1 else str(p) for p, e in factorize(n))


def is_prime(n: int) -> bool:
    return n > 1 and factorize(n) == [(n, 1)]


def call_expr(entry: str, args: Args) -> str:
    return f"{entry}({', '.join(repr(a) for a in args)})"


def pick(rng: random.Random, *options: str) -> str:
    return rng.choice(options)


# --------------------------------------------------------------------------------------
# Shared templates
# --------------------------------------------------------------------------------------

MATH_OPENERS = [
    "Okay, let's see. The problem asks for {ask}.",
    "Alright, I need to find {ask}. Let me read the problem carefully first.",
    "So the question is about {ask}. Let me think about how to approach it.",
    "Let me start by restating what is being asked: {ask}.",
    "Hmm, this problem wants {ask}. Let me break it down into small steps.",
]
MATH_CONCLUSIONS = [
    "Putting everything together, the answer is {final}.",
    "All the checks agree, so the final answer is {final}.",
    "So I'm confident the answer is {final}.",
    "Therefore the result is {final}.",
    "Everything is consistent. The answer is {final}.",
]
CODE_OPENERS = [
    "Okay, I need to write {ask}. Let me make sure I understand the requirements first.",
    "Let me think about how to implement {ask}.",
    "The task is to write {ask}. Let me start by restating what the function must do.",
    "Alright, so I have to produce {ask}. First, the exact behaviour.",
]
CODE_CONCLUSIONS = [
    "That covers the normal cases and the edge cases, so I can write the final solution.",
    "The implementation matches every example I traced, so I'm ready to write it up.",
    "I'm confident the function is correct now. Time to present it.",
    "Everything checks out; the final code is below.",
]
SCIENCE_OPENERS = [
    "Let me think about this question: it asks for {ask}.",
    "Okay, the question is about {ask}. Let me recall the relevant facts before looking at the options.",
    "So I need to determine {ask}. I'll work it out first and then match it to an option.",
]
SCIENCE_CONCLUSIONS = [
    "So the correct choice is {final}.",
    "All the other options have been ruled out, which leaves {final}.",
    "Therefore the answer is {final}.",
]

CHECK_WRAPPERS: dict[str, list[str]] = {
    "math": [
        "{p}",
        "Let me double-check that. {p}",
        "Wait, let me verify this another way. {p}",
        "Quick sanity check: {p}",
        "Hmm, I want to be careful here. {p}",
        "Going back over the numbers: {p}",
        "Another way to confirm: {p}",
        "Let me recompute this piece slowly. {p}",
        "I'll verify one more intermediate value. {p}",
        "Actually, let me make sure nothing slipped. {p}",
        "Let me test the result from a different angle. {p}",
    ],
    "code": [
        "{p}",
        "Let me trace another example by hand. {p}",
        "Testing the logic mentally: {p}",
        "Another check. {p}",
        "Let me be careful with this one. {p}",
        "What about a different input? {p}",
        "Wait, let me make sure the code handles this correctly. {p}",
        "I'll walk through one more case. {p}",
    ],
    "science": [
        "{p}",
        "Let me double-check. {p}",
        "Checking the other options as well: {p}",
        "Hmm, let me be careful. {p}",
        "To be thorough: {p}",
    ],
}
CHECK_SUFFIXES = ["", "", " Good.", " Okay.", " That is consistent with what I found.", " No issues there."]

GENERIC_REMARKS: dict[str, list[str]] = {
    "math": [
        "Let me make sure I'm answering the right question. The problem wants {ask}, and that is exactly "
        "the quantity I computed, not an intermediate value.",
        "Is there any trick hidden in the wording? Rereading the statement, I don't see one; each given "
        "number has been used exactly where it belongs.",
        "The most likely source of error in a problem like this is a small arithmetic slip, so it's worth "
        "re-verifying the key computations individually rather than trusting the first pass.",
        "I should also check that the answer has a sensible form. {final} is the kind of value the question "
        "expects, so the format looks right.",
        "Could I have misread one of the numbers? Going back to the problem statement... no, the values I "
        "used match the statement exactly.",
        "Let me think about whether a completely different method would give an independent confirmation; "
        "two methods that agree are much more convincing than one.",
        "At this point the main line of reasoning is done, and the remaining work is verification.",
    ],
    "code": [
        "I should keep the function name and signature exactly as requested, because the tests will call "
        "it directly.",
        "Performance is not a concern here: a single pass over the input is linear time, which is more than "
        "enough.",
        "A short, direct implementation is less likely to hide bugs than a clever one, so I'll prefer "
        "clarity.",
        "I'll make sure not to mutate the input argument, since the caller may still need it.",
        "Let me reread the statement once more to catch any requirement I may have skipped, such as the "
        "exact return type.",
        "It's worth listing the edge cases explicitly: empty input, a single element, and repeated values "
        "are the usual suspects.",
    ],
    "science": [
        "Let me reread the question stem to make sure I know exactly which quantity is asked for.",
        "Distractors in multiple-choice questions are usually built from common mistakes, so it's worth "
        "checking every option instead of stopping at the first plausible one.",
        "It helps to reason from the underlying concept rather than rely on a memorized association.",
        "I'm fairly sure about this, but a quick consistency check on the other options costs little.",
    ],
}

FOLLOW_UP_QUESTIONS = [
    "Can you double-check the answer?",
    "Are you sure? Please verify your result.",
    "Could you verify that once more before I submit it?",
    "I got something different. Can you re-check your work?",
    "Please double-check the final answer.",
]
FOLLOW_UP_OPENERS = [
    "Sure. Instead of repeating the earlier argument, let me verify the key results independently.",
    "Let me re-check the work carefully, focusing on the steps where a mistake would be most likely.",
    "Good idea to double-check. I'll redo the critical computations from scratch.",
    "Okay, let me verify this again step by step.",
]
FOLLOW_UP_CLOSERS = [
    "Every check agrees with the earlier result, so {final} stands.",
    "The verification confirms {final}.",
    "I don't find any error; the result remains {final}.",
]

NON_ASCII_STEPS: dict[str, list[str]] = {
    "math": [
        "In other words, the final 答案 (answer) is {final}.",
        "A naïve estimate is a useful cross-check, but the exact computation above is what counts, and it "
        "gives {final}.",
        "Unlike problems involving π, every quantity here is rational, so the result {final} is exact.",
    ],
    "code": [
        "Let me avoid a naïve mistake: the function must return the value, not print it.",
        "For every valid index i we have 0 ≤ i < len(input), so the loop never reads out of bounds.",
    ],
    "science": [
        "A naïve guess could be tempting here, but the reasoning above points clearly to {final}.",
    ],
}
NON_ASCII_CODE_CONSTRAINT = "\n\nConstraints: 0 ≤ len(input) ≤ 10^5."


# --------------------------------------------------------------------------------------
# Draft constructors shared by the families of each domain
# --------------------------------------------------------------------------------------


def math_draft(
    rng: random.Random,
    *,
    question: str,
    ask: str,
    work: list[str],
    summary: str,
    answer: str,
    probes: list[Probe],
    remarks: list[str] = (),
) -> Draft:
    closing = pick(rng, "Therefore, the answer is", "Hence the final answer is", "So the result is")
    return Draft(
        domain="math",
        user=f"{question} {BOXED_INSTRUCTION}",
        ask=ask,
        final=answer,
        steps=[rng.choice(MATH_OPENERS).format(ask=ask), *work],
        conclusion=rng.choice(MATH_CONCLUSIONS).format(final=answer),
        solution=f"{summary}\n\n{closing}:\n\n\\boxed{{{answer}}}",
        recap=f"Re-checking the key computations independently gives the same result.\n\n\\boxed{{{answer}}}",
        probes=probes,
        remarks=list(remarks),
        extra={"answer": answer},
    )


def code_draft(
    rng: random.Random,
    *,
    task: str,
    ask: str,
    entry: str,
    code: str,
    ref: Callable[..., Any],
    test_args: list[Args],
    gen: Callable[[random.Random], Args],
    explain: Callable[..., str],
    work: list[str],
    approach: str,
    complexity: str,
    remarks: list[str] = (),
    stdin: bool = False,
) -> Draft:
    test_args = list({call_expr(entry, args): args for args in test_args}.values())  # drop duplicates
    tests = [{"input": call_expr(entry, args), "output": repr(ref(*args))} for args in test_args]
    if stdin:
        samples = "\n\n".join(
            f"Sample Input {i}\n{args[0].rstrip()}\n\nSample Output {i}\n{ref(*args)}"
            for i, args in enumerate(test_args[:2], 1)
        )
        user = f"{CODE_HEADER_STDIN}\n\n{task}\n\n{samples}"
    else:
        examples = "\n".join(f"{t['input']} -> {t['output']}" for t in tests[:2])
        user = f"{CODE_HEADER_FUNCTION}\n\n{task}\n\nExamples:\n{examples}"

    def trace(args: Args) -> str:
        return f"Take {call_expr(entry, args)}: {explain(*args)}, so the expected result is {ref(*args)!r}."

    steps = [rng.choice(CODE_OPENERS).format(ask=ask), *work]
    if "\n\n" not in code and rng.random() < 0.6:
        steps.append(f"{pick(rng, 'Let me sketch it:', 'A first version:', 'So the code would be:')}\n```python\n{code}\n```")
    steps.append(f"Let me check it against an example from the statement. {trace(test_args[0])}")
    first = tests[0]
    return Draft(
        domain="code",
        user=user,
        ask=ask,
        final=f"the implementation of `{entry}`",
        steps=steps,
        conclusion=rng.choice(CODE_CONCLUSIONS),
        solution=f"{approach}\n\n```python\n{code}\n```\n\n{complexity}",
        recap=(
            f"I traced the function on several more inputs and it behaves as intended; for example "
            f"`{first['input']}` returns `{first['output']}`. The implementation above is correct as written."
        ),
        probes=[lambda r: trace(gen(r))],
        remarks=list(remarks),
        extra={"tests": tests, "entry_point": entry},
    )


def science_draft(
    rng: random.Random,
    *,
    question: str,
    ask: str,
    correct: str,
    wrong: list[tuple[str, str]],
    work: list[str],
    explanation: str,
    probes: list[Probe] = (),
    remarks: list[str] = (),
) -> Draft:
    """``wrong`` holds three (option text, why it is wrong) pairs."""
    options = [correct, *(text for text, _ in wrong)]
    if len(set(options)) != 4:
        raise ValueError(f"options are not distinct: {options}")
    rng.shuffle(options)
    letter = LETTERS[options.index(correct)]
    listing = "\n".join(f"{lab}. {opt}" for lab, opt in zip(LETTERS, options))

    def eliminate(text: str, reason: str) -> Probe:
        lab = LETTERS[options.index(text)]
        return lambda r: f"Option {lab} ({text}) can be ruled out: {reason}."

    return Draft(
        domain="science",
        user=f"{question}\n\n{listing}\n\n{BOXED_INSTRUCTION}",
        ask=ask,
        final=f"option {letter}",
        steps=[
            rng.choice(SCIENCE_OPENERS).format(ask=ask),
            *work,
            f"Comparing with the options, that is option {letter} ({correct}).",
        ],
        conclusion=rng.choice(SCIENCE_CONCLUSIONS).format(final=f"option {letter}"),
        solution=f"{explanation}\n\nThe correct answer is option {letter}: {correct}.\n\n\\boxed{{{letter}}}",
        recap=f"Re-checking the reasoning and every distractor confirms option {letter}: {correct}.\n\n\\boxed{{{letter}}}",
        probes=[*probes, *(eliminate(text, why) for text, why in wrong)],
        remarks=list(remarks),
        extra={"choices": options, "answer": letter},
    )


# --------------------------------------------------------------------------------------
# Math families
# --------------------------------------------------------------------------------------

NAMES = ["Maria", "Tom", "Aisha", "Liam", "Sofia", "Kenji", "Priya", "Noah", "Elena", "Omar", "Grace", "Daniel"]
ITEMS = [
    ("notebook", "notebooks"), ("pencil", "pencils"), ("apple", "apples"), ("sticker", "stickers"),
    ("marker", "markers"), ("muffin", "muffins"), ("postcard", "postcards"), ("candle", "candles"),
]


def math_shopping(rng: random.Random) -> Draft:
    name = rng.choice(NAMES)
    (one1, many1), (one2, many2) = rng.sample(ITEMS, 2)
    n, p = rng.randint(2, 12), rng.randint(2, 15)
    m, q = rng.randint(2, 9), rng.randint(1, 20)
    c1, c2 = n * p, m * q
    total = c1 + c2
    bill = next(b for b in (20, 50, 100, 200, 500) if b > total)
    change = bill - total

    def split(r: random.Random) -> str:
        k = r.randint(1, n - 1)
        return (f"Splitting the {many1} into groups of {k} and {n - k}: {k} * {p} = {k * p} and "
                f"{n - k} * {p} = {(n - k) * p}, and {k * p} + {(n - k) * p} = {c1}.")

    def more(r: random.Random) -> str:
        j = r.randint(1, 4)
        return (f"If {name} had bought {j} more {many2 if j > 1 else one2}, the total would rise by {j * q} "
                f"to {total + j * q}, so each extra {one2} changes the total by {q} dollars, as it should.")

    def decompose(r: random.Random) -> str:
        count, price, cost = r.choice([(n, p, c1), (m, q, c2)])
        t = r.randint(1, count + price)
        return (f"Checking {count} * {price} by writing {count} as {t} + {count - t}: {t} * {price} = {t * price} and "
                f"{count - t} * {price} = {(count - t) * price}, total {cost}.") if t < count else (
                f"Checking {count} * {price} against {t} * {price} = {t * price}: the difference is "
                f"{t - count} * {price} = {(t - count) * price}, and {t * price} - {(t - count) * price} = {cost}.")

    def remaining(r: random.Random) -> str:
        j = r.randint(1, n)
        return (f"After paying for the first {j} {many1 if j > 1 else one1} ({j} * {p} = {j * p} dollars), "
                f"{bill - j * p} dollars of the bill would be left.")

    return math_draft(
        rng,
        question=(f"{name} buys {n} {many1} that cost {p} dollars each and {m} {many2} that cost {q} dollars "
                  f"each. {name} pays with a {bill}-dollar bill. How many dollars of change does {name} receive?"),
        ask=f"the amount of change {name} receives",
        work=[
            pick(rng, f"First, the {many1}: {n} * {p} = {c1} dollars.",
                 f"The {many1} cost {n} times {p}, which is {c1} dollars."),
            pick(rng, f"Next, the {many2}: {m} * {q} = {c2} dollars.",
                 f"For the {many2}, {m} * {q} = {c2} dollars."),
            f"So the total cost is {c1} + {c2} = {total} dollars.",
            f"{name} hands over {bill} dollars, so the change is {bill} - {total} = {change} dollars.",
        ],
        summary=(f"- Cost of the {many1}: {n} * {p} = {c1} dollars.\n"
                 f"- Cost of the {many2}: {m} * {q} = {c2} dollars.\n"
                 f"- Total cost: {c1} + {c2} = {total} dollars.\n"
                 f"- Change: {bill} - {total} = {change} dollars."),
        answer=str(change),
        probes=[
            split,
            more,
            remaining,
            decompose,
            lambda r: f"Adding the change back to the total should give the bill: {total} + {change} = {bill}.",
            lambda r: (f"Subtracting the purchases one at a time: {bill} - {c1} = {bill - c1}, then "
                       f"{bill - c1} - {c2} = {change}."),
            lambda r: f"Dividing back, {c2} / {m} = {q}, which is exactly the price of one {one2}.",
            lambda r: f"Computing {n} * {p} another way: {n} * {p - 1} + {n} = {n * (p - 1)} + {n} = {c1}.",
            lambda r: f"Adding the two costs in the other order, {c2} + {c1} = {total}, the same total.",
        ],
        remarks=[f"The question asks for the change, not the total cost, so the final step of subtracting "
                 f"from {bill} is essential."],
    )


def math_linear(rng: random.Random) -> Draft:
    x = rng.randint(-12, 20)
    a = rng.randint(2, 12)
    b = rng.choice([v for v in range(-40, 41) if v != 0])
    if rng.random() < 0.5:
        d, e = 0, a * x + b
        lhs, rhs = linear_expr(a, b), str(e)
        work = [
            f"The equation is {lhs} = {rhs}. I want to isolate x.",
            f"Move the constant to the right side: {a}x = {e} {signed(-b)} = {e - b}.",
            f"Divide both sides by {a}: x = {e - b} / {a} = {x}.",
        ]
    else:
        d = rng.choice([v for v in range(1, 13) if v != a])
        e = a * x + b - d * x
        lhs, rhs = linear_expr(a, b), linear_expr(d, e)
        work = [
            f"The equation is {lhs} = {rhs}. Both sides contain x, so I'll collect the x terms on the left.",
            f"Subtract {linear_expr(d, 0)} from both sides: {linear_expr(a - d, b)} = {e}.",
            f"Move the constant: {linear_expr(a - d, 0)} = {e} {signed(-b)} = {e - b}.",
            f"Divide by {a - d}: x = {e - b} / {paren(a - d)} = {x}.",
        ]

    def side(coef: int, const: int, t: int) -> str:
        return f"{coef} * {paren(t)} {signed(const)} = {coef * t + const}" if coef else str(const)

    def plug_wrong(r: random.Random) -> str:
        t = r.choice([v for v in range(x - 25, x + 26) if v != x])
        left, right = a * t + b, d * t + e
        rel = "less than" if left < right else "greater than"
        return (f"Trying x = {t} instead: the left side is {side(a, b, t)} and the right side is "
                f"{side(d, e, t)}; the left is {rel} the right, so {t} is not a solution.")

    def scaled(r: random.Random) -> str:
        k = r.randint(2, 9)
        scaled_rhs = linear_expr(k * d, k * e) if d else k * e
        return (f"Multiplying the whole equation by {k} gives {linear_expr(k * a, k * b)} = {scaled_rhs}; "
                f"at x = {x} the left side is {k * (a * x + b)} and the right side is {k * (d * x + e)}, so x = {x} "
                f"still works.")

    return math_draft(
        rng,
        question=f"Solve for $x$: ${lhs} = {rhs}$.",
        ask="the value of x that satisfies the equation",
        work=work,
        summary=("\n".join(f"- {w}" for w in work[1:]) if d else
                 f"{'Subtract' if b > 0 else 'Add'} {abs(b)} {'from' if b > 0 else 'to'} both sides and divide by {a}:"
                 f"\n\n{a}x = {e - b}, so x = {x}."),
        answer=str(x),
        probes=[
            plug_wrong,
            scaled,
            lambda r: (f"Substituting x = {x} back: the left side is {side(a, b, x)} and the right side is "
                       f"{side(d, e, x)}. Both sides agree."),
            lambda r: (f"Each time x grows by 1, the left side minus the right side changes by {a - d}. At "
                       f"x = 0 that difference is {b - e}, and {b - e} + {paren(a - d)} * {paren(x)} = 0, so the "
                       f"difference vanishes exactly at x = {x}."),
        ],
        remarks=["A linear equation with different coefficients of x on the two sides has exactly one "
                 "solution, so once a value checks out there is nothing else to look for."],
    )


def math_series(rng: random.Random) -> Draft:
    a, d, n = rng.randint(-10, 25), rng.randint(1, 9), rng.randint(5, 40)
    last = a + (n - 1) * d
    total = n * (a + last) // 2

    def term(k: int) -> int:
        return a + (k - 1) * d

    def partial(k: int) -> int:
        return k * (a + term(k)) // 2

    if rng.random() < 0.5:
        question = f"What is the sum of the first {n} terms of the arithmetic sequence {a}, {a + d}, {a + 2 * d}, ...?"
        work = [f"The common difference is {a + d} - {paren(a)} = {d}, and there are {n} terms.",
                f"The {ordinal(n)} term is {a} + ({n} - 1) * {d} = {last}."]
    else:
        question = (f"Find the value of the sum {a} + {paren(a + d)} + {paren(a + 2 * d)} + ... + {paren(last)}, "
                    f"in which consecutive terms differ by {d}.")
        work = [f"The terms go from {a} to {last} in steps of {d}.",
                f"The number of terms is ({last} - {paren(a)}) / {d} + 1 = {n - 1} + 1 = {n}."]
    work.append(f"The sum of an arithmetic sequence is (number of terms) * (first + last) / 2 = "
                f"{n} * ({a} + {paren(last)}) / 2 = {n} * {a + last} / 2 = {total}.")

    def partial_probe(r: random.Random) -> str:
        k = r.randint(2, n - 1)
        return (f"The first {k} terms run from {a} to {term(k)}, so they sum to "
                f"{k} * ({a} + {paren(term(k))}) / 2 = {partial(k)}; the remaining {n - k} terms must then "
                f"contribute {total} - {paren(partial(k))} = {total - partial(k)}.")

    def pair_probe(r: random.Random) -> str:
        k = r.randint(1, n // 2)
        return (f"Terms {k} and {n + 1 - k} are {term(k)} and {term(n + 1 - k)}; their sum is "
                f"{term(k) + term(n + 1 - k)}, the same as first + last.")

    def term_probe(r: random.Random) -> str:
        k = r.randint(2, n)
        return f"The {ordinal(k)} term is {a} + {k - 1} * {d} = {term(k)}, and the next one is {term(k) + d}."

    return math_draft(
        rng,
        question=question,
        ask="the sum of the arithmetic sequence",
        work=work,
        summary=f"There are {n} terms, from {a} to {last}. Their sum is\n\n{n} * ({a} + {paren(last)}) / 2 = {total}.",
        answer=str(total),
        probes=[
            partial_probe,
            term_probe,
            pair_probe,
            lambda r: (f"Pairing the first and last terms gives {a} + {paren(last)} = {a + last}, and the second "
                       f"with the second-to-last gives {a + d} + {paren(last - d)} = {a + last}; every pair has "
                       f"the same sum."),
            lambda r: (f"The average term is ({a} + {paren(last)}) / 2 = {fmt_num(Fraction(a + last, 2))}, "
                       f"and {n} times that is {total}."),
            lambda r: f"The last term should be {d} * {n - 1} = {d * (n - 1)} more than the first: {a} + {d * (n - 1)} = {last}.",
        ],
        remarks=["The formula n * (first + last) / 2 always gives an integer here, because either n is even "
                 "or first + last is even."],
    )


def math_gcd_lcm(rng: random.Random) -> Draft:
    g = rng.randint(2, 24)
    while True:
        u, v = rng.sample(range(2, 21), 2)
        if math.gcd(u, v) == 1:
            break
    A, B = g * u, g * v
    lcm = A * B // g
    lines, x, y = [], max(A, B), min(A, B)
    while y:
        q, rem = divmod(x, y)
        lines.append(f"{x} = {q} * {y} + {rem}")
        x, y = y, rem
    work = [f"I'll use the Euclidean algorithm on {A} and {B}:\n" + "\n".join(lines),
            f"The last nonzero remainder is {g}, so gcd({A}, {B}) = {g}."]
    want_gcd = rng.random() < 0.5
    if not want_gcd:
        work.append(f"Then lcm({A}, {B}) = {A} * {B} / gcd = {A * B} / {g} = {lcm}.")
    answer = g if want_gcd else lcm

    def common_divisor(r: random.Random) -> str:
        dv = r.randint(2, 30)
        both = A % dv == 0 and B % dv == 0
        tail = f"yes, and indeed {dv} divides {g}" if both else "no"
        return f"Is {dv} a common divisor? {A} mod {dv} = {A % dv} and {B} mod {dv} = {B % dv}, so {tail}."

    def multiple(r: random.Random) -> str:
        j = r.randint(1, lcm // A)
        verdict = ("a multiple of" if j * A % B == 0 else "not a multiple of")
        return (f"Listing multiples of {A}: {j} * {A} = {j * A}, which is {verdict} {B}"
                + (f" (the first common multiple is at {lcm // A} * {A})." if j * A % B else "."))

    return math_draft(
        rng,
        question=(f"What is the greatest common divisor of {A} and {B}?" if want_gcd
                  else f"What is the least common multiple of {A} and {B}?"),
        ask=f"the {'greatest common divisor' if want_gcd else 'least common multiple'} of {A} and {B}",
        work=work,
        summary=("Euclidean algorithm:\n" + "\n".join(lines) + f"\n\nSo gcd({A}, {B}) = {g}"
                 + ("." if want_gcd else f" and lcm({A}, {B}) = {A} * {B} / {g} = {lcm}.")),
        answer=str(answer),
        probes=[
            common_divisor,
            lambda r: (f"Factoring: {A} = {factor_str(A)} and {B} = {factor_str(B)}; the shared part is "
                       f"{factor_str(g)} = {g}."),
            lambda r: f"gcd * lcm should equal the product: {g} * {lcm} = {g * lcm}, and {A} * {B} = {A * B}.",
            lambda r: (f"{A} / {g} = {u} and {B} / {g} = {v}, and {u} and {v} have no common factor, so {g} "
                       f"really is the greatest common divisor."),
            lambda r: f"{lcm} / {A} = {lcm // A} and {lcm} / {B} = {lcm // B}, so {lcm} is a multiple of both.",
            multiple,
        ],
    )


def math_modpow(rng: random.Random) -> Draft:
    m = rng.randint(5, 13)
    while True:
        a = rng.randint(2, 60)
        if math.gcd(a, m) == 1 and a % m not in (0, 1):
            break
    k = rng.randint(20, 400)
    a0 = a % m
    powers, val = [], 1
    while True:
        val = val * a0 % m
        powers.append(val)
        if val == 1:
            break
    order = len(powers)
    r = k % order
    answer = pow(a, k, m)
    reduce = (f"First reduce the base: {a} mod {m} = {a0}, so {a}^{k} = {a0}^{k} (mod {m})." if a >= m
              else f"The base {a} is already smaller than {m}, so no reduction is needed.")
    listing = "\n".join(f"{a0}^{j} = {pw} (mod {m})" for j, pw in enumerate(powers, 1))
    work = [
        reduce,
        f"Now compute successive powers modulo {m}:\n{listing}",
        f"The powers repeat with period {order}, because {a0}^{order} = 1 (mod {m}).",
        f"Since {k} = {order} * {k // order} + {r}, we get {a0}^{k} = {a0}^{r} = {answer} (mod {m}).",
    ]

    def direct(r_: random.Random) -> str:
        j = r_.randint(2, 40)
        return (f"Direct check: {a0}^{j} mod {m} = {pow(a0, j, m)}, and since {j} mod {order} = {j % order}, "
                f"the cycle predicts {a0}^{j % order} = {pow(a0, j % order, m)} (mod {m}).")

    def step(r_: random.Random) -> str:
        j = r_.randint(1, order + 3)
        pj = pow(a0, j, m)
        return (f"Going from {a0}^{j} to {a0}^{j + 1}: {pj} * {a0} = {pj * a0}, and {pj * a0} mod {m} = "
                f"{pj * a0 % m}.")

    probes = [
        direct,
        step,
        lambda r_: f"Re-checking the division: {order} * {k // order} = {order * (k // order)}, plus {r} gives {k}.",
    ]
    if is_prime(m):
        probes.append(lambda r_: (f"Since {m} is prime, Fermat's little theorem gives {a0}^{m - 1} = 1 (mod {m}), "
                                  f"and indeed the period {order} divides {m - 1}."))
    return math_draft(
        rng,
        question=f"What is the remainder when ${a}^{{{k}}}$ is divided by {m}?",
        ask=f"the remainder of {a}^{k} modulo {m}",
        work=work,
        summary=((f"Modulo {m}, {a} = {a0}, and the" if a >= m else f"Modulo {m}, the")
                 + f" powers of {a0} cycle with period {order} "
                 f"({', '.join(map(str, powers))}). Since {k} = {order} * {k // order} + {r}, "
                 f"{a}^{k} = {a0}^{r} = {answer} (mod {m})."),
        answer=str(answer),
        probes=probes,
        remarks=[f"Computing {a}^{k} directly is hopeless by hand, which is why reducing modulo {m} at every "
                 f"step is the right approach."],
    )


def math_counting(rng: random.Random) -> Draft:
    kind = rng.choice(["committee", "handshakes", "divisible", "word"])
    if kind == "committee":
        n, k = rng.randint(6, 15), rng.randint(2, 5)
        ans = math.comb(n, k)
        top = math.perm(n, k)
        top_str = " * ".join(str(n - i) for i in range(k))
        return math_draft(
            rng,
            question=f"In how many ways can a committee of {k} people be chosen from a group of {n} people?",
            ask=f"the number of ways to choose {k} people out of {n}",
            work=[
                "The order of the members doesn't matter, so this is a combination.",
                f"C({n}, {k}) = {n}! / ({k}! * {n - k}!) = ({top_str}) / {k}!.",
                f"The numerator is {top} and {k}! = {math.factorial(k)}, so C({n}, {k}) = {top} / {math.factorial(k)} = {ans}.",
            ],
            summary=f"C({n}, {k}) = ({top_str}) / {k}! = {top} / {math.factorial(k)} = {ans}.",
            answer=str(ans),
            probes=[
                lambda r: (f"Pascal's rule: C({n - 1}, {k - 1}) + C({n - 1}, {k}) = {math.comb(n - 1, k - 1)} + "
                           f"{math.comb(n - 1, k)} = {ans}."),
                lambda r: f"By symmetry C({n}, {n - k}) should be the same: choosing who is left out gives {math.comb(n, n - k)}.",
                lambda r: (f"If order mattered there would be {top} ordered selections; each committee is counted "
                           f"{k}! = {math.factorial(k)} times, and {top} / {math.factorial(k)} = {ans}."),
                lambda r: (lambda nn, kk: f"Testing the formula on a smaller case, choosing {kk} from {nn} gives "
                           f"C({nn}, {kk}) = {math.comb(nn, kk)}.")(r.randint(4, 9), r.randint(2, 3)),
                lambda r: (lambda nn, kk: f"Pascal's rule one row up also holds: C({nn}, {kk}) = C({nn - 1}, {kk - 1}) + "
                           f"C({nn - 1}, {kk}) = {math.comb(nn - 1, kk - 1)} + {math.comb(nn - 1, kk)} = "
                           f"{math.comb(nn, kk)}.")(r.randint(k + 1, n), r.randint(1, k)),
            ],
        )
    if kind == "handshakes":
        n = rng.randint(5, 30)
        ans = math.comb(n, 2)

        def grow(r: random.Random) -> str:
            j = r.randint(2, n - 1)
            return (f"With {j} guests there would be {math.comb(j, 2)} handshakes; guest number {j + 1} adds {j} "
                    f"more, giving {math.comb(j + 1, 2)}.")

        return math_draft(
            rng,
            question=(f"At a party with {n} guests, every pair of guests shakes hands exactly once. "
                      f"How many handshakes take place?"),
            ask="the total number of handshakes",
            work=[
                f"Each guest shakes hands with the other {n - 1} guests, which gives {n} * {n - 1} = {n * (n - 1)}.",
                f"But that counts every handshake twice, once from each side, so divide by 2: {n * (n - 1)} / 2 = {ans}.",
            ],
            summary=f"Each handshake is a pair of guests: C({n}, 2) = {n} * {n - 1} / 2 = {ans}.",
            answer=str(ans),
            probes=[
                grow,
                lambda r: f"Summing 1 + 2 + ... + {n - 1}, the new handshakes as guests arrive one by one, gives {ans}.",
                lambda r: f"As a combination, C({n}, 2) = {n}! / (2! * {n - 2}!) = {ans}.",
            ],
        )
    if kind == "divisible":
        N = rng.randint(50, 500)
        while True:
            a, b = rng.sample(range(2, 10), 2)
            if a % b and b % a:
                break
        lcm = a * b // math.gcd(a, b)
        ans = N // a + N // b - N // lcm

        def brute(r: random.Random) -> str:
            s = r.randint(10, 30)
            hits = [i for i in range(1, s + 1) if i % a == 0 or i % b == 0]
            return (f"Brute force on 1..{s}: the numbers divisible by {a} or {b} are {hits}, that is {len(hits)} "
                    f"numbers, and the formula gives {s // a} + {s // b} - {s // lcm} = {len(hits)}.")

        def member(r: random.Random) -> str:
            t = r.randint(1, N)
            counted = "so it is counted" if t % a == 0 or t % b == 0 else "so it is not counted"
            return f"Spot check: {t} mod {a} = {t % a} and {t} mod {b} = {t % b}, {counted}."

        return math_draft(
            rng,
            question=f"How many integers from 1 to {N} inclusive are divisible by {a} or {b}?",
            ask=f"how many of the integers 1 to {N} are divisible by {a} or {b}",
            work=[
                f"Multiples of {a} up to {N}: floor({N} / {a}) = {N // a}.",
                f"Multiples of {b} up to {N}: floor({N} / {b}) = {N // b}.",
                f"Numbers divisible by both are multiples of lcm({a}, {b}) = {lcm}: floor({N} / {lcm}) = {N // lcm}.",
                f"By inclusion-exclusion: {N // a} + {N // b} - {N // lcm} = {ans}.",
            ],
            summary=f"By inclusion-exclusion, {N // a} + {N // b} - {N // lcm} = {ans}.",
            answer=str(ans),
            probes=[
                brute,
                member,
                lambda r: f"The largest multiple of {a} not exceeding {N} is {a * (N // a)} = {a} * {N // a}.",
                lambda r: f"The largest multiple of {b} not exceeding {N} is {b * (N // b)} = {b} * {N // b}.",
                lambda r: (f"The numbers divisible by both {a} and {b} are exactly the multiples of {lcm}: "
                           f"{lcm}, {2 * lcm}, {3 * lcm}, and so on."),
            ],
            remarks=["Without subtracting the overlap, the numbers divisible by both would be counted twice."],
        )
    word = rng.choice(["LEVEL", "BANANA", "APPLE", "COFFEE", "PEPPER", "BALLOON", "LETTER", "SUCCESS", "ASSESS", "TOOTH"])
    counts = {ch: len(list(grp)) for ch, grp in groupby(sorted(word, key=word.index))}
    n = len(word)
    denom = math.prod(math.factorial(c) for c in counts.values())
    ans = math.factorial(n) // denom
    repeated = [(ch, c) for ch, c in counts.items() if c > 1]
    denom_str = " * ".join(f"{c}!" for _, c in repeated)
    tally = ", ".join(f"{ch}: {c}" for ch, c in counts.items())

    def first_letter(r: random.Random) -> str:
        ch = r.choice(list(counts))
        rest = dict(counts, **{ch: counts[ch] - 1})
        k = math.factorial(n - 1) // math.prod(math.factorial(c) for c in rest.values())
        return (f"Counting the arrangements that start with {ch}: the other {n - 1} letters can be arranged in "
                f"{k} ways, and {k} * {n} / {counts[ch]} = {ans}, consistent with {ch} being "
                f"{counts[ch]} of the {n} letters.")
    return math_draft(
        rng,
        question=f"How many distinct arrangements of the letters of the word {word} are there?",
        ask=f"the number of distinct arrangements of the letters of {word}",
        work=[
            f"The word {word} has {n} letters. Letter counts: {tally}.",
            f"With repeated letters, the count is {n}! divided by the factorial of each repeat count: "
            f"{n}! / ({denom_str}) = {math.factorial(n)} / {denom} = {ans}.",
        ],
        summary=f"{word} has {n} letters ({tally}), so the count is {n}! / ({denom_str}) = {ans}.",
        answer=str(ans),
        probes=[
            lambda r: f"If all {n} letters were distinct there would be {n}! = {math.factorial(n)} arrangements.",
            lambda r: (lambda ch, c: f"The {c} copies of {ch} can be permuted among themselves in {c}! = "
                       f"{math.factorial(c)} ways without changing the word.")(*r.choice(repeated)),
            lambda r: f"Check: {ans} * {denom} = {ans * denom}, which is {n}! as it should be.",
            first_letter,
        ],
    )


def math_fraction(rng: random.Random) -> Draft:
    def rand_frac() -> Fraction:
        den = rng.randint(2, 12)
        return Fraction(rng.choice([k for k in range(1, 2 * den) if math.gcd(k, den) == 1]), den)

    x, y = rand_frac(), rand_frac()
    op = rng.choice(["+", "-", "*"])
    res = {"+": x + y, "-": x - y, "*": x * y}[op]
    tex_op = "\\times" if op == "*" else op
    a, b, c, d = x.numerator, x.denominator, y.numerator, y.denominator
    if op == "*":
        work = [f"Multiply numerators and denominators: ({a} * {c}) / ({b} * {d}) = {a * c}/{b * d}.",
                f"Simplify: gcd({a * c}, {b * d}) = {math.gcd(a * c, b * d)}, so the product is {res}."]
        check = lambda r: f"Dividing back: {res} / ({y}) = {res / y}, which is {x}."
    else:
        den = b * d // math.gcd(b, d)
        num = a * den // b + (1 if op == "+" else -1) * c * den // d
        work = [f"The least common denominator of {b} and {d} is {den}.",
                f"Rewrite both fractions: {x} = {a * den // b}/{den} and {y} = {c * den // d}/{den}.",
                f"Then {a * den // b} {op} {c * den // d} = {num}, giving {num}/{den}.",
                f"Simplify: gcd({abs(num)}, {den}) = {math.gcd(abs(num), den)}, so the result is {res}."]
        inverse = "-" if op == "+" else "+"
        check = lambda r: f"Undoing the operation: {res} {inverse} {y} = {res - y if op == '+' else res + y}, which is {x}."

    def decimals(r: random.Random) -> str:
        dx, dy = round(float(x), 4), round(float(y), 4)
        approx = {"+": dx + dy, "-": dx - dy, "*": dx * dy}[op]
        return (f"As decimals, {x} is about {dx:.4f} and {y} is about {dy:.4f}; {dx:.4f} {op} {dy:.4f} is about "
                f"{approx:.4f}, and {res} is about {float(res):.4f}, so the two agree.")

    def product_denominator(r: random.Random) -> str:
        if op == "*":
            return f"Cross-cancelling first gives the same thing: {x} * {y} = {res}."
        num2 = a * d + (1 if op == "+" else -1) * c * b
        return (f"Using the plain product {b} * {d} = {b * d} as common denominator instead: "
                f"{a * d}/{b * d} {op} {c * b}/{b * d} = {num2}/{b * d}, which reduces to {res}.")

    answer = latex_frac(res)
    return math_draft(
        rng,
        question=f"Compute ${latex_frac(x)} {tex_op} {latex_frac(y)}$ and express the answer in simplest form.",
        ask=f"the value of {x} {op} {y} in simplest form",
        work=work,
        summary="\n".join(f"- {w}" for w in work),
        answer=answer,
        probes=[decimals, check, product_denominator],
        remarks=["The final fraction must be fully reduced, so the gcd step cannot be skipped."],
    )


def math_percent(rng: random.Random) -> Draft:
    price, rate = 20 * rng.randint(2, 30), 5 * rng.randint(1, 12)
    saved = price * rate // 100
    sale = price - saved
    item = rng.choice(["jacket", "bicycle", "lamp", "backpack", "pair of shoes", "tablet", "guitar", "desk chair"])
    want_sale = rng.random() < 0.6
    answer = sale if want_sale else saved

    def compare(r: random.Random) -> str:
        t = r.choice([5 * k for k in range(1, 13) if 5 * k != rate])
        other = Fraction(price * t, 100)
        more, bigger = ("more", "larger") if rate > t else ("less", "smaller")
        return (f"For comparison, a {t}% discount would save {fmt_num(other)} dollars; since {rate}% is {more} "
                f"than {t}%, our saving of {saved} dollars should be {bigger}, and it is.")

    work = [f"{rate}% of {price} is {price} * {rate} / 100 = {saved} dollars."]
    if want_sale:
        work.append(f"The sale price is {price} - {saved} = {sale} dollars.")
    return math_draft(
        rng,
        question=(f"A {item} originally costs {price} dollars and is on sale for {rate}% off. "
                  + ("What is the sale price, in dollars?" if want_sale else "How many dollars does a customer save?")),
        ask="the sale price" if want_sale else "the amount saved",
        work=work,
        summary=(f"Discount: {price} * {rate} / 100 = {saved} dollars."
                 + (f" Sale price: {price} - {saved} = {sale} dollars." if want_sale else "")),
        answer=str(answer),
        probes=[
            compare,
            lambda r: (lambda t: f"As a reference point, {t}% of {price} is {fmt_num(Fraction(price * t, 100))} dollars, "
                       f"and {rate}% of {price} should be {rate}/{t} of that, {fmt_num(Fraction(price * t, 100) * rate / t)}.")(
                           r.randint(1, 99)),
            lambda r: (f"10% of {price} is {price // 10}, and {rate}% is {fmt_num(Fraction(rate, 10))} times that: "
                       f"{fmt_num(Fraction(rate, 10))} * {price // 10} = {saved}."),
            lambda r: (f"Paying {100 - rate}% of the price: {price} * {100 - rate} / 100 = {sale}, and "
                       f"{sale} + {saved} = {price}."),
            lambda r: f"As a fraction, {rate}% is {Fraction(rate, 100)}, and {price} * {Fraction(rate, 100)} = {saved}.",
        ],
    )


def math_divisors(rng: random.Random) -> Draft:
    while True:
        exps = [rng.randint(0, 4), rng.randint(0, 3), rng.randint(0, 2), rng.randint(0, 1)]
        N = math.prod(p ** e for p, e in zip((2, 3, 5, 7), exps))
        if 12 <= N <= 3000 and sum(1 for e in exps if e) >= 2:
            break
    factors = factorize(N)
    ans = math.prod(e + 1 for _, e in factors)
    divisors = [k for k in range(1, N + 1) if N % k == 0]
    counts = " * ".join(f"({e} + 1)" for _, e in factors)

    def non_divisor(r: random.Random) -> str:
        t = r.choice([k for k in range(2, min(60, N)) if N % k])
        return f"{t} does not divide {N}, since {N} = {t} * {N // t} + {N % t}."

    return math_draft(
        rng,
        question=f"How many positive divisors does {N} have?",
        ask=f"the number of positive divisors of {N}",
        work=[
            f"Factor {N} into primes: {N} = {factor_str(N)}.",
            "A divisor chooses an exponent for each prime independently, from 0 up to the exponent in the factorization.",
            f"So the number of divisors is {counts} = {ans}.",
        ],
        summary=f"{N} = {factor_str(N)}, so it has {counts} = {ans} positive divisors.",
        answer=str(ans),
        probes=[
            lambda r: (lambda dv: f"{dv} divides {N}: {N} / {dv} = {N // dv}.")(r.choice(divisors)),
            non_divisor,
            lambda r: (lambda dv: f"Divisors come in pairs (d, {N}/d), for example ({dv}, {N // dv}).")(r.choice(divisors)),
            lambda r: (lambda lim: f"Listing the divisors up to {lim}: {[k for k in divisors if k <= lim]}.")(
                r.choice(divisors[2:-1])),
        ],
        remarks=[f"Listing all divisors would also work, but the exponent formula is faster and less error-prone; "
                 f"the full list has {len(divisors)} entries, matching the formula."],
    )


MATH_FAMILIES = [math_shopping, math_linear, math_series, math_gcd_lcm, math_modpow, math_counting,
                 math_fraction, math_percent, math_divisors]


# --------------------------------------------------------------------------------------
# Code families
# --------------------------------------------------------------------------------------

WORDS = ["apple", "river", "stone", "cloud", "green", "music", "table", "light", "ocean", "tiger", "paper",
         "smile", "bread", "storm", "quiet", "dance", "north", "piano", "lemon", "frost"]


def random_sentence(r: random.Random, lo: int = 1, hi: int = 6) -> str:
    return " ".join(r.choice(WORDS) for _ in range(r.randint(lo, hi)))


def random_ints(r: random.Random, lo: int = -20, hi: int = 60, max_len: int = 9, min_len: int = 1) -> list[int]:
    return [r.randint(lo, hi) for _ in range(r.randint(min_len, max_len))]


def code_sum_divisible(rng: random.Random) -> Draft:
    k = rng.randint(2, 7)
    entry = rng.choice(["sum_divisible", "sum_of_multiples", "total_divisible"])

    def ref(xs: list[int]) -> int:
        total = 0
        for x in xs:
            if x % k == 0:
                total += x
        return total

    def explain(xs: list[int]) -> str:
        sel = [x for x in xs if x % k == 0]
        return f"the elements divisible by {k} are {sel}, which add up to {sum(sel)}" if sel else f"no element is divisible by {k}"

    gen = lambda r: (random_ints(r),)
    return code_draft(
        rng,
        task=(f"Write a function `{entry}(xs)` that takes a list of integers `xs` and returns the sum of the "
              f"elements that are divisible by {k}. If no element is divisible by {k}, return 0."),
        ask=f"a function `{entry}(xs)` that sums the elements divisible by {k}",
        entry=entry,
        code=f"def {entry}(xs):\n    return sum(x for x in xs if x % {k} == 0)",
        ref=ref,
        test_args=[gen(rng), ([],), gen(rng), gen(rng), ([k, -k, k + 1],)],
        gen=gen,
        explain=explain,
        work=[f"For each element I test x % {k} == 0 and add the ones that pass; sum() over a generator "
              f"expression does exactly that, and sum of nothing is 0."],
        approach=f"Filter the elements with `x % {k} == 0` and add them up; `sum` returns 0 for an empty selection.",
        complexity="This runs in O(n) time and O(1) extra space.",
        remarks=[f"Negative numbers need no special handling: in Python, -{2 * k} % {k} == 0, so they are "
                 f"included correctly.", "Zero is divisible by every k, but adding it changes nothing."],
    )


def code_reverse_words(rng: random.Random) -> Draft:
    whole = rng.random() < 0.5
    entry = rng.choice(["reverse_words", "flip_words"]) if whole else rng.choice(["reverse_each_word", "mirror_words"])
    if whole:
        ref = lambda s: " ".join(reversed(s.split(" ")))
        code = f'def {entry}(s):\n    return " ".join(s.split(" ")[::-1])'
        task = "returns a string with the words in reverse order"
        explain = lambda s: f"the words are {s.split(' ')}, and reversed they read {list(reversed(s.split(' ')))}"
    else:
        ref = lambda s: " ".join("".join(reversed(w)) for w in s.split(" "))
        code = f'def {entry}(s):\n    return " ".join(word[::-1] for word in s.split(" "))'
        task = "returns the string with the letters of each word reversed, keeping the words in their original order"
        explain = lambda s: f"reversing each of {s.split(' ')} in place gives {[w[::-1] for w in s.split(' ')]}"
    gen = lambda r: (random_sentence(r),)
    return code_draft(
        rng,
        task=f"Write a function `{entry}(s)` that takes a string `s` of lowercase words separated by single spaces and {task}.",
        ask=f"a function `{entry}(s)` that {task}",
        entry=entry,
        code=code,
        ref=ref,
        test_args=[gen(rng), ("hello",), gen(rng), gen(rng)],
        gen=gen,
        explain=explain,
        work=["Splitting on single spaces gives the list of words; slicing with [::-1] reverses a list or a string, "
              "and ' '.join puts the words back together."],
        approach="Split the string on spaces, reverse with slicing, and join with single spaces.",
        complexity="The function is linear in the length of the string.",
        remarks=["A single word has nothing to reorder, so it should come back " + ("unchanged." if whole else "reversed.")],
    )


def code_count_vowels(rng: random.Random) -> Draft:
    entry = rng.choice(["count_vowels", "vowel_count"])

    def ref(s: str) -> int:
        return len(re.findall(r"[aeiou]", s, flags=re.IGNORECASE))

    def gen(r: random.Random) -> Args:
        return ("".join(ch.upper() if r.random() < 0.2 else ch for ch in random_sentence(r)),)

    return code_draft(
        rng,
        task=(f"Write a function `{entry}(s)` that returns the number of vowels (a, e, i, o, u) in the string `s`. "
              f"Uppercase vowels count as well."),
        ask=f"a function `{entry}(s)` that counts vowels case-insensitively",
        entry=entry,
        code=f'def {entry}(s):\n    return sum(1 for ch in s.lower() if ch in "aeiou")',
        ref=ref,
        test_args=[gen(rng), ("",), ("rhythm",), gen(rng), gen(rng)],
        gen=gen,
        explain=lambda s: (f"the vowels in order are {[ch for ch in s if ch.lower() in 'aeiou']}" if ref(s)
                           else "there are no vowels at all"),
        work=["Lowercasing the string first means I only need to compare against 'aeiou'.",
              "Then I count the characters that are in that set."],
        approach="Lowercase the string and count the characters that belong to `\"aeiou\"`.",
        complexity="One pass over the string: O(n) time.",
        remarks=["The letter y is not in the list of vowels given by the statement, so 'rhythm' has none."],
    )


def code_fizzbuzz(rng: random.Random) -> Draft:
    a, b = rng.choice([(3, 5), (2, 7), (3, 4), (4, 6), (2, 5)])
    wa, wb = rng.choice([("Fizz", "Buzz"), ("Foo", "Bar"), ("Ping", "Pong"), ("Tick", "Tock")])
    entry = rng.choice(["fizz_buzz", "word_game", "replace_multiples"])

    def ref(n: int) -> list[str]:
        words = {i: "" for i in range(1, n + 1)}
        for i in range(a, n + 1, a):
            words[i] += wa
        for i in range(b, n + 1, b):
            words[i] += wb
        return [words[i] or str(i) for i in range(1, n + 1)]

    def explain(n: int) -> str:
        ma = [i for i in range(1, n + 1) if i % a == 0]
        mb = [i for i in range(1, n + 1) if i % b == 0]
        both = [i for i in ma if i in mb]
        return (f"up to {n} the multiples of {a} are {ma}, the multiples of {b} are {mb}, and the numbers "
                f"divisible by both are {both}")

    code = (f"def {entry}(n):\n    result = []\n    for i in range(1, n + 1):\n"
            f"        if i % {a} == 0 and i % {b} == 0:\n            result.append(\"{wa}{wb}\")\n"
            f"        elif i % {a} == 0:\n            result.append(\"{wa}\")\n"
            f"        elif i % {b} == 0:\n            result.append(\"{wb}\")\n"
            f"        else:\n            result.append(str(i))\n    return result")
    gen = lambda r: (r.randint(1, 16),)
    return code_draft(
        rng,
        task=(f"Write a function `{entry}(n)` that returns a list of strings for the numbers 1 to n: use \"{wa}{wb}\" "
              f"for numbers divisible by both {a} and {b}, \"{wa}\" for numbers divisible only by {a}, \"{wb}\" for "
              f"numbers divisible only by {b}, and the number itself (as a string) otherwise."),
        ask=f"a `{entry}(n)` function, a FizzBuzz variant with {a} -> {wa} and {b} -> {wb}",
        entry=entry,
        code=code,
        ref=ref,
        test_args=[(rng.randint(5, 9),), (1,), (a * b // math.gcd(a, b) + rng.randint(0, 3),), gen(rng)],
        gen=gen,
        explain=explain,
        work=[f"The order of the checks matters: the 'both' case must come first, otherwise a number divisible by "
              f"{a} and {b} would stop at the '{wa}' branch.",
              "I'll build the list in a loop over range(1, n + 1) so that n itself is included."],
        approach=f"Loop over 1..n and test divisibility by both {a} and {b} first, then each one separately.",
        complexity="O(n) time, and the output list has n entries.",
        remarks=[f"Divisible by both {a} and {b} means divisible by their least common multiple, "
                 f"{a * b // math.gcd(a, b)}."],
    )


def code_running(rng: random.Random) -> Draft:
    totals = rng.random() < 0.5
    if totals:
        entry = rng.choice(["running_total", "prefix_sums"])
        task, combine = "the running totals: element i of the result is the sum of xs[0] through xs[i]", "sum"
        ref = lambda xs: [sum(xs[: i + 1]) for i in range(len(xs))]
        code = (f"def {entry}(xs):\n    out = []\n    total = 0\n    for x in xs:\n        total += x\n"
                f"        out.append(total)\n    return out")
    else:
        entry = rng.choice(["running_max", "prefix_max"])
        task, combine = "the running maximum: element i of the result is the largest of xs[0] through xs[i]", "maximum"
        ref = lambda xs: [max(xs[: i + 1]) for i in range(len(xs))]
        code = (f"def {entry}(xs):\n    out = []\n    for x in xs:\n        out.append(x if not out else max(out[-1], x))\n"
                f"    return out")
    gen = lambda r: (random_ints(r, -10, 30, max_len=7),)
    return code_draft(
        rng,
        task=f"Write a function `{entry}(xs)` that takes a list of integers and returns a new list with {task}.",
        ask=f"a function `{entry}(xs)` that returns the running {combine}",
        entry=entry,
        code=code,
        ref=ref,
        test_args=[gen(rng), ([],), ([5],), gen(rng), gen(rng)],
        gen=gen,
        explain=lambda xs: (f"the running {combine} of {xs} after each step is {ref(xs)}" if xs else "the input is empty"),
        work=[f"Recomputing the {combine} of every prefix from scratch would be quadratic; instead I keep the "
              f"{combine} so far and update it with each new element."],
        approach=f"Keep the {combine} of the prefix seen so far and append it after processing each element.",
        complexity="Single pass: O(n) time, O(n) space for the output.",
        remarks=["An empty input should give an empty list, which the loop handles naturally."],
    )


def code_string_transform(rng: random.Random) -> Draft:
    if rng.random() < 0.5:
        entry = rng.choice(["rle", "run_length_encode"])
        ref = lambda s: "".join(f"{ch}{len(list(grp))}" for ch, grp in groupby(s))
        code = (f"def {entry}(s):\n    out = []\n    i = 0\n    while i < len(s):\n        j = i\n"
                f"        while j < len(s) and s[j] == s[i]:\n            j += 1\n"
                f"        out.append(s[i] + str(j - i))\n        i = j\n    return \"\".join(out)")

        def gen(r: random.Random) -> Args:
            return ("".join(r.choice("abcxyz") * r.randint(1, 4) for _ in range(r.randint(1, 5))),)

        return code_draft(
            rng,
            task=(f"Write a function `{entry}(s)` that run-length encodes a string: every maximal run of a repeated "
                  f"character is replaced by the character followed by the run length, e.g. \"aaabcc\" becomes \"a3b1c2\"."),
            ask=f"a run-length encoder `{entry}(s)`",
            entry=entry,
            code=code,
            ref=ref,
            test_args=[gen(rng), ("",), ("z",), gen(rng), gen(rng)],
            gen=gen,
            explain=lambda s: f"the runs are {[ch * len(list(g)) for ch, g in groupby(s)]}" if s else "there are no runs",
            work=["I'll scan with two indices: i marks the start of a run and j advances while the character stays "
                  "the same. Then j - i is the run length."],
            approach="Scan the string run by run, emitting each character followed by the length of its run.",
            complexity="Each character is visited once, so the function is O(n).",
            remarks=["Runs of length 1 still get an explicit count, so 'b' becomes 'b1'."],
        )
    k = rng.randint(1, 25)
    entry = rng.choice(["shift_letters", "caesar"])
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    table = str.maketrans(alphabet, alphabet[k:] + alphabet[:k])
    ref = lambda s: s.translate(table)
    code = (f"def {entry}(s):\n    out = []\n    for ch in s:\n        if \"a\" <= ch <= \"z\":\n"
            f"            out.append(chr((ord(ch) - ord(\"a\") + {k}) % 26 + ord(\"a\")))\n"
            f"        else:\n            out.append(ch)\n    return \"\".join(out)")
    gen = lambda r: (random_sentence(r, 1, 3) + r.choice(["", "!", " 42", "?"]),)
    return code_draft(
        rng,
        task=(f"Write a function `{entry}(s)` that shifts every lowercase letter of `s` forward by {k} positions in "
              f"the alphabet, wrapping around from 'z' to 'a'. All other characters stay unchanged."),
        ask=f"a Caesar-shift function `{entry}(s)` with shift {k}",
        entry=entry,
        code=code,
        ref=ref,
        test_args=[gen(rng), ("xyz",), gen(rng), gen(rng)],
        gen=gen,
        explain=lambda s: f"shifting each letter by {k}, '{s[0]}' becomes '{ref(s[0])}' and the whole string becomes {ref(s)!r}",
        work=[f"For a letter, (ord(ch) - ord('a') + {k}) % 26 gives its new position; the modulo handles the "
              f"wrap-around past 'z'.",
              "Characters outside 'a'..'z' are appended unchanged."],
        approach=f"Map each lowercase letter to the letter {k} places later (mod 26) and keep every other character.",
        complexity="Linear in the length of the string.",
        remarks=[f"'z' shifted by {k} wraps around to '{alphabet[(25 + k) % 26]}'."],
    )


def code_stdin(rng: random.Random) -> Draft:
    kind = rng.choice(["range", "squares", "positives"])
    what, expr, fn = {
        "range": ("the difference between the largest and the smallest of the integers",
                  "max(values) - min(values)", lambda v: max(v) - min(v)),
        "squares": ("the sum of the squares of the integers", "sum(v * v for v in values)", lambda v: sum(v * v for v in v)),
        "positives": ("how many of the integers are strictly positive", "sum(1 for v in values if v > 0)",
                      lambda v: sum(1 for x in v if x > 0)),
    }[kind]

    def ref(data: str) -> str:
        lines = data.strip().split("\n")
        return str(fn([int(t) for t in lines[1].split()]))

    def gen(r: random.Random) -> Args:
        values = random_ints(r, -30, 30, max_len=8, min_len=1)
        return (f"{len(values)}\n{' '.join(map(str, values))}\n",)

    def explain(data: str) -> str:
        values = [int(t) for t in data.split()[1:]]
        return f"n = {len(values)} and the values are {values}; {what} is {ref(data)}"

    code = (f"import sys\n\n\ndef solve(data: str) -> str:\n    tokens = data.split()\n    n = int(tokens[0])\n"
            f"    values = [int(t) for t in tokens[1:1 + n]]\n    return str({expr})\n\n\n"
            f"def main() -> None:\n    print(solve(sys.stdin.read()))\n\n\nif __name__ == \"__main__\":\n    main()")
    return code_draft(
        rng,
        task=(f"You are given n integers. Print {what}.\n\nInput\nThe first line contains an integer n "
              f"(1 <= n <= 100). The second line contains n integers separated by spaces.\n\nOutput\nPrint a single "
              f"integer.\n\nImplement the logic in a function `solve(data)` that receives the whole standard input as "
              f"a string and returns the output as a string; the program reads stdin, calls `solve` and prints the result."),
        ask=f"a stdin/stdout program that prints {what}",
        entry="solve",
        code=code,
        ref=ref,
        test_args=[gen(rng), ("1\n7\n",), gen(rng), gen(rng)],
        gen=gen,
        explain=explain,
        work=["Reading all of stdin at once and splitting on whitespace is robust to trailing spaces and newlines.",
              f"The first token is n and the next n tokens are the values; then the answer is {expr}.",
              "Keeping the logic in solve(data) and doing the I/O in main() makes the function easy to test."],
        approach="Parse n and the values from the whole input, compute the answer in `solve`, and print it from `main`.",
        complexity="O(n) time for n integers.",
        remarks=["With n = 1 the list has a single value, which every branch handles without special cases."],
        stdin=True,
    )


def code_longest_run(rng: random.Random) -> Draft:
    entry = rng.choice(["longest_run", "longest_increasing_run"])

    def ref(xs: list[int]) -> int:
        best = 0
        for i in range(len(xs)):
            for j in range(i, len(xs)):
                if all(xs[t] < xs[t + 1] for t in range(i, j)):
                    best = max(best, j - i + 1)
        return best

    def explain(xs: list[int]) -> str:
        if not xs:
            return "the list is empty, so there is no run at all"
        runs, cur = [], [xs[0]]
        for x in xs[1:]:
            if x > cur[-1]:
                cur.append(x)
            else:
                runs.append(cur)
                cur = [x]
        runs.append(cur)
        return f"the maximal increasing runs are {runs}, and the longest has length {max(map(len, runs))}"

    code = (f"def {entry}(xs):\n    best = 0\n    current = 0\n    for i, x in enumerate(xs):\n"
            f"        if i > 0 and x > xs[i - 1]:\n            current += 1\n        else:\n            current = 1\n"
            f"        best = max(best, current)\n    return best")
    gen = lambda r: (random_ints(r, 0, 20, max_len=10),)
    return code_draft(
        rng,
        task=(f"Write a function `{entry}(xs)` that returns the length of the longest contiguous strictly increasing "
              f"run in the list `xs`. Return 0 for an empty list."),
        ask=f"a function `{entry}(xs)` for the longest strictly increasing contiguous run",
        entry=entry,
        code=code,
        ref=ref,
        test_args=[gen(rng), ([],), ([4, 4, 4],), gen(rng), gen(rng)],
        gen=gen,
        explain=explain,
        work=["I keep the length of the run ending at the current element: it grows by one when x > previous, "
              "otherwise it restarts at 1.",
              "The answer is the maximum of that length over all positions."],
        approach="Track the length of the increasing run ending at each position and keep the maximum.",
        complexity="One pass: O(n) time, O(1) extra space.",
        remarks=["'Strictly' matters: equal neighbours break a run, so [4, 4, 4] has answer 1."],
    )


def code_palindrome(rng: random.Random) -> Draft:
    entry = rng.choice(["is_palindrome", "is_clean_palindrome"])
    phrases = ["Never odd or even", "Was it a car or a cat I saw", "Step on no pets", "A Santa at NASA",
               "No lemon, no melon", "racecar", "Level", "Madam, in Eden, I'm Adam", "Top spot", "Red rum, sir, is murder"]

    def ref(s: str) -> bool:
        cleaned = re.sub(r"[^a-z0-9]", "", s.lower())
        return cleaned == cleaned[::-1]

    def gen(r: random.Random) -> Args:
        return (r.choice(phrases) if r.random() < 0.5 else random_sentence(r, 1, 3).capitalize(),)

    def explain(s: str) -> str:
        cleaned = re.sub(r"[^a-z0-9]", "", s.lower())
        return f"the cleaned string is {cleaned!r} and reversed it is {cleaned[::-1]!r}"

    return code_draft(
        rng,
        task=(f"Write a function `{entry}(s)` that returns True if `s` reads the same forwards and backwards when "
              f"case is ignored and only letters and digits are kept, and False otherwise."),
        ask=f"a palindrome checker `{entry}(s)` that ignores case and punctuation",
        entry=entry,
        code=f"def {entry}(s):\n    cleaned = [ch.lower() for ch in s if ch.isalnum()]\n    return cleaned == cleaned[::-1]",
        ref=ref,
        test_args=[(rng.choice(phrases),), ("",), gen(rng), gen(rng), ("ab",)],
        gen=gen,
        explain=explain,
        work=["First normalize: keep only alphanumeric characters and lowercase them.",
              "Then compare the cleaned sequence with its reverse."],
        approach="Keep only the alphanumeric characters, lowercase them, and compare the result with its reverse.",
        complexity="O(n) time and O(n) extra space for the cleaned copy.",
        remarks=["The empty string reads the same in both directions, so it counts as a palindrome."],
    )


CODE_FAMILIES = [code_sum_divisible, code_reverse_words, code_count_vowels, code_fizzbuzz, code_running,
                 code_string_transform, code_stdin, code_longest_run, code_palindrome]


# --------------------------------------------------------------------------------------
# Science families
# --------------------------------------------------------------------------------------

ELEMENTS = [  # (name, symbol, atomic number)
    ("hydrogen", "H", 1), ("helium", "He", 2), ("carbon", "C", 6), ("nitrogen", "N", 7), ("oxygen", "O", 8),
    ("sodium", "Na", 11), ("magnesium", "Mg", 12), ("aluminum", "Al", 13), ("silicon", "Si", 14),
    ("phosphorus", "P", 15), ("sulfur", "S", 16), ("chlorine", "Cl", 17), ("potassium", "K", 19),
    ("calcium", "Ca", 20), ("iron", "Fe", 26), ("copper", "Cu", 29), ("zinc", "Zn", 30), ("silver", "Ag", 47),
    ("tin", "Sn", 50), ("gold", "Au", 79), ("mercury", "Hg", 80), ("lead", "Pb", 82),
]
LATIN_NAMES = {"Na": "natrium", "K": "kalium", "Fe": "ferrum", "Cu": "cuprum", "Ag": "argentum", "Sn": "stannum",
               "Au": "aurum", "Hg": "hydrargyrum", "Pb": "plumbum"}
CELL_STRUCTURES = [  # (name, verb agreeing with the name, function)
    ("Mitochondria", "are", "producing most of the cell's ATP through cellular respiration"),
    ("Ribosomes", "are", "synthesizing proteins from messenger RNA"),
    ("Chloroplasts", "are", "carrying out photosynthesis in plant cells"),
    ("The nucleus", "is", "storing the cell's DNA and controlling gene expression"),
    ("Lysosomes", "are", "breaking down waste material with digestive enzymes"),
    ("The Golgi apparatus", "is", "modifying, sorting and packaging proteins for transport"),
    ("The cell membrane", "is", "controlling which substances enter and leave the cell"),
    ("The cell wall", "is", "giving plant cells rigid structural support"),
]
ORGANS = [
    ("The heart", "is", "pumping blood through the body"),
    ("The lungs", "are", "exchanging oxygen and carbon dioxide with the air"),
    ("The kidneys", "are", "filtering waste from the blood to form urine"),
    ("The liver", "is", "detoxifying chemicals and producing bile"),
    ("The small intestine", "is", "absorbing most nutrients from digested food"),
    ("The pancreas", "is", "producing insulin and digestive enzymes"),
]
SI_UNITS = [  # (quantity, unit, symbol, expression in other units)
    ("force", "newton", "N", "kg * m / s^2"), ("energy", "joule", "J", "N * m"), ("power", "watt", "W", "J / s"),
    ("electric current", "ampere", "A", "a base unit"), ("electric charge", "coulomb", "C", "A * s"),
    ("pressure", "pascal", "Pa", "N / m^2"), ("frequency", "hertz", "Hz", "1 / s"),
    ("thermodynamic temperature", "kelvin", "K", "a base unit"), ("amount of substance", "mole", "mol", "a base unit"),
    ("electric potential difference", "volt", "V", "W / A"),
]
ATOMIC_MASSES = {"H": Fraction(1), "C": Fraction(12), "N": Fraction(14), "O": Fraction(16), "Na": Fraction(23),
                 "Mg": Fraction(24), "S": Fraction(32), "Cl": Fraction(71, 2), "K": Fraction(39), "Ca": Fraction(40)}
COMPOUNDS = [  # (name, formula, composition)
    ("water", "H2O", {"H": 2, "O": 1}), ("carbon dioxide", "CO2", {"C": 1, "O": 2}), ("ammonia", "NH3", {"N": 1, "H": 3}),
    ("methane", "CH4", {"C": 1, "H": 4}), ("sodium chloride", "NaCl", {"Na": 1, "Cl": 1}),
    ("glucose", "C6H12O6", {"C": 6, "H": 12, "O": 6}), ("sulfuric acid", "H2SO4", {"H": 2, "S": 1, "O": 4}),
    ("calcium carbonate", "CaCO3", {"Ca": 1, "C": 1, "O": 3}), ("magnesium oxide", "MgO", {"Mg": 1, "O": 1}),
    ("nitric acid", "HNO3", {"H": 1, "N": 1, "O": 3}), ("potassium chloride", "KCl", {"K": 1, "Cl": 1}),
]


def sci_element(rng: random.Random) -> Draft:
    (name, sym, z), *others = rng.sample(ELEMENTS, 4)
    latin = LATIN_NAMES.get(sym)
    origin = (f"The symbol {sym} comes from the Latin name {latin}." if latin
              else f"The symbol {sym} is derived directly from the English name {name}.")
    probes = [lambda r: (lambda e: f"For reference, {e[0]} has symbol {e[1]} and atomic number {e[2]}.")(r.choice(ELEMENTS)),
              lambda r: f"{name.capitalize()} has atomic number {z}, which fits the element I have in mind."]
    if rng.random() < 0.5:
        return science_draft(
            rng,
            question=f"What is the chemical symbol of {name}?",
            ask=f"the chemical symbol of {name}",
            correct=sym,
            wrong=[(s, f"{s} is the symbol of {n}") for n, s, _ in others],
            work=[f"{name.capitalize()} is element number {z}. {origin}"],
            explanation=f"{name.capitalize()} (atomic number {z}) has the symbol {sym}. {origin}",
            probes=probes,
        )
    return science_draft(
        rng,
        question=f"Which element has the chemical symbol {sym}?",
        ask=f"the element whose symbol is {sym}",
        correct=name.capitalize(),
        wrong=[(n.capitalize(), f"the symbol of {n} is {s}") for n, s, _ in others],
        work=[f"{origin} So {sym} is {name}, element number {z}."],
        explanation=f"{sym} is the symbol of {name} (atomic number {z}). {origin}",
        probes=probes,
    )


def sci_biology(rng: random.Random) -> Draft:
    table, kind = rng.choice([(CELL_STRUCTURES, "cell structure"), (ORGANS, "organ")])
    (part, verb, role), *others = rng.sample(table, 4)
    lower = lambda name: name[0].lower() + name[1:]
    return science_draft(
        rng,
        question=f"Which {kind} is primarily responsible for {role}?",
        ask=f"the {kind} responsible for {role}",
        correct=part,
        wrong=[(p, f"{lower(p)} {v} mainly responsible for {fn}") for p, v, fn in others],
        work=[f"The key phrase is '{role}'. That is the defining job of {lower(part)}."],
        explanation=f"{part} {verb} responsible for {role}.",
        remarks=["Each option is a real structure with its own function, so the question is really about matching "
                 "functions precisely."],
    )


def sci_units(rng: random.Random) -> Draft:
    (quantity, unit, sym, expr), *others = rng.sample(SI_UNITS, 4)
    relation = f"it is {expr}" if expr == "a base unit" else f"1 {sym} = 1 {expr}"
    return science_draft(
        rng,
        question=f"What is the SI unit of {quantity}?",
        ask=f"the SI unit of {quantity}",
        correct=f"{unit} ({sym})",
        wrong=[(f"{u} ({s})", f"the {u} is the unit of {q}") for q, u, s, _ in others],
        work=[f"The SI unit of {quantity} is the {unit}, symbol {sym}; {relation}."],
        explanation=f"The SI unit of {quantity} is the {unit} ({sym}); {relation}.",
        probes=[lambda r: (lambda q, u, sy, _: f"Recalling a neighbouring fact: {q} is measured in the {u} ({sy}).")(
            *r.choice(SI_UNITS))],
    )


def sci_physics(rng: random.Random) -> Draft:
    kind = rng.choice(["force", "kinetic", "ohm", "density", "speed", "weight"])
    if kind == "force":
        m, a = rng.randint(2, 25), rng.randint(2, 12)
        q = f"A net force gives a {m} kg object an acceleration of {a} m/s^2. What is the magnitude of the net force?"
        law, unit, ans = "Newton's second law, F = m * a", "N", Fraction(m * a)
        ask = "the magnitude of the net force"
        sub = f"F = {m} kg * {a} m/s^2 = {m * a} N"
        mistakes = [(Fraction(m + a), "adding mass and acceleration instead of multiplying"),
                    (Fraction(m, a), "dividing the mass by the acceleration"),
                    (Fraction(2 * m * a), "doubling the product"), (Fraction(m * a, 2), "halving the product")]
        scale = f"Doubling the mass to {2 * m} kg would double the force to {2 * m * a} N, as F is proportional to m."
    elif kind == "kinetic":
        m, v = rng.randint(1, 10), rng.randint(2, 12)
        q = f"A {m} kg cart moves at {v} m/s. What is its kinetic energy?"
        law, unit, ans = "the kinetic energy formula, KE = (1/2) * m * v^2", "J", Fraction(m * v * v, 2)
        ask = "the kinetic energy of the cart"
        sub = f"KE = 0.5 * {m} * {v}^2 = 0.5 * {m} * {v * v} = {fmt_num(ans)} J"
        mistakes = [(Fraction(m * v * v), "forgetting the factor 1/2"), (Fraction(m * v, 2), "forgetting to square the speed"),
                    (Fraction(m * v), "computing the momentum instead"), (Fraction(m * v * v, 4), "squaring the factor 1/2")]
        scale = f"Doubling the speed to {2 * v} m/s would quadruple the energy to {fmt_num(4 * ans)} J."
    elif kind == "ohm":
        i, res = rng.randint(1, 10), rng.randint(2, 40)
        q = f"A current of {i} A flows through a {res} ohm resistor. What is the voltage across the resistor?"
        law, unit, ans = "Ohm's law, V = I * R", "V", Fraction(i * res)
        ask = "the voltage across the resistor"
        sub = f"V = {i} A * {res} ohm = {i * res} V"
        mistakes = [(Fraction(i + res), "adding current and resistance"), (Fraction(res, i), "dividing R by I"),
                    (Fraction(i, res), "dividing I by R"), (Fraction(2 * i * res), "doubling the product")]
        scale = f"With twice the current, {2 * i} A, the voltage would be {2 * i * res} V."
    elif kind == "density":
        rho, vol = rng.randint(1, 12), rng.randint(2, 20)
        m = rho * vol
        q = f"A solid block has a mass of {m} g and a volume of {vol} cm^3. What is its density?"
        law, unit, ans = "the definition of density, rho = m / V", "g/cm^3", Fraction(rho)
        ask = "the density of the block"
        sub = f"rho = {m} g / {vol} cm^3 = {rho} g/cm^3"
        mistakes = [(Fraction(m * vol), "multiplying mass and volume"), (Fraction(vol, m), "dividing volume by mass"),
                    (Fraction(m - vol), "subtracting the volume from the mass"), (Fraction(m + vol), "adding mass and volume")]
        scale = f"Check: {rho} g/cm^3 * {vol} cm^3 = {m} g, the given mass."
    elif kind == "speed":
        v, t = rng.randint(2, 30), rng.randint(2, 10)
        d = v * t
        q = f"A cyclist travels {d} m in {t} s at constant speed. What is the cyclist's speed?"
        law, unit, ans = "speed = distance / time", "m/s", Fraction(v)
        ask = "the speed of the cyclist"
        sub = f"v = {d} m / {t} s = {v} m/s"
        mistakes = [(Fraction(d * t), "multiplying distance and time"), (Fraction(t, d), "dividing time by distance"),
                    (Fraction(d + t), "adding distance and time"), (Fraction(d - t), "subtracting time from distance")]
        scale = f"Check: {v} m/s * {t} s = {d} m, the given distance."
    else:
        m = rng.randint(1, 20)
        g = Fraction(49, 5)
        q = f"What is the weight of a {m} kg object near the Earth's surface? (Use g = 9.8 m/s^2.)"
        law, unit, ans = "W = m * g", "N", m * g
        ask = "the weight of the object"
        sub = f"W = {m} kg * 9.8 m/s^2 = {fmt_num(ans)} N"
        mistakes = [(Fraction(m), "confusing mass with weight"), (m / g, "dividing by g instead of multiplying"),
                    (m * 10 * g, "using g = 98 instead of 9.8"), (m * g / 2, "halving the result")]
        scale = f"Check: {m} * 10 = {10 * m}, and subtracting {m} * 0.2 = {fmt_num(Fraction(m, 5))} gives {fmt_num(ans)}."

    correct = f"{fmt_num(ans)} {unit}"
    wrong: list[tuple[str, str]] = []
    for val, why in mistakes:
        text = f"{fmt_num(val)} {unit}"
        if val > 0 and text != correct and text not in (w for w, _ in wrong):
            wrong.append((text, f"that value comes from {why}"))
    bump = 1
    while len(wrong) < 3:  # fall back to nearby values if the mistakes happened to coincide
        text = f"{fmt_num(ans + bump)} {unit}"
        if text != correct and text not in (w for w, _ in wrong):
            wrong.append((text, f"it does not follow from {law} with the given numbers"))
        bump += 1
    wrong = wrong[:3]
    return science_draft(
        rng,
        question=q,
        ask=ask,
        correct=correct,
        wrong=wrong,
        work=[f"The relevant relation is {law}.", f"Substituting the numbers: {sub}."],
        explanation=f"Using {law}: {sub}.",
        probes=[lambda r: scale, lambda r: f"Recomputing: {sub}, and the units come out as {unit}."],
    )


def sci_molar_mass(rng: random.Random) -> Draft:
    name, formula, comp = rng.choice(COMPOUNDS)
    parts = [(el, n, ATOMIC_MASSES[el] * n) for el, n in comp.items()]
    total = sum(p for _, _, p in parts)
    given = ", ".join(f"{el} = {fmt_num(ATOMIC_MASSES[el])}" for el in comp)
    breakdown = " + ".join(f"{n} * {fmt_num(ATOMIC_MASSES[el])}" for el, n, _ in parts)
    correct = f"{fmt_num(total)} g/mol"
    candidates = [(sum(ATOMIC_MASSES[el] for el in comp), "ignoring the subscripts"),
                  (total * 2, "doubling the formula"), (total + 16, "adding an extra oxygen atom"),
                  (total - 1, "dropping one hydrogen atom" if "H" in comp else "an arithmetic slip of 1"),
                  (total + 12, "adding an extra carbon atom")]
    wrong: list[tuple[str, str]] = []
    for val, why in candidates:
        text = f"{fmt_num(val)} g/mol"
        if text != correct and text not in (w for w, _ in wrong) and len(wrong) < 3:
            wrong.append((text, f"that value comes from {why}"))
    heaviest = max(parts, key=lambda p: p[2])
    return science_draft(
        rng,
        question=f"Using the atomic masses {given}, what is the molar mass of {name} ({formula})?",
        ask=f"the molar mass of {formula}",
        correct=correct,
        wrong=wrong,
        work=[f"{formula} contains " + ", ".join(f"{n} {el}" for el, n, _ in parts) + ".",
              f"Molar mass = {breakdown} = {fmt_num(total)} g/mol."],
        explanation=f"M({formula}) = {breakdown} = {fmt_num(total)} g/mol.",
        probes=[
            lambda r: (lambda el, n, mass: f"The {el} atoms contribute {n} * {fmt_num(ATOMIC_MASSES[el])} = "
                       f"{fmt_num(mass)} g/mol.")(*r.choice(parts)),
            lambda r: (f"{heaviest[0]} is the largest contribution, {fmt_num(heaviest[2])} of {fmt_num(total)} g/mol, "
                       f"about {float(heaviest[2] / total) * 100:.1f}% of the total."),
        ],
    )


SCIENCE_FAMILIES = [sci_element, sci_biology, sci_units, sci_physics, sci_molar_mass]
FAMILIES: dict[str, list[Callable[[random.Random], Draft]]] = {
    "math": MATH_FAMILIES, "code": CODE_FAMILIES, "science": SCIENCE_FAMILIES,
}


# --------------------------------------------------------------------------------------
# Assembly: padding, follow-ups, non-ASCII, records
# --------------------------------------------------------------------------------------


def assistant_message(thought: list[str], solution: str) -> str:
    body = "\n\n".join(thought)
    return f"{BEGIN_THOUGHT}\n\n{body}\n\n{END_THOUGHT}\n\n{BEGIN_SOLUTION}\n\n{solution}\n\n{END_SOLUTION}"


def sample_target_chars(rng: random.Random) -> int:
    """Long-tailed target length for one assistant turn."""
    if rng.random() < LONG_SHARE:
        return rng.randint(*LONG_RANGE)
    target = rng.lognormvariate(math.log(LENGTH_MEDIAN), LENGTH_SIGMA)
    return int(min(MAX_ASSISTANT_CHARS, max(MIN_ASSISTANT_CHARS, target)))


def wrap_probe(draft: Draft, rng: random.Random, probe: str) -> str:
    return rng.choice(CHECK_WRAPPERS[draft.domain]).format(p=probe) + rng.choice(CHECK_SUFFIXES)


def padding_steps(draft: Draft, rng: random.Random, budget: int) -> list[str]:
    """Extra reflection / verification steps totalling at most ``budget`` characters.

    Every verification (probe) and every remark is used at most once per record, so a
    record stops growing early when its family has run out of distinct checks.
    """
    remarks = draft.remarks + [r.format(ask=draft.ask, final=draft.final) for r in GENERIC_REMARKS[draft.domain]]
    rng.shuffle(remarks)
    seen: set[str] = set()
    steps, size, misses = [], 0, 0
    while misses < 40:
        if remarks and rng.random() < 0.25:
            step = remarks.pop()
        else:
            probe = rng.choice(draft.probes)(rng)
            if probe in seen:
                misses += 1
                continue
            seen.add(probe)
            misses = 0
            step = wrap_probe(draft, rng, probe)
        if size + len(step) + 2 > budget:
            break
        steps.append(step)
        size += len(step) + 2
    return steps


def follow_up_turns(draft: Draft, rng: random.Random) -> list[dict[str, str]]:
    steps = [rng.choice(FOLLOW_UP_OPENERS)]
    probes: list[str] = []
    for _ in range(rng.randint(1, 3)):
        probe = rng.choice(draft.probes)(rng)
        if probe not in probes:
            probes.append(probe)
            steps.append(wrap_probe(draft, rng, probe))
    steps.append(rng.choice(FOLLOW_UP_CLOSERS).format(final=draft.final))
    return [{"from": "user", "value": rng.choice(FOLLOW_UP_QUESTIONS)},
            {"from": "assistant", "value": assistant_message(steps, draft.recap)}]


def add_non_ascii(draft: Draft, rng: random.Random) -> None:
    """Put a little natural non-ASCII text (naïve, ≤, π, 答案) into the record."""
    if draft.domain == "code" and rng.random() < 0.5:
        draft.user += NON_ASCII_CODE_CONSTRAINT
    else:
        draft.steps.append(rng.choice(NON_ASCII_STEPS[draft.domain]).format(final=draft.final))


def build_record(draft: Draft, rng: random.Random, two_turn: bool) -> dict[str, Any]:
    target = sample_target_chars(rng)
    base = len(assistant_message([*draft.steps, draft.conclusion], draft.solution))
    thought = [*draft.steps, *padding_steps(draft, rng, target - base), draft.conclusion]
    conversations = [{"from": "user", "value": draft.user},
                     {"from": "assistant", "value": assistant_message(thought, draft.solution)}]
    if two_turn:
        conversations += follow_up_turns(draft, rng)
    return {"system": SYSTEM_PROMPT, "conversations": conversations, "domain": draft.domain, **draft.extra}


def generate(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    domains = [domain for domain, count in DOMAIN_COUNTS.items() for _ in range(count)]
    two_turn = set(rng.sample(range(N_RECORDS), N_TWO_TURN))
    non_ascii = set(rng.sample(range(N_RECORDS), N_NON_ASCII))
    records = []
    for i, domain in enumerate(domains):
        draft = rng.choice(FAMILIES[domain])(rng)
        if i in non_ascii:
            add_non_ascii(draft, rng)
        records.append(build_record(draft, rng, two_turn=i in two_turn))
    rng.shuffle(records)
    return records


def write_jsonl(records: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------

LAYOUT = re.compile(
    re.escape(BEGIN_THOUGHT) + r"\n\n(?P<thought>.+?)\n\n" + re.escape(END_THOUGHT) + r"\n\n"
    + re.escape(BEGIN_SOLUTION) + r"\n\n(?P<solution>.+?)\n\n" + re.escape(END_SOLUTION),
    re.DOTALL,
)
CODE_BLOCK = re.compile(r"```python\n(.*?)\n```", re.DOTALL)


class CheckError(AssertionError):
    pass


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckError(message)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, with nested braces matched."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def split_assistant(value: str, where: str) -> tuple[list[str], str]:
    match = LAYOUT.fullmatch(value)
    require(match is not None, f"{where}: assistant value does not follow the thought/solution layout")
    steps = match["thought"].split("\n\n")
    require(all(s and s == s.strip() for s in steps), f"{where}: empty or untrimmed thought step")
    return steps, match["solution"]


def check_code(record: dict[str, Any], solution: str, where: str) -> None:
    entry, tests = record.get("entry_point"), record.get("tests")
    require(isinstance(entry, str) and isinstance(tests, list) and len(tests) >= 3, f"{where}: bad entry_point/tests")
    block = CODE_BLOCK.search(solution)
    require(block is not None, f"{where}: no ```python block in the solution")
    namespace: dict[str, Any] = {"__name__": "sky_t1_sample_check"}
    exec(compile(block.group(1), f"<{where}>", "exec"), namespace)  # noqa: S102 - our own generated code
    require(callable(namespace.get(entry)), f"{where}: code does not define {entry}")
    for test in tests:
        require(set(test) == {"input", "output"} and test["input"].startswith(entry + "("), f"{where}: bad test {test}")
        got = repr(eval(test["input"], namespace))  # noqa: S307
        require(got == test["output"], f"{where}: {test['input']} gave {got}, expected {test['output']}")


def check_record(record: dict[str, Any], where: str) -> None:
    require(record.get("system") == SYSTEM_PROMPT, f"{where}: unexpected system prompt")
    domain = record.get("domain")
    require(domain in DOMAIN_COUNTS, f"{where}: unknown domain {domain!r}")
    turns = record.get("conversations")
    require(isinstance(turns, list) and len(turns) in (2, 4), f"{where}: expected 2 or 4 turns")
    for k, turn in enumerate(turns):
        require(set(turn) == {"from", "value"} and turn["from"] == ("user", "assistant")[k % 2],
                f"{where}: turn {k} has the wrong shape or role")
        require(isinstance(turn["value"], str) and turn["value"].strip() != "", f"{where}: empty turn {k}")
    solutions = [split_assistant(t["value"], where)[1] for t in turns[1::2]]
    user = turns[0]["value"]
    if domain == "math":
        answer = record.get("answer")
        require(isinstance(answer, str) and user.endswith(BOXED_INSTRUCTION), f"{where}: bad math prompt/answer")
        for sol in solutions:
            require(last_boxed(sol) == answer and sol.endswith(f"\\boxed{{{answer}}}"),
                    f"{where}: boxed answer {last_boxed(sol)!r} != {answer!r}")
    elif domain == "science":
        choices, answer = record.get("choices"), record.get("answer")
        require(isinstance(choices, list) and len(choices) == 4 and len(set(choices)) == 4, f"{where}: bad choices")
        require(answer in LETTERS, f"{where}: bad answer letter")
        for lab, choice in zip(LETTERS, choices):
            require(f"\n{lab}. {choice}\n" in user, f"{where}: option {lab} missing from the prompt")
        for sol in solutions:
            require(last_boxed(sol) == answer and sol.endswith(f"\\boxed{{{answer}}}"), f"{where}: boxed letter mismatch")
    else:
        require(user.startswith(CODE_HEADER), f"{where}: code prompt lacks the TACO/APPS header")
        check_code(record, solutions[0], where)


def check_file(path: Path) -> dict[str, Any]:
    """Verify the JSONL file and return summary statistics."""
    raw = path.read_bytes()
    require(len(raw) <= MAX_FILE_BYTES, f"{path} is {len(raw)} bytes, over the {MAX_FILE_BYTES} limit")
    text = raw.decode("utf-8")
    require(text.endswith("\n") and "\r" not in text, "file must use \\n line endings and end with a newline")
    lines = text.split("\n")[:-1]
    require(len(lines) == N_RECORDS, f"expected {N_RECORDS} records, found {len(lines)}")
    domains: dict[str, int] = {d: 0 for d in DOMAIN_COUNTS}
    lengths, two_turn, non_ascii = [], 0, 0
    for number, line in enumerate(lines, 1):
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CheckError(f"{where}: invalid JSON ({err})") from err
        check_record(record, where)
        domains[record["domain"]] += 1
        lengths.append(len(record["conversations"][1]["value"]))
        two_turn += len(record["conversations"]) == 4
        non_ascii += not line.isascii()
    require(domains == DOMAIN_COUNTS, f"domain counts {domains} != {DOMAIN_COUNTS}")
    require(0.03 * N_RECORDS <= two_turn <= 0.08 * N_RECORDS, f"{two_turn} two-turn records, expected about 5%")
    require(0.01 * N_RECORDS <= non_ascii <= 0.04 * N_RECORDS, f"{non_ascii} non-ASCII records, expected about 2%")
    require(min(lengths) >= 250 and max(lengths) <= MAX_ASSISTANT_CHARS + 500, "assistant lengths out of range")
    return {"records": len(lines), "domains": domains, "two_turn": two_turn, "non_ascii": non_ascii,
            "lengths": lengths, "bytes": len(raw)}


def print_summary(path: Path, stats: dict[str, Any]) -> None:
    lengths = stats["lengths"]
    print(f"{path}: OK")
    print(f"  records: {stats['records']}  " + "  ".join(f"{d}: {n}" for d, n in stats["domains"].items()))
    print(f"  two-turn: {stats['two_turn']}  with non-ASCII text: {stats['non_ascii']}")
    print(f"  assistant chars (first turn): min {min(lengths)}  median {int(statistics.median(lengths))}  "
          f"max {max(lengths)}")
    print(f"  file size: {stats['bytes']:,} bytes (limit {MAX_FILE_BYTES:,})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSONL path (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only verify an existing file, do not regenerate")
    args = parser.parse_args(argv)
    if not args.check:
        write_jsonl(generate(args.seed), args.out)
    try:
        stats = check_file(args.out)
    except CheckError as err:
        print(f"check failed: {err}", file=sys.stderr)
        return 1
    print_summary(args.out, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
