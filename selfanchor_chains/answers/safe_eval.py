"""MATH-500: a small safe evaluator of LaTeX expressions (exact fractions where possible, complex floats
otherwise); it never calls ``eval``."""

from __future__ import annotations

import cmath
import math
import re
from collections.abc import Callable
from fractions import Fraction

from .latex import normalize_math

# --------------------------------------------------------------------------------------------------------
# MATH-500: a small safe evaluator (exact fractions where possible, complex floats otherwise)
# --------------------------------------------------------------------------------------------------------

Value = Fraction | complex


class _EvalError(Exception):
    pass


_TOKEN_RE = re.compile(r"\s*(?:(\d+\.\d*|\.\d+|\d+)|(\\[a-zA-Z]+|\\.)|(\S))")
_FUNCS: dict[str, Callable[[complex], complex]] = {
    "sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "ln": cmath.log, "log": cmath.log, "exp": cmath.exp,
    "cot": lambda z: 1 / cmath.tan(z), "sec": lambda z: 1 / cmath.cos(z), "csc": lambda z: 1 / cmath.sin(z),
    "arcsin": cmath.asin, "arccos": cmath.acos, "arctan": cmath.atan,
    "sinh": cmath.sinh, "cosh": cmath.cosh, "tanh": cmath.tanh,
}  # fmt: skip
_ATOM_CMDS = frozenset({"frac", "sqrt", "pi", "{", *_FUNCS})
_MAX_TOKENS = 400


def _sample(letter: str, k: int) -> Fraction:
    """A fixed rational value for a variable: distinct per letter and per trial, the same for both sides."""
    return Fraction(3 * ord(letter) + 11 * k + 5, 7 + 4 * k)


