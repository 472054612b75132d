"""The knowledge-conflict section of ``selfanchor report``: context-faithful rate, memory rate and control accuracy
per method (Wilson intervals), and paired differences of the reference method (default ``rag-anchored``) against
each other method on the same items (paired bootstrap interval, exact McNemar test).

Scores come from the per-item fields the runner writes for ``conflictqa`` (``kind``, ``context_match``,
``memory_match``; see :func:`.conflict_set.grade_conflict`). When ``closed-book`` ran too, the conflict
items whose closed-book answer was the memorised fact (the model *knows* it) are also reported on their own: that is
where context and memory really conflict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .ordering import ordered
from .paired import compare, paired_records, time_ratio
from .stats import proportion_fields

__all__ = ["CONFLICT_REFERENCE", "build_conflict_report", "format_conflict_markdown"]

CONFLICT_REFERENCE = "rag-anchored"
_ORDER = (
    "rag-anchored",
    "rag-anchored-top1",
    "rag-adaptive",
    "rag-anchored-oracle",
    "rag-plain",
    "rag-top1-only",
    "rag-top1-last",
    "rag-instructed",
    "rag-self-anchor",
    "closed-book",
)
# (row name, which items, which score)
_SCORES = (
    ("faithful", "conflict", "context_match"),
    ("memory", "conflict", "memory_match"),
    ("faithful (known)", "known", "context_match"),
    ("control accuracy", "control", "context_match"),
)
# The fair grader's scores, shown when every record has them (logs written before it existed do not).
_FAIR_SCORES = (
    ("faithful (fair)", "conflict", "context_fair"),
    ("memory (fair)", "conflict", "memory_fair"),
    ("control accuracy (fair)", "control", "context_fair"),
)


def _scores_for(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[tuple[str, str, str], ...]:
    every = [r for records in results.values() for r in records]
    fair = bool(every) and all("context_fair" in r for r in every)
    return _SCORES + _FAIR_SCORES if fair else _SCORES


def _ranker_accuracy(results: Mapping[str, Sequence[Mapping[str, Any]]], confidence: float) -> dict[str, Any] | None:
    """How often the ranker's first passage was the evidence, from the first ranked method's records."""
    for key in ("ranked_first_is_evidence", "anchored_evidence"):
        for records in results.values():
            ranked = [r for r in records if key in r]
            if ranked:
                return _rate(ranked, key, confidence)
    return None


def _rate(records: Sequence[Mapping[str, Any]], key: str, confidence: float) -> dict[str, Any]:
    n = len(records)
    hits = sum(bool(r.get(key)) for r in records)
    return {"n": n, "hits": hits, **proportion_fields(hits, n, confidence)}


def _known_ids(by_method: Mapping[str, Sequence[Mapping[str, Any]]]) -> set[str] | None:
    closed = by_method.get("closed-book")
    if not closed:
        return None
    return {str(r["id"]) for r in closed if r.get("kind") == "conflict" and r.get("memory_match")}


def _subset(records: Sequence[Mapping[str, Any]], items: str, known: set[str] | None) -> list[Mapping[str, Any]]:
    if items == "known":
        if known is None:
            return []
        return [r for r in records if r.get("kind") == "conflict" and str(r["id"]) in known]
    return [r for r in records if r.get("kind") == items]


def _seconds_per_token(records: Sequence[Mapping[str, Any]]) -> float | None:
    seconds = sum(float(r.get("seconds") or 0.0) for r in records)
    tokens = sum(int(r.get("tokens") or 0) for r in records)
    return seconds / tokens if tokens else None


def build_conflict_report(
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    reference: str = CONFLICT_REFERENCE,
    seed: int = 0,
    resamples: int = 10_000,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The conflict section from ``{method: records}`` of the ``conflictqa`` benchmark.

    Returns:
        ``{"methods", "reference", "known_items", "scores": {method: {score: {n, hits, rate, ci_low, ci_high}}},
        "paired": [...], "cost": {method: {seconds_per_item, seconds_per_token, mean_tokens, time_ratio}}}``; a paired
        entry per (score, baseline) has ``n``, both rates, ``diff``, its interval, ``b``, ``c`` and ``p_value``;
        ``time_ratio`` is the method's seconds over ``rag-plain``'s on the items both completed.
    """
    methods = ordered(results, _ORDER)
    known = _known_ids(results)
    score_rows = _scores_for(results)
    scores: dict[str, dict[str, Any]] = {}
    for method in methods:
        scores[method] = {
            name: _rate(_subset(results[method], items, known), key, confidence) for name, items, key in score_rows
        }
    paired: list[dict[str, Any]] = []
    if reference in results:
        opts: dict[str, Any] = {"seed": seed, "resamples": resamples, "confidence": confidence}
        for name, items, key in score_rows:
            reference_records = _subset(results[reference], items, known)
            for baseline in methods:
                if baseline == reference:
                    continue
                pairs = paired_records(reference_records, _subset(results[baseline], items, known))
                strata = [([bool(a.get(key)) for a, _ in pairs], [bool(b.get(key)) for _, b in pairs])]
                found = compare(f"conflictqa {name}", baseline, strata, **opts)
                if found:
                    paired.append({**found, "score": name})
    cost = {}
    for method in methods:
        records = results[method]
        tokens = [int(r["tokens"]) for r in records if isinstance(r.get("tokens"), int)]
        cost[method] = {
            "n": len(records),
            "seconds_per_item": sum(float(r.get("seconds") or 0.0) for r in records) / len(records)
            if records
            else None,
            "seconds_per_token": _seconds_per_token(records),
            "mean_tokens": sum(tokens) / len(tokens) if tokens else None,
            "time_ratio": time_ratio(records, results["rag-plain"]) if "rag-plain" in results else None,
        }
    return {
        "methods": methods,
        "reference": reference,
        "known_items": None if known is None else len(known),
        "score_names": [name for name, _, _ in score_rows],
        "scores": scores,
        "ranker_accuracy": _ranker_accuracy(results, confidence),
        "paired": paired,
        "cost": cost,
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _cell(score: Mapping[str, Any]) -> str:
    if not score["n"]:
        return "–"
    return f"{_pct(score['rate'])} [{_pct(score['ci_low'])}, {_pct(score['ci_high'])}] (n={score['n']})"


def format_conflict_markdown(section: Mapping[str, Any], confidence: float = 0.95) -> list[str]:
    """The section's Markdown lines: the scores table, the paired table and the cost table."""
    level = round(100 * confidence)
    methods = section["methods"]
    known = section["known_items"]
    lines = [
        "## Knowledge conflict (conflictqa)",
        "",
        f"Rates in %, {level}% Wilson interval, n items. faithful = the answer is the passage's (counterfactual) "
        "answer on conflict items; memory = the answer is the real-world fact on conflict items; control accuracy "
        "= right answer on control items (passage agrees with the fact).",
    ]
    if known is not None:
        lines.append(
            f"faithful (known) = faithful on the {known} conflict items whose closed-book answer was the fact "
            "(the model knows it, so context and memory really conflict)."
        )
    names = section.get("score_names") or [name for name, _, _ in _SCORES]
    ranker = section.get("ranker_accuracy")
    if ranker:
        lines.append(
            f"Ranker accuracy@1 (its first passage is the evidence): {_cell(ranker)}; the ranked methods "
            "(rag-anchored-top1, rag-top1-only, rag-top1-last) can gain no more than the ranker allows."
        )
    if "faithful (fair)" in names:
        lines.append(
            "(fair) = the fair grader: at least half of the answer's content words stated (not exact mention); "
            "memory (fair) only when it states more of the memorised answer than of the passage's."
        )
    lines += ["", "| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for method in methods:
        cells = [_cell(section["scores"][method][name]) for name in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    if section["paired"]:
        reference = section["reference"]
        lines += [
            f"### {reference} − baseline, paired on the same items",
            "",
            f"Δ in points, {level}% paired bootstrap interval; b = only {reference} hit, c = only the baseline hit; "
            "exact McNemar p (two-sided). For memory, lower is more faithful.",
            "",
            "| score | baseline | n | rates | Δ | CI | b | c | p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for p in section["paired"]:
            lines.append(
                f"| {p['score']} | {p['baseline']} | {p['n']} | {_pct(p['reference_accuracy'])} vs "
                f"{_pct(p['baseline_accuracy'])} | {100 * p['diff']:+.1f} | [{100 * p['ci_low']:+.1f}, "
                f"{100 * p['ci_high']:+.1f}] | {p['b']} | {p['c']} | {p['p_value']:.4g} |"
            )
        lines.append("")
    lines += [
        "### Cost",
        "",
        "time × rag-plain = the method's seconds over rag-plain's on the items both completed (side by side when one "
        "command ran both: the runner runs every method on a batch before the next batch).",
        "",
        "| method | n | s/item | mean tokens | s/token | time × rag-plain |",
        "|---|---|---|---|---|---|",
    ]
    for method in methods:
        c = section["cost"][method]
        cells = [
            str(c["n"]),
            "–" if c["seconds_per_item"] is None else f"{c['seconds_per_item']:.2f}",
            "–" if c["mean_tokens"] is None else f"{c['mean_tokens']:.1f}",
            "–" if c["seconds_per_token"] is None else f"{c['seconds_per_token']:.3f}",
            "–" if c["time_ratio"] is None else f"{c['time_ratio']:.2f}",
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines
