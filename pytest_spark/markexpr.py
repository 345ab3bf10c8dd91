"""Which gate a ``-m`` expression decides, or why it cannot decide one.

The deciding gate is the one ``-m`` names. A bare gate name (``-m go_nogo``) decides it; so
does an expression that can only select tests of that one gate (``-m "go_nogo and not
slow"``): what it leaves out is deselected, and the verdict reports those items MISSING. An
expression that could select tests outside the gate (``go_nogo or slow``, ``not chaos``) or
names several gates is refused, because no single verdict would describe the run.

pytest's own expression parser lives in a private module (``_pytest.mark.expression``), so
this is a small parser of the same grammar::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | "(" expr ")" | ident [ "(" kwargs ")" ]
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Collection, Mapping

# Identifier characters as pytest accepts them in -m and -k.
IDENT = re.compile(r"(?:\w|:|\+|-|\.|\[|\]|\\|/)+")
TOKEN = re.compile(r"\s*(?:(?P<paren>[()])|(?P<ident>" + IDENT.pattern + r")|(?P<other>\S))")
KEYWORDS = frozenset({"and", "or", "not"})
MAX_NAMES = 16  # 2**16 assignments are still instant; longer expressions are refused

Predicate = Callable[[Mapping[str, bool]], bool]


class GateExpressionError(ValueError):
    """The -m expression selects tests but no single gate can decide them."""


def gate_named(markexpr: str, gates: Collection[str]) -> str | None:
    """The gate ``markexpr`` decides, None when it names no gate; refuses the ambiguous."""
    text = markexpr.strip()
    if not text:
        return None
    predicate, names = _parse(text)
    named = sorted(names & set(gates))
    if not named:
        return None
    if len(named) > 1:
        raise GateExpressionError(
            f"-m {markexpr!r} names several gates ({', '.join(named)}): one run decides one "
            f"gate; run each as its own `pytest -m <gate>`"
        )
    gate = named[0]
    others = sorted(names - {gate})
    if len(others) > MAX_NAMES:
        raise GateExpressionError(f"-m {markexpr!r} is too long to check; simplify it")
    outside = _assignment(predicate, gate, others, False)
    if outside is not None:
        example = ", ".join(f"{k}={v}" for k, v in sorted(outside.items()) if k != gate)
        raise GateExpressionError(
            f"-m {markexpr!r} can select tests that are not in gate {gate!r}"
            + (f" (e.g. marks {example})" if example else "")
            + f"; use -m {gate}, optionally narrowed as -m '{gate} and ...'"
        )
    if _assignment(predicate, gate, others, True) is None:
        raise GateExpressionError(f"-m {markexpr!r} can select no test of gate {gate!r}")
    return gate


def _assignment(
    predicate: Predicate, gate: str, others: list[str], gate_value: bool
) -> dict[str, bool] | None:
    """A marker assignment with ``gate`` = ``gate_value`` that the expression selects."""
    for values in itertools.product((False, True), repeat=len(others)):
        marks = {gate: gate_value, **dict(zip(others, values, strict=True))}
        if predicate(marks):
            return marks
    return None


def _parse(text: str) -> tuple[Predicate, set[str]]:
    tokens = _tokens(text)
    names: set[str] = set()
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = peek()
        if token is None or (expected is not None and token != expected):
            raise GateExpressionError(f"-m {text!r}: expected {expected or 'more'} at {token!r}")
        pos += 1
        return token

    def expr() -> Predicate:
        parts = [and_expr()]
        while peek() == "or":
            take("or")
            parts.append(and_expr())
        return lambda m: any(p(m) for p in parts)

    def and_expr() -> Predicate:
        parts = [not_expr()]
        while peek() == "and":
            take("and")
            parts.append(not_expr())
        return lambda m: all(p(m) for p in parts)

    def not_expr() -> Predicate:
        token = peek()
        if token == "not":
            take("not")
            inner = not_expr()
            return lambda m: not inner(m)
        if token == "(":
            take("(")
            inner = expr()
            take(")")
            return inner
        name = take()
        if name in KEYWORDS or not IDENT.fullmatch(name):
            raise GateExpressionError(f"-m {text!r}: unexpected {name!r}")
        if peek() == "(":
            # A marker with keyword arguments (pytest >= 8.3) selects a subset of the marker's
            # tests: a name of its own, implying the bare marker.
            depth = 0
            while True:
                token = take()
                depth += {"(": 1, ")": -1}.get(token, 0)
                if depth == 0:
                    break
            narrowed = f"{name}(...)"
            names.update({name, narrowed})
            return lambda m: m[name] and m[narrowed]
        names.add(name)
        return lambda m: m[name]

    predicate = expr()
    if pos != len(tokens):
        raise GateExpressionError(f"-m {text!r}: unexpected {tokens[pos]!r}")
    return predicate, names


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None:
            break
        tokens.append(match.group("paren") or match.group("ident") or match.group("other"))
        pos = match.end()
    return tokens
