"""Argument types and shared arguments of the command line: a bad value is refused by the parser, before anything
is loaded."""

from __future__ import annotations

import argparse
import math

from ..reasoning.methods import METHODS

__all__ = [
    "DTYPES",
    "QUANTIZATIONS",
    "add_weights_arguments",
    "bench_arg",
    "methods_list_arg",
    "non_negative_int_arg",
    "omega_arg",
    "positive_int_arg",
    "temperature_arg",
    "text_arg",
    "top_p_arg",
    "variants_arg",
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
    from ..answers.formats import answer_hint

    try:
        answer_hint(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


DTYPES = ("auto", "bfloat16", "float32", "float16")
"""``--dtype`` choices; ``auto`` (the default) is bfloat16 where the CPU computes it natively, else float32."""
QUANTIZATIONS = ("int8", "int4")
"""Weight-only quantizations (torchao) a ``--variants`` list may name."""


def methods_list_arg(value: str) -> list[str]:
    """``--compare``: comma-separated method names."""
    methods = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown method(s) {unknown or value!r}; choose from {', '.join(METHODS)}")
    return methods


def variants_arg(value: str) -> list[str]:
    """``--variants``: comma-separated dtypes (``bfloat16``, ``float32``, ...) and quantizations (int8, int4)."""
    variants = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in variants if v not in (*DTYPES, *QUANTIZATIONS)]
    if unknown or not variants:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; use {', '.join((*DTYPES, *QUANTIZATIONS))}"
        )
    return variants


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` and ``--quantization``, the same on every command that loads a model."""
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="weights dtype; auto (default): bfloat16 where the CPU computes it natively, else float32",
    )
    parser.add_argument(
        "--quantization",
        default="auto",
        choices=("auto", "none", *QUANTIZATIONS),
        help="weight-only int8/int4 linear layers through torchao (pip install 'selfanchor-chains[quant]'; "
        "computes in bfloat16); auto (default): the measured CPU default where it is faster (--dtype auto on a "
        "CPU with native bfloat16), else none",
    )


def add_example_options(parser: argparse.ArgumentParser) -> None:
    """``--worked-example`` / ``--no-worked-example``: every method shows its worked example, or none; neither:
    every method as ``SelfAnchorChain`` by default (``args.worked_example`` is None)."""
    example = parser.add_mutually_exclusive_group()
    example.add_argument(
        "--worked-example",
        action="store_true",
        default=None,
        help="show every method one solved example in its own format (plan/reason or a plain trace), with the "
        "benchmark's answer format (default: every method alike does what SelfAnchorChain does by default)",
    )
    example.add_argument(
        "--no-worked-example", dest="worked_example", action="store_false", help="show no method a worked example"
    )
