"""The steering summary of `selfanchor report`, on hand-made records (closed form)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfanchor_chains.eval.steering_report import build_steering_summary, format_steering_markdown


def step(kind: str, omega: float, tokens: int, changed: int | None = None, kl: float | None = None) -> dict:
    out = {"kind": kind, "omega": omega, "confidence": 0.9, "tokens": tokens}
    if changed is not None:
        out.update(changed=changed, kl=kl)
    return out


RECORDS = [
    {"id": "a", "steps": [step("plan", 1.25, 10, 1, 0.02), step("reasoning", 1.5, 30, 3, 0.04)]},
    {"id": "b", "steps": [step("plan", 1.0, 10, 0, 0.0), step("final", 1.1, 5, 1, 0.1)]},
    {"id": "c", "steps": [step("plan", 1.3, 8)]},  # logged before the diagnostics existed
]


def test_summary_closed_form() -> None:
    summary = build_steering_summary({"gsm8k": {"self-anchor": RECORDS, "cot": [{"id": "a", "steps": []}]}})
    assert list(summary["gsm8k"]) == ["self-anchor"]  # an unsteered method has nothing to show
    row = summary["gsm8k"]["self-anchor"]
    overall = row["all"]
    assert overall["steps"] == 5
    assert overall["omega"]["mean"] == pytest.approx((1.25 + 1.5 + 1.0 + 1.1 + 1.3) / 5)
    assert overall["omega"]["median"] == pytest.approx(1.25)
    assert (overall["omega"]["min"], overall["omega"]["max"]) == (1.0, 1.5)
    assert overall["steered_steps"] == pytest.approx(4 / 5)
    # Diagnostics count only steps that logged them: 55 tokens, 5 changed, KL weighted by tokens.
    assert overall["tokens"] == 55
    assert overall["changed"] == pytest.approx(5 / 55)
    assert overall["kl"] == pytest.approx((0.02 * 10 + 0.04 * 30 + 0.0 * 10 + 0.1 * 5) / 55)
    assert row["plan"]["steps"] == 3 and row["plan"]["changed"] == pytest.approx(1 / 20)
    assert row["final"]["omega"]["mean"] == pytest.approx(1.1)
    lines = format_steering_markdown(summary)
    assert lines[0] == "## What the steering did"
    assert any(line.startswith("| gsm8k | self-anchor · reasoning | 1 | 1.500") for line in lines)


def test_report_includes_the_steering_section(tmp_path: Path) -> None:
    from selfanchor_chains.eval.report import build_report, format_markdown

    bench = tmp_path / "gsm8k"
    bench.mkdir()
    for method, records in (("self-anchor", RECORDS), ("cot", [{"id": r["id"], "steps": []} for r in RECORDS])):
        lines = [
            json.dumps({**r, "bench": "gsm8k", "method": method, "correct": True, "tokens": 5, "seconds": 1.0})
            for r in records
        ]
        (bench / f"{method}.jsonl").write_text("\n".join(lines) + "\n")
    report = build_report(tmp_path, resamples=100)
    assert report["steering"]["gsm8k"]["self-anchor"]["all"]["steps"] == 5
    assert "## What the steering did" in format_markdown(report)
