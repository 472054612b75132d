"""Issue #35's study, resumable end to end: tune on MBPP validation, pick the anchored method by the rule written in
results/code/README.md, run the final comparison on HumanEval + MBPP test for both models, and summarise.

    nohup python scripts/code_study.py >> evals/code/study.log 2>&1 &     # run or resume everything
    python scripts/code_study.py --summary-only                             # tables from what is there
    python scripts/code_study.py --snapshot                                 # logs so far -> results/code/logs

The evals/ folder is not committed: a fresh checkout first restores the per-item logs committed under
results/code/logs/ (gzipped) into evals/code/, so the study resumes from them.

Each stage is a `selfanchor eval` command that skips the items already in its folder, so re-running the same
command after an interruption resumes where it stopped. One model job at a time: nothing else should decode on
this CPU while it runs (its per-item seconds feed the cost ratio).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from study_logs import read_log, restore_logs, run_eval, snapshot_logs

from selfanchor_chains.eval.stats import mcnemar_exact, wilson_interval

EVALS = Path("evals/code")
RESULTS = Path("results/code")
TUNE_MODEL = "qwen2.5-coder-0.5b"
FINAL_MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
TUNE_COMMANDS = (  # in the order the rule names them (code-spa dropped by the amendment of session 19, README)
    ("code-plain", "code-anchored@1.25", "code-anchored@1.5", "code-anchored@2"),
)
FINAL_BENCHES = ("humaneval", "mbpp")
FINAL_SIZES = {"humaneval": 164, "mbpp": 500}


def _eval(model: str, benches: str, split: str, methods: list[str], out: Path) -> None:
    run_eval([benches, "--split", split, "--model", model, "--batch", "8", "--continuous", "--no-progress",
              "--methods", ",".join(methods), "--out", str(out)])  # fmt: skip


def _folders() -> dict[str, Path]:
    """Where each committed log folder lives in evals/code."""
    folders = {"tuning": EVALS / f"{TUNE_MODEL}-validation" / "mbpp"}
    for model in FINAL_MODELS:
        for bench in FINAL_BENCHES:
            folders[f"{model}/{bench}"] = EVALS / f"{model}-test" / bench
    return folders


def restore() -> None:
    """Committed logs back into evals/code where a log is missing or shorter (a fresh checkout resumes)."""
    restore_logs(_folders(), RESULTS / "logs")


def snapshot() -> None:
    """The per-item logs so far, gzipped under results/code/logs/ (to commit as the study goes)."""
    snapshot_logs(_folders(), RESULTS / "logs")


def choose(tune_dir: Path) -> dict[str, Any]:
    """The rule: the anchored candidate with the most passes on MBPP validation; ties to the smaller ω, then to
    code-anchored."""
    candidates = [m for group in TUNE_COMMANDS for m in group if m != "code-plain"]
    scores = {}
    for method in ["code-plain", *candidates]:
        records = read_log(tune_dir / "mbpp" / f"{method}.jsonl")
        scores[method] = {"n": len(records), "passed": sum(bool(r["correct"]) for r in records.values())}
    incomplete = [m for m, s in scores.items() if s["n"] != 90]
    if incomplete:
        raise SystemExit(f"tuning incomplete for {incomplete}: {scores}")

    def key(method: str) -> tuple[int, float, int]:
        base, _, omega = method.partition("@")
        return (-scores[method]["passed"], float(omega), 0 if base == "code-anchored" else 1)

    winner = min(candidates, key=key)
    return {"winner": winner, "scores": scores, "rule": "results/code/README.md"}


def _summary_rows(out: Path, reference: str) -> list[dict[str, Any]]:
    rows = []
    pooled: dict[str, Any] = {"a": 0, "p": 0, "b": 0, "c": 0, "n": 0, "sec_a": 0.0, "sec_p": 0.0}
    for bench in FINAL_BENCHES:
        anchored, plain = read_log(out / bench / f"{reference}.jsonl"), read_log(out / bench / "code-plain.jsonl")
        ids = sorted(set(anchored) & set(plain))
        if not ids:
            continue
        a = sum(bool(anchored[i]["correct"]) for i in ids)
        p = sum(bool(plain[i]["correct"]) for i in ids)
        b = sum(bool(anchored[i]["correct"]) and not plain[i]["correct"] for i in ids)
        c = sum(bool(plain[i]["correct"]) and not anchored[i]["correct"] for i in ids)
        sec_a = sum(float(anchored[i]["seconds"]) for i in ids)
        sec_p = sum(float(plain[i]["seconds"]) for i in ids)
        rows.append(_row(bench, len(ids), a, p, b, c, sec_a, sec_p))
        counts = {"a": a, "p": p, "b": b, "c": c, "n": len(ids), "sec_a": sec_a, "sec_p": sec_p}
        for name, value in counts.items():
            pooled[name] += value
    if len(rows) > 1:
        rows.append(_row("pooled", pooled["n"], *(pooled[k] for k in ("a", "p", "b", "c", "sec_a", "sec_p"))))
    return rows


def _row(bench: str, n: int, a: int, p: int, b: int, c: int, sec_a: float, sec_p: float) -> dict[str, Any]:
    return {
        "bench": bench,
        "n": n,
        "anchored": 100 * a / n,
        "anchored_ci": [100 * x for x in wilson_interval(a, n) or (0.0, 0.0)],
        "plain": 100 * p / n,
        "plain_ci": [100 * x for x in wilson_interval(p, n) or (0.0, 0.0)],
        "delta": 100 * (a - p) / n,
        "b": b,
        "c": c,
        "p_value": mcnemar_exact(b, c),
        "time_ratio": sec_a / sec_p if sec_p else None,
    }


def summarise(winner: str) -> None:
    """results/code/summary.{json,md} and the per-item logs (gzipped JSONL) of the final runs."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"reference": winner, "models": {}, "complete": {}}
    lines = [f"# Final run: `{winner}` vs `code-plain` (Pass@1 %, Wilson 95%; exact McNemar)", ""]
    for model in FINAL_MODELS:
        out = EVALS / f"{model}-test"
        rows = _summary_rows(out, winner)
        if not rows:
            continue
        summary["models"][model] = rows
        # Complete once both methods have every problem of both benchmarks; until then the rows are interim.
        done = sum(r["n"] for r in rows if r["bench"] != "pooled")
        summary["complete"][model] = done == sum(FINAL_SIZES.values())
        if not summary["complete"][model]:
            lines += [f"*Interim: {done} of {sum(FINAL_SIZES.values())} problems decoded by both methods.*", ""]
        header = "| bench | n | anchored | plain | Δ | b / c | p | time × |"
        lines += [f"## {model}", "", header, "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ratio = f"{r['time_ratio']:.2f}" if r["time_ratio"] else "—"
            anchored = f"{r['anchored']:.1f} [{r['anchored_ci'][0]:.1f}, {r['anchored_ci'][1]:.1f}]"
            plain = f"{r['plain']:.1f} [{r['plain_ci'][0]:.1f}, {r['plain_ci'][1]:.1f}]"
            lines.append(
                f"| {r['bench']} | {r['n']} | {anchored} | {plain} | {r['delta']:+.1f}"
                f" | {r['b']} / {r['c']} | {r['p_value']:.3f} | {ratio} |"
            )
        lines.append("")
    snapshot()
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--summary-only", action="store_true", help="no decoding: tables from the folders as they are")
    parser.add_argument("--snapshot", action="store_true", help="only copy the logs so far into results/code/logs")
    args = parser.parse_args()
    if args.snapshot:
        snapshot()
        return 0
    restore()
    tune = EVALS / f"{TUNE_MODEL}-validation"
    if not args.summary_only:
        for methods in TUNE_COMMANDS:
            _eval(TUNE_MODEL, "mbpp", "validation", list(methods), tune)
    choice = choose(tune)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "choice.json").write_text(json.dumps(choice, indent=2) + "\n")
    print("choice:", json.dumps(choice), flush=True)
    if not args.summary_only:
        for model in FINAL_MODELS:
            _eval(model, ",".join(FINAL_BENCHES), "test", ["code-plain", choice["winner"]], EVALS / f"{model}-test")
            summarise(choice["winner"])
    summarise(choice["winner"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
