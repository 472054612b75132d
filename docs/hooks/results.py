"""MkDocs hook: the Results page's tables are generated at build time from the committed reports (results/**.json),
never copied by hand. A marker line ``<!-- results:NAME -->`` in a page is replaced by the table NAME."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _load(relative: str) -> dict[str, Any] | None:
    path = ROOT / relative
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def reasoning_table() -> str:
    """Accuracy per benchmark and method of the shipped default's dev run (results/final/report.json)."""
    report = _load("results/final/report.json")
    if report is None:
        return "*results/final/report.json is missing.*"
    methods = report["methods"]
    lines = [f"| benchmark | {' | '.join(methods)} |", "|---" * (len(methods) + 1) + "|"]
    for row in report["rows"]:
        if row.get("kind") not in ("bench", "mean", "macro"):
            continue
        cells = []
        for method in methods:
            cell = row["methods"].get(method) or {}
            n = f" (n={cell['n']})" if cell.get("n") else ""
            cells.append(f"{_pct(cell.get('accuracy'))}{n}")
        lines.append(f"| {row['row']} | " + " | ".join(cells) + " |")
    model = report["run"]["model"]
    return f"Model `{model}`, accuracy in %, dev splits.\n\n" + "\n".join(lines)


def conflict_table() -> str:
    """Context-faithful rate, memory rate and control accuracy per method (results/conflictqa/<model>/report.json)."""
    parts = []
    for model in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        report = _load(f"results/conflictqa/{model}/report.json")
        if report is None or not report.get("conflict"):
            continue
        section = report["conflict"]
        names = list(next(iter(section["scores"].values())).keys())
        lines = [f"**{model}**", "", f"| method | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|"]
        for method in section["methods"]:
            scores = section["scores"][method]
            cells = [f"{_pct(scores[n]['rate'])} (n={scores[n]['n']})" for n in names]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or "*No conflictqa report is committed.*"


def code_table() -> str:
    """Pass@1 of the anchored code method vs plain (results/code/summary.json), once the final run has results."""
    summary = _load("results/code/summary.json")
    if not summary or not summary.get("models"):
        return "*The final code run has no results yet (it is under way; see results/code/README.md).*"
    lines = ["| model | bench | n | anchored | plain | Δ | b / c | p |", "|---|---|---|---|---|---|---|---|"]
    for model, rows in summary["models"].items():
        for r in rows:
            lines.append(
                f"| {model} | {r['bench']} | {r['n']} | {r['anchored']:.1f} | {r['plain']:.1f} | {r['delta']:+.1f}"
                f" | {r['b']} / {r['c']} | {r['p_value']:.3f} |"
            )
    interim = [model for model, complete in (summary.get("complete") or {}).items() if not complete]
    note = f" Interim for {', '.join(interim)}: the run is not finished (n so far)." if interim else ""
    return f"Anchored method: `{summary['reference']}`.{note}\n\n" + "\n".join(lines)


def rag_real_table() -> str:
    """Real questions, imperfect ranker (results/rag-real/summary.json): each rule's winner against the best of the
    RAG baselines, fair grader, paired on the conflict items."""
    summary = _load("results/rag-real/summary.json")
    if not summary or not summary.get("runs"):
        return "*The real-question run has no results yet (see results/rag-real/README.md).*"
    lines = [
        "| run: model, answers, rule: anchored method | faithful | best baseline | faithful | Δ | b / c | p"
        " | control: anchored / plain | target met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def share(cell: dict[str, Any]) -> str:  # a study rate cell: hits of n
        return _pct(cell["hits"] / cell["n"] if cell["n"] else None)

    for run, block in summary["runs"].items():
        scores, ref, best = block["scores"], block["reference"], block["best_baseline"]
        pair = block["paired_conflict"][best]["fair"]
        plain = next(m for m in scores if m.startswith("rag-plain"))  # rag-plain, or its -sentence twin
        control = [scores[m]["control accuracy (fair)"] for m in (ref, plain)]
        delta = "–" if pair["delta"] is None else f"{pair['delta']:+.1f}"
        # every method's 300 conflict and 100 control items decoded, or the row is interim and decides nothing
        complete = all(
            s["faithful (fair)"]["n"] >= 300 and s["control accuracy (fair)"]["n"] >= 100 for s in scores.values()
        )
        verdict = block["target_met"] if complete else "interim (run in progress)"
        lines.append(
            f"| {run} | {share(scores[ref]['faithful (fair)'])} (n={scores[ref]['faithful (fair)']['n']})"
            f" | `{best}` | {share(scores[best]['faithful (fair)'])} | {delta} | {pair['b']} / {pair['c']}"
            f" | {pair['p_value']:.3f} | {' / '.join(share(c) for c in control)} | {verdict} |"
        )
    return "Passage answers on conflict items, % (fair grader); Δ paired, exact McNemar p.\n\n" + "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "reasoning": reasoning_table,
    "conflict": conflict_table,
    "rag-real": rag_real_table,
    "code": code_table,
}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    for name, build in TABLES.items():
        marker = f"<!-- results:{name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, build())
    return markdown
