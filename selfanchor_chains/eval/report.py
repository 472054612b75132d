"""The evaluation report: accuracy table with Wilson intervals, paired Self-Anchor − baseline differences with a
paired bootstrap interval and an exact McNemar test, speed and failure-mode counts, and two charts.

BBH is reported per task and as the macro-average over tasks (row ``bbh (macro)``), the figure the papers quote.
The macro row's paired interval resamples items within each task; its McNemar test pools the tasks' pairs.
With two benchmarks or more, row ``mean (benchmarks)`` averages the benchmarks (BBH as its macro row), each with
the same weight: the figure a "mean of the six benchmarks" target is about. It covers only methods (and paired
comparisons) present on every benchmark; its interval resamples items within each benchmark (within each BBH task,
a task weighing one over the number of tasks) and its McNemar test pools all pairs.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..reasoning.methods import METHODS
from .conflict_report import CONFLICT_REFERENCE, build_conflict_report, format_conflict_markdown
from .disagreements import format_disagreements_markdown, write_disagreement_pages
from .ordering import ordered
from .paired import compare, paired_correctness, paired_records, time_ratio
from .stats import proportion_fields
from .steering_report import build_steering_summary, format_steering_markdown
from .store import iter_result_files, read_records, read_run_info

__all__ = [
    "MACRO_ROW",
    "MEAN_ROW",
    "build_report",
    "format_markdown",
    "load_results",
    "paired_records",
    "plot_accuracy",
    "plot_tokens",
    "write_report",
]

MACRO_ROW = "bbh (macro)"
MEAN_ROW = "mean (benchmarks)"
# Below this many paired items in some BBH task the within-task bootstrap of the macro row is flagged as too narrow.
_RELIABLE_TASK_SIZE = 5
TRUNCATED = frozenset({"length", "max_tokens", "MAX_TOKENS"})
"""Finish reasons meaning the token budget ran out (ours, and hosted APIs' spellings)."""
_FINAL_LINE = re.compile(r"final\s+answer", re.IGNORECASE)
_METHOD_ORDER = METHODS


def load_results(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """All results under ``out_dir`` as ``{bench: {method: records}}`` (one record per id; see
    :func:`~selfanchor_chains.eval.store.read_records`)."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for bench, method, path in iter_result_files(out_dir):
        records = read_records(path)
        if records:
            results.setdefault(bench, {})[method] = records
    return results


def _tokens(records: Iterable[Mapping[str, Any]]) -> list[int]:
    return [r["tokens"] for r in records if isinstance(r.get("tokens"), int | float)]


def _per_minute(records: Sequence[Mapping[str, Any]]) -> float | None:
    seconds = sum(float(r.get("seconds") or 0.0) for r in records)
    return 60.0 * len(records) / seconds if seconds > 0 else None


def _cell(records: Sequence[Mapping[str, Any]], confidence: float) -> dict[str, Any]:
    n = len(records)
    correct = sum(bool(r.get("correct")) for r in records)
    rate = proportion_fields(correct, n, confidence)
    tokens = _tokens(records)
    return {
        "n": n,
        "correct": correct,
        "accuracy": rate["rate"],
        "ci_low": rate["ci_low"],
        "ci_high": rate["ci_high"],
        "mean_tokens": sum(tokens) / len(tokens) if tokens else None,
        "problems_per_minute": _per_minute(records),
    }


def _averaged_cell(
    parts: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]], count_key: str
) -> dict[str, Any]:
    """One method over several parts (BBH's tasks, or the benchmarks of the mean row), each part weighted alike.

    Parts without a scored item are left out; ``count_key`` names how many parts the average spans. Tokens and
    throughput come from the pooled ``records``, since time is spent per item, not per part.
    """
    scored = [c for c in parts if c["n"]]
    tokens = _tokens(records)
    return {
        "n": sum(c["n"] for c in scored),
        "correct": sum(c["correct"] for c in scored),
        "accuracy": sum(c["accuracy"] for c in scored) / len(scored) if scored else None,
        "ci_low": None,
        "ci_high": None,
        count_key: len(scored),
        "mean_tokens": sum(tokens) / len(tokens) if tokens else None,
        "problems_per_minute": _per_minute(records),
    }


def _bbh_task(record: Mapping[str, Any]) -> str:
    task = record.get("task")
    if task:
        return str(task)
    parts = str(record.get("id", "")).split("/")  # ids look like bbh/<task>/<n>
    return parts[1] if len(parts) == 3 else "unknown"


def _groups(
    results: Mapping[str, Mapping[str, Sequence[dict[str, Any]]]],
) -> list[tuple[str, str, str | None, dict[str, list[dict[str, Any]]]]]:
    """``(row name, bench, task, {method: records})`` for every benchmark and every BBH task, in report order."""
    from .datasets import BBH_TASKS, BENCHMARKS

    groups: list[tuple[str, str, str | None, dict[str, list[dict[str, Any]]]]] = []
    for bench in ordered(results, BENCHMARKS):
        by_method = results[bench]
        if bench != "bbh":
            groups.append((bench, bench, None, {m: list(r) for m, r in by_method.items()}))
            continue
        tasks = ordered((_bbh_task(r) for recs in by_method.values() for r in recs), BBH_TASKS)
        for task in tasks:
            split = {m: [r for r in recs if _bbh_task(r) == task] for m, recs in by_method.items()}
            groups.append((f"bbh:{task}", bench, task, {m: r for m, r in split.items() if r}))
    return groups


def _failure_modes(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    reasons = Counter(str(r.get("finish_reason")) for r in records)
    truncated = sum(1 for r in records if r.get("finish_reason") in TRUNCATED)
    return {
        "n": len(records),
        "seconds": sum(float(r.get("seconds") or 0.0) for r in records),
        "problems_per_minute": _per_minute(records),
        "mean_tokens": (sum(t) / len(t)) if (t := _tokens(records)) else None,
        "finish_reasons": dict(reasons.most_common()),
        "truncated": truncated,
        "code": sum(1 for r in records if "```" in str(r.get("text") or "")),
        # A reply that ended on its own without the 'Final Answer:' line every prompt asks for; truncated replies
        # are counted above, not here.
        "format_breaks": sum(
            1
            for r in records
            if r.get("finish_reason") not in TRUNCATED and not _FINAL_LINE.search(str(r.get("text") or ""))
        ),
        "no_answer": sum(1 for r in records if r.get("prediction") in (None, "")),
        "retried": sum(1 for r in records if r.get("retried")),
    }


def build_report(
    out_dir: str | os.PathLike[str],
    *,
    reference: str = "self-anchor",
    seed: int = 0,
    resamples: int = 10_000,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Compute the report of an evaluation folder.

    Args:
        out_dir: The ``selfanchor eval`` output folder.
        reference: The method the others are compared with (paired differences are ``reference − baseline``).
        seed: Bootstrap seed.
        resamples: Bootstrap resamples.
        confidence: Interval coverage (Wilson and bootstrap).

    Returns:
        A JSON-serialisable dict: ``run`` (from ``run.json``), ``methods``, ``rows`` (per benchmark, BBH task and
        the BBH macro row: per method ``n``, ``correct``, ``accuracy``, ``ci_low``/``ci_high``, ``mean_tokens``,
        ``problems_per_minute``), ``paired`` (per row and baseline: ``n``, ``diff``, ``ci_low``/``ci_high``,
        discordant counts ``b`` (reference right only) and ``c``, McNemar ``p_value``) and ``efficiency`` (per
        method: problems per minute, mean tokens, finish reasons, truncated / code / format-break counts).
    """
    results = load_results(out_dir)
    methods = ordered((m for by_method in results.values() for m in by_method), _METHOD_ORDER)
    rows: list[dict[str, Any]] = []
    paired: list[dict[str, Any]] = []
    opts: dict[str, Any] = {"seed": seed, "resamples": resamples, "confidence": confidence}
    bbh_cells: dict[str, list[dict[str, Any]]] = {}
    bbh_strata: dict[str, list[tuple[list[bool], list[bool]]]] = {}
    bench_strata: dict[str, dict[str, list[tuple[list[bool], list[bool]]]]] = {}  # baseline → bench → pairs
    for row, bench, task, by_method in _groups(results):
        cells = {m: _cell(by_method[m], confidence) for m in methods if m in by_method}
        rows.append({"row": row, "bench": bench, "task": task, "kind": "task" if task else "bench", "methods": cells})
        for m, cell in cells.items():
            if task:
                bbh_cells.setdefault(m, []).append(cell)
        if reference not in by_method:
            continue
        for baseline in methods:
            if baseline == reference or baseline not in by_method:
                continue
            pair = paired_correctness(by_method[reference], by_method[baseline])
            bench_strata.setdefault(baseline, {}).setdefault(bench, []).append(pair)
            if task:
                bbh_strata.setdefault(baseline, []).append(pair)
            found = compare(row, baseline, [pair], **opts)
            if found:
                found["time_ratio"] = time_ratio(by_method[reference], by_method[baseline])
                paired.append(found)
    if bbh_cells:
        macro_row, macro_pairs = _bbh_macro(results.get("bbh", {}), methods, reference, bbh_cells, bbh_strata, opts)
        rows.append(macro_row)
        paired += macro_pairs
    all_records = {m: [r for by_method in results.values() for r in by_method.get(m, [])] for m in methods}
    if len(results) >= 2:
        mean_row, mean_pairs = _benchmark_mean(rows, all_records, reference, bench_strata, opts)
        rows.append(mean_row)
        paired += mean_pairs
    run = read_run_info(out_dir)
    report = {
        "out_dir": str(out_dir),
        "run": {k: run.get(k) for k in ("model", "dtype", "package_version", "settings")},
        "settings": {"reference": reference, **opts},
        "methods": methods,
        "rows": rows,
        "paired": paired,
        "efficiency": {m: _failure_modes(all_records[m]) for m in methods},
        "steering": build_steering_summary(results),
    }
    if "conflictqa" in results:
        conflict_methods = results["conflictqa"]
        conflict_reference = reference if reference in conflict_methods else CONFLICT_REFERENCE
        report["conflict"] = build_conflict_report(conflict_methods, reference=conflict_reference, **opts)
    return report


def _bbh_macro(
    bbh_records: Mapping[str, list[dict[str, Any]]],
    methods: Sequence[str],
    reference: str,
    cells: Mapping[str, list[dict[str, Any]]],
    strata: Mapping[str, list[tuple[list[bool], list[bool]]]],
    opts: Mapping[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The BBH macro row (the mean over tasks) and its paired comparisons, stratified by task."""
    row = {
        "row": MACRO_ROW,
        "bench": "bbh",
        "task": None,
        "kind": "macro",
        "methods": {m: _averaged_cell(cells[m], bbh_records.get(m, []), "tasks") for m in methods if m in cells},
    }
    paired = []
    for baseline, pairs in strata.items():
        found = compare(MACRO_ROW, baseline, pairs, **opts)
        if found:
            found["time_ratio"] = time_ratio(bbh_records.get(reference, []), bbh_records.get(baseline, []))
            # Resampling within a task of one or two items barely varies, so such an interval is too narrow.
            found["smallest_task"] = min(len(first) for first, _ in pairs if first)
            paired.append(found)
    return row, paired


def _benchmark_mean(
    rows: Sequence[Mapping[str, Any]],
    all_records: Mapping[str, Sequence[Mapping[str, Any]]],
    reference: str,
    bench_strata: Mapping[str, Mapping[str, Sequence[tuple[list[bool], list[bool]]]]],
    opts: Mapping[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The mean over benchmarks (BBH by its macro row) for the methods, and the paired comparisons, that cover
    every benchmark."""
    bench_rows = [r for r in rows if r["kind"] == "bench" or r["kind"] == "macro"]
    cells = {}
    for method, records in all_records.items():
        per_bench = [r["methods"].get(method) for r in bench_rows]
        if all(c is not None and c["accuracy"] is not None for c in per_bench):
            cells[method] = _averaged_cell([c for c in per_bench if c is not None], records, "benchmarks")
    row = {"row": MEAN_ROW, "bench": None, "task": None, "kind": "mean", "methods": cells}
    benches = {r["bench"] for r in bench_rows}
    paired = []
    for baseline, by_bench in bench_strata.items():
        if set(by_bench) != benches or not all(any(first for first, _ in p) for p in by_bench.values()):
            continue  # a mean over some of the benchmarks is not the mean over benchmarks
        strata: list[tuple[list[bool], list[bool]]] = []
        weights: list[float] = []
        for pairs in by_bench.values():
            tasks = sum(1 for first, _ in pairs if first)  # BBH: its tasks share one benchmark's weight
            strata += pairs
            weights += [1.0 / tasks] * len(pairs)
        found = compare(MEAN_ROW, baseline, strata, weights=weights, **opts)
        if found:
            found["time_ratio"] = time_ratio(all_records.get(reference, []), all_records.get(baseline, []))
            found["benchmarks"] = len(by_bench)
            paired.append(found)
    return row, paired


# -- rendering ---------------------------------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


def _tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in body)
    return lines


def format_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: accuracy table, paired differences, efficiency and failure modes."""
    lines = _header_markdown(report)
    if not report["rows"]:
        return "\n".join([*lines, "No results found.", ""])
    lines += _accuracy_markdown(report)
    if report["paired"]:
        lines += _paired_markdown(report)
    if report.get("conflict"):
        lines += format_conflict_markdown(report["conflict"], report["settings"]["confidence"])
    lines += format_steering_markdown(report.get("steering") or {})
    lines += _efficiency_markdown(report)
    lines += format_disagreements_markdown(report.get("disagreements") or [], report["settings"]["reference"])
    return "\n".join(lines)


def _header_markdown(report: Mapping[str, Any]) -> list[str]:
    run = report.get("run") or {}
    facts = [f"model `{run.get('model') or '?'}`"]
    if run.get("dtype"):
        facts.append(f"dtype {run['dtype']}")
    for key in ("split", "max_new_tokens"):
        if (run.get("settings") or {}).get(key) is not None:
            facts.append(f"{key} {run['settings'][key]}")
    if run.get("package_version"):
        facts.append(f"selfanchor-chains {run['package_version']}")
    return [f"# Evaluation report: {report['out_dir']}", "", ", ".join(facts), ""]


def _accuracy_markdown(report: Mapping[str, Any]) -> list[str]:
    methods = report["methods"]
    level = round(100 * report["settings"]["confidence"])
    body = []
    for row in report["rows"]:
        cells = []
        for m in methods:
            cell = row["methods"].get(m)
            if cell is None or cell["accuracy"] is None:
                cells.append("–")
            elif cell["ci_low"] is None and "benchmarks" in cell:
                cells.append(f"{_pct(cell['accuracy'])} (n={cell['n']}, {cell['benchmarks']} benchmarks)")
            elif cell["ci_low"] is None:
                cells.append(f"{_pct(cell['accuracy'])} (n={cell['n']}, {_tasks(cell.get('tasks', 0))})")
            else:
                cells.append(
                    f"{_pct(cell['accuracy'])} [{_pct(cell['ci_low'])}, {_pct(cell['ci_high'])}] (n={cell['n']})"
                )
        body.append([row["row"], *cells])
    return [f"## Accuracy (%, {level}% Wilson interval, n items)", "", *_table(["benchmark", *methods], body), ""]


def _paired_markdown(report: Mapping[str, Any]) -> list[str]:
    settings = report["settings"]
    reference = settings["reference"]
    level = round(100 * settings["confidence"])
    lines = [
        f"## {reference} − baseline, paired on the items both completed",
        "",
        f"Δ in percentage points; {level}% paired bootstrap interval ({settings['resamples']} resamples, seed "
        f"{settings['seed']}); b = only {reference} right, c = only the baseline right; exact McNemar p "
        f"(two-sided). The {MACRO_ROW} row averages per-task differences (resampled within tasks); its p pools "
        f"the tasks' pairs. The {MEAN_ROW} row gives each benchmark the same weight (BBH as its macro row) and "
        "is shown only for baselines paired on every benchmark; its p pools all pairs. time × = the reference's "
        "seconds over the baseline's on those items: side by side only where one `selfanchor eval` command ran "
        "both (it runs them on the same batches, one after the other), not for items resumed from runs made at "
        "other times.",
        "",
    ]
    body = [
        [
            p["row"],
            p["baseline"],
            str(p["n"]),
            f"{_pct(p['reference_accuracy'])} vs {_pct(p['baseline_accuracy'])}",
            f"{100 * p['diff']:+.1f}",
            f"[{100 * p['ci_low']:+.1f}, {100 * p['ci_high']:+.1f}]",
            str(p["b"]),
            str(p["c"]),
            _p(p["p_value"]),
            _num(p.get("time_ratio"), 2),
        ]
        for p in report["paired"]
    ]
    lines += [*_table(["benchmark", "baseline", "n", "accuracy", "Δ", "CI", "b", "c", "p", "time ×"], body), ""]
    small = [p for p in report["paired"] if p.get("smallest_task", _RELIABLE_TASK_SIZE) < _RELIABLE_TASK_SIZE]
    if small:
        lines += [
            f"Some tasks of the {MACRO_ROW} row have fewer than {_RELIABLE_TASK_SIZE} paired items (smallest: "
            f"{min(p['smallest_task'] for p in small)}); resampling within such tasks understates the spread, so "
            "read that row's interval as too narrow and rely on its McNemar p.",
            "",
        ]
    return lines


_EFFICIENCY_HEADER = [
    "method",
    "n",
    "problems/min",
    "mean tokens",
    "truncated",
    "code (```)",
    "no Final Answer line",
    "no answer",
    "retried",
    "finish reasons",
]


def _efficiency_markdown(report: Mapping[str, Any]) -> list[str]:
    body = []
    for m in report["methods"]:
        e = report["efficiency"][m]
        reasons = ", ".join(f"{k} {v}" for k, v in e["finish_reasons"].items())
        counts = [e["n"], e["truncated"], e["code"], e["format_breaks"], e["no_answer"], e["retried"]]
        n, truncated, code, breaks, no_answer, retried = map(str, counts)
        speed, tokens = _num(e["problems_per_minute"], 2), _num(e["mean_tokens"])
        body.append([m, n, speed, tokens, truncated, code, breaks, no_answer, retried, reasons])
    return ["## Speed and failure modes (all benchmarks)", "", *_table(_EFFICIENCY_HEADER, body), ""]


def _chart_rows(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Benchmarks, the BBH macro row and the mean over benchmarks (per-task bars would drown the chart)."""
    return [row for row in report["rows"] if row["kind"] != "task"]


def _grouped_bars(
    report: Mapping[str, Any],
    path: Path,
    value: str,
    ylabel: str,
    title: str,
    *,
    scale: float = 1.0,
    errors: bool = False,
    ylim: tuple[float, float] | None = None,
) -> Path:
    from matplotlib.figure import Figure

    rows = _chart_rows(report)
    methods = report["methods"]
    fig = Figure(figsize=(max(6.0, 1.1 * len(rows) * max(1, len(methods)) / 3 + 2), 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(methods))
    for k, method in enumerate(methods):
        xs, ys, low, high = [], [], [], []
        for i, row in enumerate(rows):
            cell = row["methods"].get(method)
            if cell is None or cell.get(value) is None:
                continue
            y = cell[value] * scale
            xs.append(i - 0.4 + width * (k + 0.5))
            ys.append(y)
            has_ci = errors and cell.get("ci_low") is not None
            # NaN draws no error bar (the BBH macro row has no interval); 0 would draw a flat cap.
            low.append(y - cell["ci_low"] * scale if has_ci else math.nan)
            high.append(cell["ci_high"] * scale - y if has_ci else math.nan)
        if xs:
            yerr = [low, high] if errors else None
            ax.bar(xs, ys, width, yerr=yerr, capsize=2 if errors else 0, label=method)
    ax.set_xticks(range(len(rows)), [row["row"] for row in rows], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if methods:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=120)
    return path


def plot_accuracy(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Grouped bar chart of accuracy per benchmark and method, with the Wilson intervals as error bars."""
    level = round(100 * report["settings"]["confidence"])
    return _grouped_bars(
        report,
        Path(path),
        "accuracy",
        "accuracy (%)",
        f"Accuracy ({level}% Wilson intervals)",
        scale=100.0,
        errors=True,
        ylim=(0.0, 100.0),
    )


def plot_tokens(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Grouped bar chart of mean completion tokens per problem, per benchmark and method."""
    return _grouped_bars(report, Path(path), "mean_tokens", "completion tokens per problem", "Mean completion tokens")


def write_report(
    out_dir: str | os.PathLike[str],
    report: Mapping[str, Any] | None = None,
    *,
    plots: bool = True,
    pages: int = 0,
    **options: Any,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and (with matplotlib) ``accuracy.png`` and ``tokens.png``.

    Args:
        out_dir: The evaluation folder.
        report: A report from :func:`build_report`; computed with ``options`` when None.
        plots: Draw the charts.
        pages: Per benchmark, write a page for up to this many items where the reference and a baseline
            disagree (``OUT/maps/``), linked from ``report.md``; 0 writes none.
        **options: Passed to :func:`build_report`.

    Returns:
        ``{"markdown", "json", "accuracy", "tokens"}`` → paths written.

    Raises:
        ImportError: ``plots`` is true and matplotlib is not installed.
    """
    root = Path(out_dir)
    data = dict(report if report is not None else build_report(root, **options))
    if pages:
        reference = data["settings"]["reference"]
        run = read_run_info(root)
        data["disagreements"] = write_disagreement_pages(root, load_results(root), reference, per_bench=pages, run=run)
    written = {"markdown": root / "report.md", "json": root / "report.json"}
    written["markdown"].write_text(format_markdown(data), encoding="utf-8")
    written["json"].write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if plots:
        written["accuracy"] = plot_accuracy(data, root / "accuracy.png")
        written["tokens"] = plot_tokens(data, root / "tokens.png")
    return written
