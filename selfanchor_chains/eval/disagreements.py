"""Items the methods got differently right, each on a page of its own, linked from the report.

For every benchmark, the items where the reference method and a baseline disagree (one right, the other wrong)
are the ones that say what steering changes; a sample of them (fixed by a seed) gets a page with both solves side
by side and their step-level steering numbers (:func:`~selfanchor_chains.eval.steering_view.render_disagreement_html`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .steering_view import render_disagreement_html

PAGES_DIR = "maps"
"""The pages' folder, inside the evaluation folder."""


def pick_disagreements(
    results: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], reference: str, per_bench: int, seed: int = 0
) -> list[tuple[str, str, dict[str, Mapping[str, Any]]]]:
    """Up to ``per_bench`` items per benchmark where ``reference`` and some other method differ in correctness.

    The sample is the same for the same seed (items ordered by a hash of seed and id), so re-running the report
    keeps the pages. Returns ``(bench, id, {method: record})`` with every method that solved the item.
    """
    picked = []
    for bench, by_method in sorted(results.items()):
        if reference not in by_method:
            continue
        by_id = {m: {r["id"]: r for r in records} for m, records in by_method.items()}
        split = []
        for item_id, ref in by_id[reference].items():
            others = {m: ids[item_id] for m, ids in by_id.items() if m != reference and item_id in ids}
            if any(bool(o.get("correct")) != bool(ref.get("correct")) for o in others.values()):
                split.append((item_id, {reference: ref, **others}))
        split.sort(key=lambda item: hashlib.sha256(f"{seed}:{item[0]}".encode()).hexdigest())
        picked += [(bench, item_id, records) for item_id, records in split[:per_bench]]
    return picked


def _questions(bench: str, run: Mapping[str, Any]) -> dict[str, str]:
    """The benchmark's questions by id, when its data is at hand (the page shows the question then)."""
    from .datasets import DatasetError, load_problems

    settings = run.get("settings") or {}
    try:
        problems = load_problems(bench, data_dir=settings.get("data_dir"), split=settings.get("split") or "dev")
    except (DatasetError, ValueError, OSError):
        return {}
    return {p.id: p.question for p in problems}


def write_disagreement_pages(
    out_dir: str | os.PathLike[str],
    results: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    reference: str,
    *,
    per_bench: int = 5,
    seed: int = 0,
    run: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Write a page per sampled disagreement under ``OUT/maps/<bench>/``.

    Returns:
        ``[{"bench", "id", "page", "correct": {method: bool}}]``, ``page`` relative to ``out_dir``.
    """
    root = Path(out_dir)
    entries = []
    questions: dict[str, dict[str, str]] = {}
    for bench, item_id, records in pick_disagreements(results, reference, per_bench, seed):
        if bench not in questions:
            questions[bench] = _questions(bench, run or {})
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("_.") or "item"
        page = Path(PAGES_DIR) / bench / f"{name}.html"
        (root / page).parent.mkdir(parents=True, exist_ok=True)
        (root / page).write_text(
            render_disagreement_html(item_id, records, questions[bench].get(item_id)), encoding="utf-8"
        )
        correct = {m: bool(r.get("correct")) for m, r in records.items()}
        entries.append({"bench": bench, "id": item_id, "page": page.as_posix(), "correct": correct})
    return entries


def format_disagreements_markdown(entries: Sequence[Mapping[str, Any]], reference: str) -> list[str]:
    """The report's section linking the pages."""
    if not entries:
        return []
    lines = [
        f"## Items where {reference} and a baseline disagree (a sample, one page each)",
        "",
        "Each page shows the solves side by side with each step's ω, confidence, tokens steering changed and mean KL.",
        "",
    ]
    for entry in entries:
        right = ", ".join(m for m, ok in entry["correct"].items() if ok) or "none"
        lines.append(f"- [{entry['bench']} {entry['id']}]({entry['page']}): right: {right}")
    return [*lines, ""]
