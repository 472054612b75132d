"""The order methods and benchmarks appear in, in reports: a preferred order first, the rest sorted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["ordered"]


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """The distinct ``names``: those in ``order`` in that order, then the others sorted."""
    unique = set(names)
    return [n for n in order if n in unique] + sorted(unique - set(order))
