"""selfanchor report: accuracy, Wilson intervals, paired bootstrap and McNemar on a hand-made results folder."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

from selfanchor_chains.cli.eval_commands import add_eval_commands
from selfanchor_chains.eval import (
    build_report,
    format_markdown,
    mcnemar_exact,
    paired_bootstrap,
    stratified_paired_bootstrap,
    wilson_interval,
    write_report,
)
from selfanchor_chains.eval.report import MACRO_ROW, MEAN_ROW


def _record(bench: str, i: int, correct: bool, *, task: str | None = None, **extra: Any) -> dict[str, Any]:
    record = {
        "id": f"{bench}/{task}/{i:03d}" if task else f"{bench}/test/{i:04d}",
        "bench": bench,
        "task": task,
        "prediction": "1" if correct else "2",
        "gold": "1",
        "correct": correct,
        "tokens": 100,
        "prompt_tokens": 50,
        "seconds": 2.0,
        "steps": [],
        "finish_reason": "final_answer",
        "retried": False,
        "text": "Plan 1: x\nFinal Answer: 1",
    }
    record.update(extra)
    return record


def _write(root: Path, bench: str, method: str, records: list[dict[str, Any]], tail: str = "") -> None:
    (root / bench).mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (root / bench / f"{method}.jsonl").write_text(text)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """gsm8k: 8/10 vs 5/10; aqua: b=10, c=2 over 30 pairs; bbh: two tasks of unequal size; cot capped on gsm8k."""
    root = tmp_path / "out"
    _write(
        root,
        "gsm8k",
        "self-anchor",
        [_record("gsm8k", i, i < 8, tokens=120) for i in range(10)],
        tail='{"id": "gsm8k/test/0010", "corr',  # interrupted mid-write
    )
    _write(
        root,
        "gsm8k",
        "cot",
        [_record("gsm8k", i, i < 5, tokens=80, seconds=1.0) for i in range(10)],
    )
    # aqua: both right 12, self-anchor only 10, cot only 2, both wrong 6.
    sa = [True] * 12 + [True] * 10 + [False] * 2 + [False] * 6
    cot = [True] * 12 + [False] * 10 + [True] * 2 + [False] * 6
    _write(root, "aqua", "self-anchor", [_record("aqua", i, c) for i, c in enumerate(sa)])
    special = {
        0: {"finish_reason": "length", "text": "Plan 1: long"},  # truncated (not a format break)
        1: {"text": "```python\nprint(1)\n```\nFinal Answer: 1"},  # code
        2: {"text": "The answer is 1.", "prediction": None},  # format break, no answer
        3: {"retried": True},
    }
    _write(root, "aqua", "cot", [_record("aqua", i, c, **special.get(i, {})) for i, c in enumerate(cot)])
    # bbh: task a 3/4 vs 1/4, task b 0/2 vs 2/2: macro 37.5 vs 62.5, pooled 3/6 vs 3/6.
    _write(
        root,
        "bbh",
        "self-anchor",
        [_record("bbh", i, c, task="a") for i, c in enumerate([True, True, True, False])]
        + [_record("bbh", i, False, task="b") for i in range(2)],
    )
    _write(
        root,
        "bbh",
        "cot",
        [_record("bbh", i, c, task="a") for i, c in enumerate([True, False, False, False])]
        + [_record("bbh", i, True, task="b") for i in range(2)],
    )
    (root / "run.json").write_text(
        json.dumps({"model": "m@bfloat16", "dtype": "bfloat16", "settings": {"split": "dev"}})
    )
    return root


def _row(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in report["rows"] if r["row"] == name)


def _pair(report: dict[str, Any], row: str, baseline: str = "cot") -> dict[str, Any]:
    return next(p for p in report["paired"] if p["row"] == row and p["baseline"] == baseline)


def test_wilson_interval_matches_closed_form() -> None:
    low, high = wilson_interval(8, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.4901625, abs=1e-6) and high == pytest.approx(0.9433178, abs=1e-6)
    low, high = wilson_interval(5, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.2365931, abs=1e-6) and high == pytest.approx(0.7634069, abs=1e-6)
    z = 1.959963984540054
    n = 37
    for k in (0, 1, 20, 37):
        p = k / n
        center = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert wilson_interval(k, n) == pytest.approx((max(0, center - half), min(1, center + half)))
    assert wilson_interval(0, 0) is None


def test_mcnemar_exact_p_values() -> None:
    assert mcnemar_exact(10, 2) == pytest.approx(0.0386, abs=5e-5)
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert 0 < mcnemar_exact(0, 3000) < 1e-300 or mcnemar_exact(0, 3000) == 0.0  # no overflow on large counts


def test_bootstrap_is_seeded_and_covers_the_difference() -> None:
    first = [True] * 22 + [False] * 8
    second = [True] * 12 + [False] * 10 + [True] * 2 + [False] * 6
    diff, low, high = paired_bootstrap(first, second, seed=0)
    assert diff == pytest.approx(8 / 30) and low < diff < high
    assert paired_bootstrap(first, second, seed=0) == (diff, low, high)
    # With 10k resamples the percentiles land on the same lattice points for most seeds; with few they move.
    assert len({paired_bootstrap(first, second, seed=s, resamples=20) for s in range(5)}) > 1
    # Resampling pairs: with no discordant pair there is no uncertainty about the difference.
    assert paired_bootstrap([True, False], [True, False]) == (0.0, 0.0, 0.0)
    macro = stratified_paired_bootstrap([([True, True, True, False], [True] + [False] * 3), ([False] * 2, [True] * 2)])
    assert macro[0] == pytest.approx((0.5 - 1.0) / 2) and macro[1] <= macro[0] <= macro[2]


def test_report_accuracy_rows(results: Path) -> None:
    report = build_report(results)
    assert report["methods"] == ["self-anchor", "cot"]
    assert [r["row"] for r in report["rows"]] == ["gsm8k", "aqua", "bbh:a", "bbh:b", MACRO_ROW, MEAN_ROW]
    gsm = _row(report, "gsm8k")["methods"]
    assert gsm["self-anchor"]["n"] == 10 and gsm["self-anchor"]["accuracy"] == 0.8  # the cut line is ignored
    assert (gsm["self-anchor"]["ci_low"], gsm["self-anchor"]["ci_high"]) == pytest.approx((0.4901625, 0.9433178))
    assert gsm["cot"]["accuracy"] == 0.5 and gsm["cot"]["mean_tokens"] == 80
    assert gsm["cot"]["problems_per_minute"] == pytest.approx(60.0)
    macro = _row(report, MACRO_ROW)["methods"]
    assert macro["self-anchor"]["accuracy"] == pytest.approx(0.375)  # (3/4 + 0/2) / 2, not 3/6
    assert macro["cot"]["accuracy"] == pytest.approx(0.625)
    assert macro["self-anchor"]["n"] == 6 and macro["self-anchor"]["tasks"] == 2
    assert _row(report, "bbh:a")["methods"]["self-anchor"]["accuracy"] == 0.75


def test_report_paired_differences(results: Path) -> None:
    report = build_report(results, seed=0)
    aqua = _pair(report, "aqua")
    assert (aqua["n"], aqua["b"], aqua["c"]) == (30, 10, 2)
    assert aqua["p_value"] == pytest.approx(0.0386, abs=5e-5)
    assert aqua["diff"] == pytest.approx(22 / 30 - 14 / 30)
    assert aqua["ci_low"] < aqua["diff"] < aqua["ci_high"]
    gsm = _pair(report, "gsm8k")
    assert (gsm["n"], gsm["b"], gsm["c"], gsm["diff"]) == (10, 3, 0, pytest.approx(0.3))
    macro = _pair(report, MACRO_ROW)
    assert macro["diff"] == pytest.approx(0.375 - 0.625)
    assert (macro["b"], macro["c"]) == (2, 2)  # pooled over tasks
    assert macro["ci_low"] <= macro["diff"] <= macro["ci_high"]
    again = build_report(results, seed=0)
    assert again["paired"] == report["paired"]


def test_mean_over_benchmarks_weighs_each_benchmark_once(results: Path) -> None:
    report = build_report(results, seed=0)
    # gsm8k 8/10 vs 5/10, aqua 22/30 vs 14/30, bbh macro 0.375 vs 0.625 (BBH counts once, not per task or item).
    cells = _row(report, MEAN_ROW)["methods"]
    assert cells["self-anchor"]["accuracy"] == pytest.approx((0.8 + 22 / 30 + 0.375) / 3)
    assert cells["cot"]["accuracy"] == pytest.approx((0.5 + 14 / 30 + 0.625) / 3)
    assert (cells["cot"]["n"], cells["cot"]["benchmarks"]) == (46, 3)
    mean = _pair(report, MEAN_ROW)
    assert mean["diff"] == pytest.approx((0.3 + 8 / 30 - 0.25) / 3)
    assert mean["reference_accuracy"] - mean["baseline_accuracy"] == pytest.approx(mean["diff"])
    assert (mean["n"], mean["b"], mean["c"], mean["benchmarks"]) == (46, 15, 4, 3)  # McNemar pools every pair
    assert mean["p_value"] == pytest.approx(mcnemar_exact(15, 4))
    assert mean["ci_low"] < mean["diff"] < mean["ci_high"]
    # All items side by side: self-anchor 46 × 2 s; cot 10 × 1 s + 36 × 2 s.
    assert mean["time_ratio"] == pytest.approx(92 / 82)


def test_mean_over_benchmarks_only_for_methods_on_every_benchmark(results: Path) -> None:
    _write(results, "gsm8k", "ps", [_record("gsm8k", i, True) for i in range(10)])  # ps ran on gsm8k only
    report = build_report(results)
    assert "ps" in _row(report, "gsm8k")["methods"] and "ps" not in _row(report, MEAN_ROW)["methods"]
    assert [p["baseline"] for p in report["paired"] if p["row"] == MEAN_ROW] == ["cot"]
    single = results.parent / "single"
    _write(single, "gsm8k", "self-anchor", [_record("gsm8k", i, True) for i in range(4)])
    _write(single, "gsm8k", "cot", [_record("gsm8k", i, False) for i in range(4)])
    assert MEAN_ROW not in [r["row"] for r in build_report(single)["rows"]]  # one benchmark: no mean row


def test_weighted_stratified_bootstrap() -> None:
    strata = [([True] * 8 + [False] * 2, [False] * 10), ([False] * 4, [True] * 4)]
    equal = stratified_paired_bootstrap(strata, seed=3, resamples=2000)
    assert stratified_paired_bootstrap(strata, seed=3, resamples=2000, weights=[2.0, 2.0]) == equal
    diff, low, high = stratified_paired_bootstrap(strata, seed=3, resamples=2000, weights=[3.0, 1.0])
    assert diff == pytest.approx((3 * 0.8 + 1 * -1.0) / 4) and low <= diff <= high
    assert stratified_paired_bootstrap(strata, seed=3, resamples=2000, weights=[1.0, 0.0])[0] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="2 strata"):
        stratified_paired_bootstrap(strata, weights=[1.0])
    with pytest.raises(ValueError, match=">= 0"):
        stratified_paired_bootstrap(strata, weights=[1.0, float("nan")])
    with pytest.raises(ValueError, match="no paired items"):
        stratified_paired_bootstrap(strata, weights=[0.0, 0.0])


def test_paired_uses_only_items_both_completed(tmp_path: Path) -> None:
    root = tmp_path / "out"
    # The items only self-anchor completed are slow; the time ratio must not see them.
    _write(root, "gsm8k", "self-anchor", [_record("gsm8k", i, True, seconds=3.0 if i < 4 else 99.0) for i in range(10)])
    _write(root, "gsm8k", "spa", [_record("gsm8k", i, False) for i in range(4)])
    report = build_report(root)
    pair = _pair(report, "gsm8k", "spa")
    assert (pair["n"], pair["b"], pair["c"], pair["diff"]) == (4, 4, 0, 1.0)
    assert pair["time_ratio"] == pytest.approx(1.5)
    assert _row(report, "gsm8k")["methods"]["self-anchor"]["n"] == 10


def test_failure_modes_and_speed(results: Path) -> None:
    report = build_report(results)
    cot = report["efficiency"]["cot"]
    assert cot["n"] == 10 + 30 + 6
    assert cot["truncated"] == 1 and cot["code"] == 1 and cot["format_breaks"] == 1
    assert cot["no_answer"] == 1 and cot["retried"] == 1
    assert cot["finish_reasons"] == {"final_answer": 45, "length": 1}
    assert cot["problems_per_minute"] == pytest.approx(60 * 46 / (10 * 1.0 + 36 * 2.0))
    assert report["efficiency"]["self-anchor"]["problems_per_minute"] == pytest.approx(30.0)
    # Side by side on the same items: gsm8k self-anchor 2 s vs cot 1 s per item; elsewhere 2 s each.
    assert _pair(report, "gsm8k")["time_ratio"] == pytest.approx(2.0)
    assert _pair(report, "aqua")["time_ratio"] == pytest.approx(1.0)
    assert _pair(report, MACRO_ROW)["time_ratio"] == pytest.approx(1.0)


def test_write_report_files(results: Path) -> None:
    written = write_report(results)
    for key in ("markdown", "json", "accuracy", "tokens"):
        assert written[key].is_file() and written[key].stat().st_size > 0
    assert written["accuracy"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(written["json"].read_text())
    assert data["run"]["model"] == "m@bfloat16" and len(data["paired"]) == 6
    markdown = written["markdown"].read_text()
    assert "| gsm8k | 80.0 [49.0, 94.3] (n=10) | 50.0 [23.7, 76.3] (n=10) |" in markdown
    assert "| aqua | cot | 30 | 73.3 vs 46.7 | +26.7 |" in markdown and "| 10 | 2 | 0.0386 | 1.00 |" in markdown
    assert MACRO_ROW in markdown and markdown == format_markdown(build_report(results))
    # bbh task b has two paired items: the macro interval is flagged.
    macro = next(p for p in data["paired"] if p["row"] == MACRO_ROW)
    assert macro["smallest_task"] == 2 and "fewer than 5 paired items (smallest: 2)" in markdown
    assert f"| {MEAN_ROW} | 63.6 (n=46, 3 benchmarks) | 53.1 (n=46, 3 benchmarks) |" in markdown


def _report_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="selfanchor")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["report", *argv])


def test_report_command(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _report_args(str(results), "--resamples", "2000", "--no-plots")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "## Accuracy" in out and "bbh (macro)" in out
    assert (results / "report.md").is_file() and not (results / "accuracy.png").exists()
    assert json.loads((results / "report.json").read_text())["settings"]["resamples"] == 2000


def test_report_command_without_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _report_args(str(tmp_path))
    assert args.func(args) == 2
    assert "no results" in capsys.readouterr().err
    args = _report_args(str(tmp_path / "missing"))
    assert args.func(args) == 2


def test_report_links_a_page_per_sampled_disagreement(tmp_path: Path) -> None:
    from selfanchor_chains.eval.disagreements import pick_disagreements

    root = tmp_path / "out"
    steps = [{"kind": "plan", "omega": 1.4, "confidence": 0.8, "tokens": 7, "changed": 2, "kl": 0.03}]
    _write(root, "gsm8k", "self-anchor", [_record("gsm8k", i, i % 2 == 0, steps=steps) for i in range(10)])
    _write(root, "gsm8k", "cot", [_record("gsm8k", i, i < 5) for i in range(10)])
    # disagreements: ids 1, 3 (cot right, self-anchor wrong) and 6, 8 (self-anchor right, cot wrong)
    written = write_report(root, plots=False, pages=3)
    markdown = written["markdown"].read_text()
    assert "disagree" in markdown
    pages = sorted((root / "maps" / "gsm8k").glob("*.html"))
    assert len(pages) == 3
    linked = [line for line in markdown.splitlines() if line.startswith("- [gsm8k ")]
    assert len(linked) == 3 and all(f"(maps/gsm8k/{p.name})" in markdown for p in pages)
    page = pages[0].read_text()
    assert "<table>" in page and "1.40" in page and "self-anchor: " in page and "cot: " in page
    assert "<script" not in page and "http" not in page  # self-contained
    ids = {item_id for _, item_id, _ in pick_disagreements(build_report_results(root), "self-anchor", 10)}
    assert ids == {f"gsm8k/test/{i:04d}" for i in (1, 3, 6, 8)}
    assert write_report(root, plots=False, pages=0) and not (root / "report.md").read_text().count("- [gsm8k ")


def build_report_results(root: Path) -> Any:
    from selfanchor_chains.eval.report import load_results

    return load_results(root)