class _Parser:
    """Recursive-descent evaluator for the arithmetic subset of LaTeX that MATH answers use."""

    def __init__(self, text: str, trial: int) -> None:
        self.tokens: list[tuple[str, str]] = []
        for m in _TOKEN_RE.finditer(text):
            if m.group(1):
                self.tokens.append(("num", m.group(1)))
            elif m.group(2):
                self.tokens.append(("cmd", m.group(2)[1:]))
            elif m.group(3):
                self.tokens.append(("chr", m.group(3)))
        if len(self.tokens) > _MAX_TOKENS:
            raise _EvalError("too long")
        self.pos = 0
        self.trial = trial
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _EvalError("unexpected end")
        self.pos += 1
        return tok

    def expect(self, ch: str) -> None:
        if self.take() != ("chr", ch):
            raise _EvalError(f"expected {ch}")

    def parse(self) -> Value:
        value = self.expr()
        if self.peek() is not None:
            raise _EvalError("trailing input")
        return value

    def expr(self) -> Value:
        self.depth += 1
        if self.depth > 60:
            raise _EvalError("too deep")
        value = self.term()
        while (tok := self.peek()) in (("chr", "+"), ("chr", "-")):
            self.take()
            rhs = self.term()
            value = value + rhs if tok == ("chr", "+") else value - rhs
        self.depth -= 1
        return value

    def starts_atom(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        kind, val = tok
        return (
            kind == "num"
            or (kind == "chr" and (val.isalpha() or val in "({["))
            or (kind == "cmd" and val in _ATOM_CMDS)
        )

    def term(self) -> Value:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in (("chr", "*"), ("cmd", "cdot"), ("cmd", "times"), ("cmd", "ast")):
                self.take()
                value = value * self.unary()
            elif tok in (("chr", "/"), ("cmd", "div")):
                self.take()
                value = _div(value, self.unary())
            elif self.starts_atom():
                value = value * self.power()
            else:
                return value

    def unary(self) -> Value:
        tok = self.peek()
        if tok == ("chr", "-"):
            self.take()
            return -self.unary()
        if tok == ("chr", "+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Value:
        base = self.postfix(self.atom())
        if self.peek() == ("chr", "^"):
            self.take()
            signed = self.peek() in (("chr", "-"), ("chr", "+"))
            return _pow(base, self.unary() if signed else self.postfix(self.atom()))
        return base

    def postfix(self, value: Value) -> Value:
        while self.peek() == ("chr", "!"):
            self.take()
            if not (isinstance(value, Fraction) and value.denominator == 1 and 0 <= value <= 200):
                raise _EvalError("bad factorial")
            value = Fraction(math.factorial(int(value)))
        return value

    def arg(self) -> Value:
        """A macro argument: a brace group or a single character (``\\frac43``, ``\\sqrt3``)."""
        tok = self.peek()
        if tok == ("chr", "{"):
            self.take()
            value = self.expr()
            self.expect("}")
            return value
        if tok is not None and tok[0] == "num" and len(tok[1]) > 1:
            self.tokens[self.pos] = ("num", tok[1][1:])
            return Fraction(tok[1][0])
        return self.atom()

    def atom(self) -> Value:
        kind, val = self.take()
        if kind == "num":
            return Fraction(val)
        if kind == "chr":
            closing = {"(": ")", "{": "}", "[": "]", "|": "|"}.get(val)
            if closing:
                inner = self.expr()
                self.expect(closing)
                if val == "|":
                    return abs(inner) if isinstance(inner, Fraction) else complex(abs(inner))
                return inner
            if val == "i":
                return 1j
            if val.isalpha() and val.isascii():
                return _sample(val, self.trial)
            raise _EvalError(f"unexpected {val!r}")
        if val == "{":
            inner = self.expr()
            if self.take() != ("cmd", "}"):
                raise _EvalError("expected \\}")
            return inner
        if val == "frac":
            num = self.arg()
            return _div(num, self.arg())
        if val == "sqrt":
            if self.peek() == ("chr", "["):
                self.take()
                index = self.expr()
                self.expect("]")
                return _pow(self.arg(), _div(Fraction(1), index))
            return _sqrt(self.arg())
        if val == "pi":
            return complex(math.pi)
        if val in _FUNCS:
            exponent: Value | None = None
            if self.peek() == ("chr", "^"):
                self.take()
                exponent = self.atom()
            result: Value = _FUNCS[val](complex(self.unary()))
            return _pow(result, exponent) if exponent is not None else result
        raise _EvalError(f"unsupported \\{val}")


def _div(a: Value, b: Value) -> Value:
    if b == 0:
        raise _EvalError("division by zero")
    return a / b


def _sqrt(a: Value) -> Value:
    if isinstance(a, Fraction) and a >= 0:
        rn, rd = math.isqrt(a.numerator), math.isqrt(a.denominator)
        if rn * rn == a.numerator and rd * rd == a.denominator:
            return Fraction(rn, rd)
    return cmath.sqrt(complex(a))


def _pow(base: Value, exponent: Value) -> Value:
    if isinstance(base, Fraction) and isinstance(exponent, Fraction):
        if exponent.denominator == 1 and abs(exponent) <= 256 and max(abs(base.numerator), base.denominator) < 10**40:
            if base == 0 and exponent < 0:
                raise _EvalError("division by zero")
            return base ** int(exponent)
        if exponent == Fraction(1, 2):
            return _sqrt(base)
    try:
        result = complex(base) ** complex(exponent)
    except (OverflowError, ZeroDivisionError) as exc:
        raise _EvalError("pow") from exc
    return result


def _evaluate(text: str, trial: int = 0) -> Value | None:
    """Value of an expression, or None when it is not plain arithmetic (text, intervals, \\infty, ...)."""
    if re.search(r"[a-zA-Z]{3,}", re.sub(r"\\[a-zA-Z]+", " ", text)):
        return None  # a word ("east", "ellipse") is text, not a product of variables
    try:
        value = _Parser(text, trial).parse()
    except (_EvalError, ValueError, OverflowError, ZeroDivisionError, RecursionError):
        return None
    if isinstance(value, complex) and not (math.isfinite(value.real) and math.isfinite(value.imag)):
        return None
    return value


def _math_value(text: str) -> Value | None:
    return _evaluate(normalize_math(text))


def _values_equal(a: Value, b: Value) -> bool:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    try:
        za, zb = complex(a), complex(b)
    except OverflowError:  # an exact value past the float range ((10^{39})^{256}): no finite float is close to it
        return False
    return abs(za - zb) <= 1e-9 * max(1.0, abs(za), abs(zb))
