"""Paired comparisons of two methods' per-item logs: the items both completed, the accuracy difference with a
(stratified, optionally weighted) paired bootstrap interval and an exact McNemar test, and the side-by-side time
ratio. Used by the evaluation report and the ConflictQA report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .stats import mcnemar_exact, stratified_paired_bootstrap

__all__ = ["compare", "paired_correctness", "paired_records", "time_ratio"]


def paired_records(
    reference: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """``(reference record, baseline record)`` for the items both completed, in the reference's order."""
    base = {str(r["id"]): r for r in baseline}
    return [(r, base[str(r["id"])]) for r in reference if str(r["id"]) in base]


def paired_correctness(
    reference: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]]
) -> tuple[list[bool], list[bool]]:
    """Correctness of both methods on the items both completed, in the reference's order."""
    pairs = paired_records(reference, baseline)
    return [bool(a.get("correct")) for a, _ in pairs], [bool(b.get("correct")) for _, b in pairs]


def time_ratio(reference: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]]) -> float | None:
    """Reference seconds over baseline seconds on the items both completed.

    When one ``selfanchor eval`` command ran both methods they ran on the same batches one after the other, so this
    is a side-by-side measure even when the machine's speed drifts over a long run (overall problems/min are not);
    items the two methods completed in separate runs compare those runs' conditions as well.
    """
    pairs = paired_records(reference, baseline)
    ref_seconds = sum(float(a.get("seconds") or 0.0) for a, _ in pairs)
    base_seconds = sum(float(b.get("seconds") or 0.0) for _, b in pairs)
    return ref_seconds / base_seconds if ref_seconds > 0 and base_seconds > 0 else None


def compare(
    row: str,
    baseline: str,
    strata: Sequence[tuple[list[bool], list[bool]]],
    *,
    seed: int,
    resamples: int,
    confidence: float,
    weights: Sequence[float] | None = None,
) -> dict[str, Any] | None:
    """Reference − baseline over ``strata`` of paired correctness lists (one per benchmark, BBH task, ...).

    Returns:
        None without paired items; else ``row``, ``baseline``, ``n``, both (weighted macro) accuracies, ``diff``
        with its bootstrap interval ``ci_low``/``ci_high``, the discordant counts ``b`` (reference right only) and
        ``c`` pooled over strata, and the exact McNemar ``p_value``.
    """
    first = [x for a, _ in strata for x in a]
    second = [x for _, b in strata for x in b]
    n = len(first)
    if not n:
        return None
    weights = list(weights) if weights is not None else [1.0] * len(strata)
    b = sum(1 for x, y in zip(first, second, strict=True) if x and not y)
    c = sum(1 for x, y in zip(first, second, strict=True) if y and not x)
    diff, low, high = stratified_paired_bootstrap(
        strata, resamples=resamples, seed=seed, confidence=confidence, key=f"{row}|{baseline}", weights=weights
    )
    used = [(s, w) for s, w in zip(strata, weights, strict=True) if s[0] and w]
    total = sum(w for _, w in used)
    return {
        "row": row,
        "baseline": baseline,
        "n": n,
        "reference_accuracy": sum(w * sum(a) / len(a) for (a, _), w in used) / total,
        "baseline_accuracy": sum(w * sum(bb) / len(bb) for (_, bb), w in used) / total,
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "b": b,
        "c": c,
        "p_value": mcnemar_exact(b, c),
    }
