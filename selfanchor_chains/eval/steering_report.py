"""What the steering did, per benchmark and method, from the steps in the per-item logs.

For each method that logged steps: the distribution of the ω its steps were decoded with, the share of tokens
whose choice steering changed (steered argmax ≠ original argmax) and the mean KL(steered ‖ original) per token,
overall and by step kind. Logs written before the diagnostics existed have no ``changed``/``kl``; their steps
count towards ω only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["build_steering_summary", "format_steering_markdown"]

_KINDS = ("plan", "reasoning", "final")


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted, non-empty sequence."""
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _diagnostics(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    omegas = sorted(float(s["omega"]) for s in steps if s.get("omega") is not None)
    logged = [s for s in steps if s.get("changed") is not None and s.get("tokens")]
    tokens = sum(int(s["tokens"]) for s in logged)
    out: dict[str, Any] = {"steps": len(steps), "omega": None, "steered_steps": None, "changed": None, "kl": None}
    if omegas:
        out["omega"] = {
            "mean": sum(omegas) / len(omegas),
            **{name: _quantile(omegas, q) for name, q in (("min", 0), ("p25", 0.25), ("median", 0.5), ("p75", 0.75))},
            "max": omegas[-1],
        }
        out["steered_steps"] = sum(w != 1.0 for w in omegas) / len(omegas)
    if tokens:
        out["tokens"] = tokens
        out["changed"] = sum(int(s["changed"]) for s in logged) / tokens
        out["kl"] = sum(float(s.get("kl") or 0.0) * int(s["tokens"]) for s in logged) / tokens
    return out


def build_steering_summary(results: Mapping[str, Mapping[str, Iterable[Mapping[str, Any]]]]) -> dict[str, Any]:
    """``{bench: {method: {"all": diagnostics, "plan"|"reasoning"|"final": diagnostics}}}`` for every method whose
    records carry steps (see :func:`selfanchor_chains.eval.runner.make_record`).

    Args:
        results: ``{bench: {method: records}}`` as :func:`selfanchor_chains.eval.report.load_results` returns.
    """
    summary: dict[str, Any] = {}
    for bench, by_method in results.items():
        for method, records in by_method.items():
            steps = [s for r in records for s in (r.get("steps") or []) if isinstance(s, Mapping)]
            if not steps or all(s.get("omega") in (None, 1.0) and not s.get("changed") for s in steps):
                continue  # never steered: nothing to show
            row = {"all": _diagnostics(steps)}
            for kind in _KINDS:
                of_kind = [s for s in steps if s.get("kind") == kind]
                if of_kind:
                    row[kind] = _diagnostics(of_kind)
            summary.setdefault(bench, {})[method] = row
    return summary


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def format_steering_markdown(summary: Mapping[str, Any]) -> list[str]:
    """Markdown lines: one table row per benchmark, method and step kind."""
    if not summary:
        return []
    lines = [
        "## What the steering did",
        "",
        "ω over steps (mean; median [p25, p75]; range), the share of steps steered (ω ≠ 1), the share of tokens "
        "whose choice steering changed, and the mean KL(steered ‖ original) per token in nats.",
        "",
        "| benchmark | method | steps | ω mean | ω median [p25, p75] | ω range | steered steps | tokens changed | "
        "KL / token |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for bench, by_method in summary.items():
        for method, row in by_method.items():
            for kind in ("all", *_KINDS):
                cell = row.get(kind)
                if cell is None:
                    continue
                omega = cell["omega"]
                label = method if kind == "all" else f"{method} · {kind}"
                lines.append(
                    f"| {bench} | {label} | {cell['steps']} | {_num(omega and omega['mean'])} | "
                    + (
                        f"{omega['median']:.3f} [{omega['p25']:.3f}, {omega['p75']:.3f}] | "
                        f"{omega['min']:.3f}–{omega['max']:.3f} | "
                        if omega
                        else "— | — | "
                    )
                    + f"{_pct(cell['steered_steps'])} | {_pct(cell['changed'])} | {_num(cell['kl'], 4)} |"
                )
    lines.append("")
    return lines
