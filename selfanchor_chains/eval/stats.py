"""Interval estimates and paired tests for accuracies: Wilson interval, paired bootstrap, exact McNemar."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

__all__ = ["mcnemar_exact", "paired_bootstrap", "stratified_paired_bootstrap", "wilson_interval"]


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion.

    Args:
        correct: Successes.
        n: Trials.
        confidence: Coverage (0.95: z = 1.95996...).

    Returns:
        ``(low, high)``, or None when ``n`` is 0.
    """
    if n <= 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    z = _z(confidence)
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def proportion_fields(hits: int, n: int, confidence: float = 0.95) -> dict[str, float | None]:
    """The proportion ``hits / n`` and its Wilson interval, as a report cell's ``rate``, ``ci_low`` and ``ci_high``
    (all None when ``n`` is 0)."""
    ci = wilson_interval(hits, n, confidence)
    return {"rate": hits / n if n else None, "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test: a binomial test of ``b`` against ``b + c`` discordant pairs at 1/2.

    Args:
        b: Pairs the first method got right and the second wrong.
        c: Pairs the first method got wrong and the second right.

    Returns:
        The p-value, ``min(1, 2 · P(X <= min(b, c)))`` with X ~ Binomial(b + c, 1/2); 1 without discordant pairs.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    # Exact integer arithmetic up to the one division keeps large n from underflowing 0.5**n.
    return min(1.0, 2 * tail / 2**n)


def _rng(seed: int, key: str) -> Any:
    import numpy as np

    # Each comparison gets its own stream, derived from the seed and its name, so its interval does not depend on
    # which other comparisons the report happens to contain.
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def paired_bootstrap(
    first: Sequence[bool],
    second: Sequence[bool],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    key: str = "",
) -> tuple[float, float, float]:
    """Percentile bootstrap interval of ``mean(first) - mean(second)`` over paired items.

    Resampling items with replacement only moves the counts of the three kinds of pair (first right only, second
    right only, both the same), so each resample draws those counts from a multinomial: the same distribution as
    resampling indices, at O(1) memory per resample.

    Args:
        first: Per-item correctness of one method.
        second: Of the other method, on the same items in the same order.
        resamples: Bootstrap resamples.
        seed: Random seed; with ``key`` it fixes the result.
        confidence: Interval coverage.
        key: Name of the comparison (mixed into the seed).

    Returns:
        ``(difference, low, high)``.
    """
    if len(first) != len(second):
        raise ValueError(f"paired samples differ in length: {len(first)} != {len(second)}")
    if not first:
        raise ValueError("no paired items")
    return stratified_paired_bootstrap(
        [(first, second)], resamples=resamples, seed=seed, confidence=confidence, key=key
    )


def stratified_paired_bootstrap(
    strata: Sequence[tuple[Sequence[bool], Sequence[bool]]],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    key: str = "",
    weights: Sequence[float] | None = None,
) -> tuple[float, float, float]:
    """Bootstrap interval of the macro-averaged paired difference: items resampled within each stratum.

    Args:
        strata: ``(first, second)`` correctness lists per stratum (e.g. per BBH task); empty strata are skipped.
        resamples: Bootstrap resamples.
        seed: Random seed.
        confidence: Interval coverage.
        key: Name of the comparison (mixed into the seed).
        weights: Per stratum, its weight in the average (normalised over the non-empty strata); equal when None.
            The mean over benchmarks weights each BBH task by one over the number of tasks.

    Returns:
        ``(difference, low, high)``: the (weighted) mean over strata of the per-stratum difference, and its
        interval.

    Raises:
        ValueError: A stratum's lists differ in length, ``weights`` does not match ``strata`` or has a negative
            entry, or no stratum with items has a positive weight.
    """
    import numpy as np

    if weights is None:
        weights = [1.0] * len(strata)
    if len(weights) != len(strata):
        raise ValueError(f"{len(weights)} weights for {len(strata)} strata")
    if any(not w >= 0 for w in weights):  # `not >=` also rejects NaN
        raise ValueError(f"stratum weights must be >= 0, got {list(weights)}")
    rng = _rng(seed, key)
    point = 0.0
    draws = np.zeros(resamples)
    total = 0.0
    for (first, second), weight in zip(strata, weights, strict=True):
        if len(first) != len(second):
            raise ValueError(f"paired samples differ in length: {len(first)} != {len(second)}")
        n = len(first)
        if n == 0 or weight == 0:
            continue
        b = sum(1 for x, y in zip(first, second, strict=True) if x and not y)
        c = sum(1 for x, y in zip(first, second, strict=True) if y and not x)
        point += weight * (b - c) / n
        counts = rng.multinomial(n, [b / n, c / n, (n - b - c) / n], size=resamples)
        draws += weight * (counts[:, 0] - counts[:, 1]) / n
        total += weight
    if not total:
        raise ValueError("no paired items")
    draws /= total
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return point / total, float(low), float(high)
