"""Argument types of the command line: a bad value is refused by the parser, before anything is loaded."""

from __future__ import annotations

import argparse
import math

__all__ = [
    "bench_arg",
    "non_negative_int_arg",
    "omega_arg",
    "positive_int_arg",
    "temperature_arg",
    "text_arg",
    "top_p_arg",
]


def _integer(value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {number}")
    return number


def positive_int_arg(value: str) -> int:
    return _integer(value, 1)


def non_negative_int_arg(value: str) -> int:
    return _integer(value, 0)


def _number(value: str, *, minimum: float, maximum: float = math.inf, above: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    low_ok = number > minimum if above else number >= minimum
    if not (math.isfinite(number) and low_ok and number <= maximum):
        bound = f"> {minimum}" if above else f">= {minimum}"
        upper = f" and <= {maximum}" if math.isfinite(maximum) else ""
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}{upper}, got {value!r}")
    return number


def omega_arg(value: str) -> float:
    return _number(value, minimum=0.0)


def temperature_arg(value: str) -> float:
    return _number(value, minimum=0.0)


def top_p_arg(value: str) -> float:
    return _number(value, minimum=0.0, maximum=1.0, above=True)


def text_arg(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def bench_arg(value: str) -> str:
    from .answers import answer_hint

    try:
        answer_hint(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value
