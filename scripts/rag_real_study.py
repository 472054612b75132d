"""Issue #34's study on real questions, resumable end to end: choose the anchored method on NQ-Swap's train split by
the rule in results/rag-real/README.md, run it and every baseline on the test split for both models (short answers,
then the sentence-answer twins of rule 4), and summarise.

    nohup python scripts/rag_real_study.py >> evals/rag-real/study.log 2>&1 &     # run or resume everything
    python scripts/rag_real_study.py --summary-only                                 # tables from what is there
    python scripts/rag_real_study.py --snapshot                                     # logs so far -> results/rag-real

The data is built by scripts/build_nqswap_set.py into ../shared/data/nqswap (--data-dir). Each stage is a
`selfanchor eval conflictqa` command that skips the items already in its folder; a fresh checkout first restores the
per-item logs committed under results/rag-real/logs/ (gzipped JSONL: ids, predictions, grades, the ranker's first
passage; no passage text). One model job on the CPU at a time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from study_logs import read_log, restore_logs, run_eval, snapshot_logs

from selfanchor_chains.eval.stats import mcnemar_exact, wilson_interval

EVALS = Path("evals/rag-real")
RESULTS = Path("results/rag-real")
TUNE_MODEL = "qwen2.5-coder-0.5b"
FINAL_MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
CANDIDATES = (  # in the rule's tie order: top-1, then all passages, then adaptive; smaller ω first
    "rag-anchored-top1@1.5",
    "rag-anchored-top1@2",
    "rag-anchored@1.5",
    "rag-anchored@2",
    "rag-adaptive",
    "rag-adaptive@2",
)
# Rule 2 (written in session 20 before any test result was read): the anchored twins of the deciding baselines.
CANDIDATES_2 = (
    "rag-anchored-top1-only@1.5",
    "rag-anchored-top1-only@2",
    "rag-anchored-top1-last@1.5",
    "rag-anchored-top1-last@2",
)
BASELINES = ("rag-plain", "rag-instructed", "rag-top1-only", "rag-top1-last")
# Rule 4 (session 26, before any sentence-answer result was read): the sentence twins of plain RAG and of the best
# baseline of both models' short answers only (CPU time); the other two baselines' twins are not run.
SENTENCE_BASELINES = ("rag-plain", "rag-top1-only")
SENTENCE = "-sentence"
# Dropped from the keys of the committed logs: the prompt repeats the passages (NQ text stays out of the repository).
_PRIVATE = ("prompt", "question", "passages")


def _eval(model: str, split: str, methods: list[str], out: Path, data_dir: str) -> None:
    run_eval(["conflictqa", "--split", split, "--data-dir", data_dir, "--model", model, "--batch", "8",
              "--continuous", "--no-progress", "--methods", ",".join(methods), "--out", str(out)])  # fmt: skip


def _folders() -> dict[str, Path]:
    folders = {"tuning": EVALS / f"{TUNE_MODEL}-train" / "conflictqa"}
    for model in FINAL_MODELS:
        folders[model] = EVALS / f"{model}-test" / "conflictqa"
    return folders


def restore() -> None:
    """Committed logs back into evals/ where a log is missing or shorter (a fresh checkout resumes)."""
    restore_logs(_folders(), RESULTS / "logs")


def snapshot() -> None:
    """The per-item logs so far, gzipped under results/rag-real/logs/, without the prompt text."""
    snapshot_logs(_folders(), RESULTS / "logs", drop=_PRIVATE)


def choose(tune_dir: Path, candidates: tuple[str, ...] = CANDIDATES) -> dict[str, Any]:
    """The rule: the candidate with the most items answered with the passage's answer (fair grader, conflict and
    control items together) on the train split; ties to the earlier candidate of ``candidates``."""
    scores = {}
    for method in ("rag-plain", *candidates):
        records = read_log(tune_dir / f"{method}.jsonl")
        scores[method] = {"n": len(records), "passage_answer": sum(bool(r["context_fair"]) for r in records.values())}
    incomplete = [m for m, s in scores.items() if s["n"] != 200]
    if incomplete:
        raise SystemExit(f"tuning incomplete for {incomplete}: {scores}")
    winner = min(candidates, key=lambda m: (-scores[m]["passage_answer"], candidates.index(m)))
    return {"winner": winner, "scores": scores, "rule": "results/rag-real/README.md"}


def sentence_twin(method: str) -> str:
    """``rag-anchored-top1@2`` -> ``rag-anchored-top1-sentence@2``."""
    base, _, omega = method.partition("@")
    return f"{base}{SENTENCE}" + (f"@{omega}" if omega else "")


def _rate(hits: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(hits, n) or (0.0, 0.0)
    return {"hits": hits, "n": n, "rate": 100 * hits / n if n else None, "ci": [100 * low, 100 * high]}


def _scores(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    conflict = [r for r in records.values() if r["kind"] == "conflict"]
    control = [r for r in records.values() if r["kind"] == "control"]
    ranked = [r for r in records.values() if "ranked_first_is_evidence" in r]
    out = {
        f"{name} ({grader})": _rate(sum(bool(r[f"{field}_{suffix}"]) for r in rows), len(rows))
        for grader, suffix in (("exact", "match"), ("fair", "fair"))
        for name, rows, field in (
            ("faithful", conflict, "context"),
            ("memory", conflict, "memory"),
            ("control accuracy", control, "context"),
        )
    }
    if ranked:
        out["ranker accuracy@1"] = _rate(sum(bool(r["ranked_first_is_evidence"]) for r in ranked), len(ranked))
    return out


def _paired(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], kind: str, field: str) -> dict[str, Any]:
    ids = sorted(i for i in set(a) & set(b) if a[i]["kind"] == kind)
    wins = sum(bool(a[i][field]) and not b[i][field] for i in ids)
    losses = sum(bool(b[i][field]) and not a[i][field] for i in ids)
    return {
        "n": len(ids),
        "delta": 100 * (wins - losses) / len(ids) if ids else None,
        "b": wins,
        "c": losses,
        "p_value": mcnemar_exact(wins, losses),
    }


def model_summary(
    model: str, winner: str, style: str, others: tuple[str, ...] = (), alpha: float = 0.05
) -> dict[str, Any] | None:
    """Scores of every method of one model and answer style, and the target check of ``winner`` against the best
    baseline at level ``alpha`` (``others``: further methods whose scores the table shows)."""
    folder = EVALS / f"{model}-test" / "conflictqa"
    suffix = SENTENCE if style == "sentence" else ""
    methods = [sentence_twin(m) if suffix else m for m in (winner, *others)]
    compared = SENTENCE_BASELINES if suffix else BASELINES
    methods += [m + suffix for m in compared] + (["closed-book"] if not suffix else [])
    logs = {m: read_log(folder / f"{m}.jsonl") for m in methods}
    if not logs[methods[0]] or not logs[f"rag-plain{suffix}"]:
        return None
    scores = {m: _scores(r) for m, r in logs.items() if r}
    reference = methods[0]
    baselines = [m + suffix for m in compared if logs[m + suffix]]
    best = max(baselines, key=lambda m: scores[m]["faithful (fair)"]["rate"] or 0.0)
    paired = {
        m: {
            grader: _paired(logs[reference], logs[m], "conflict", f"context_{field}")
            for grader, field in (("fair", "fair"), ("exact", "match"))
        }
        for m in baselines
    }
    control = {m: _paired(logs[reference], logs[m], "control", "context_fair") for m in baselines}
    gain = paired[best]["fair"]
    plain = f"rag-plain{suffix}"
    control_drop = (scores[plain]["control accuracy (fair)"]["rate"] or 0) - (
        scores[reference]["control accuracy (fair)"]["rate"] or 0
    )
    return {
        "reference": reference,
        "scores": scores,
        "paired_conflict": paired,
        "paired_control": control,
        "best_baseline": best,
        "alpha": alpha,
        "target_met": bool(
            gain["delta"] is not None and gain["delta"] >= 3 and gain["p_value"] < alpha and control_drop <= 2
        ),
    }


# Rule 3 (written in session 23 before the 1.5B run was complete): the side-by-side cost over plain RAG at batch 8,
# measured before the rule (cost-qwen2.5-coder-0.5b-session22.json), and the cost target.
COST_OVER_PLAIN = {"rag-anchored-top1@2": 1.477, "rag-anchored-top1-only@2": 0.316}
COST_TARGET = 1.3
WORSE_ALPHA = 0.05


def worse_than_plain(model: str, method: str, style: str = "short") -> list[str] | None:
    """Rule 3, item 1: where ``method`` is worse than plain RAG on ``model`` (a lower rate, exact McNemar p < 0.05,
    conflict passage answers or control accuracy, fair grader); None while either log lacks a test item."""
    folder = EVALS / f"{model}-test" / "conflictqa"
    suffix = SENTENCE if style == "sentence" else ""
    mine = read_log(folder / f"{sentence_twin(method) if suffix else method}.jsonl")
    plain = read_log(folder / f"rag-plain{suffix}.jsonl")
    if len(mine) < 400 or len(plain) < 400:  # the test split: 300 conflict + 100 control items
        return None
    worse = []
    for kind in ("conflict", "control"):
        pair = _paired(mine, plain, kind, "context_fair")
        if pair["c"] > pair["b"] and pair["p_value"] < WORSE_ALPHA:
            worse.append(
                f"{model} {style} {kind}: {pair['delta']:+.1f} (b/c {pair['b']}/{pair['c']}, p = {pair['p_value']:.3g})"
            )
    return worse


def needs_stage_2(default: str, models: tuple[str, ...] | list[str] = FINAL_MODELS) -> bool:
    """Rule 4, item 2: stage 1's sentence answers took the default out (worse than plain RAG on some model)."""
    return any(worse_than_plain(model, default, "sentence") for model in models)


def shipped_default(winners: tuple[str, ...], models: tuple[str, ...] = FINAL_MODELS) -> dict[str, Any]:
    """Rule 3: the anchored winners worse than plain RAG nowhere are eligible; of several, the one within the cost
    target; none: plain RAG. ``decided`` is false until every model's short-answer run is complete; a complete
    sentence-answer run can only take a winner out."""
    short = {w: [worse_than_plain(m, w) for m in models] for w in winners}
    sentence = {w: [worse_than_plain(m, w, "sentence") for m in models] for w in winners}
    decided = all(found is not None for checks in short.values() for found in checks)
    worse = {w: [line for found in (*short[w], *sentence[w]) if found for line in found] for w in winners}
    eligible = [w for w in winners if not worse[w]]
    within = [w for w in eligible if COST_OVER_PLAIN.get(w, float("inf")) <= COST_TARGET]
    choice = (within or eligible or ["rag-plain"])[0]
    return {
        "decided": decided,
        "default": choice if decided else None,
        "eligible": eligible,
        "worse": worse,
        "cost_over_plain": {w: COST_OVER_PLAIN.get(w) for w in winners},
        "rule": "results/rag-real/README.md, rule 3",
    }


def _markdown(summary: dict[str, Any]) -> list[str]:
    winners = " and ".join(f"`{w}`" for w in (summary["winner"], summary.get("winner_2")) if w)
    lines = [f"# NQ-Swap with retrieved distractors, test split: {winners} vs the baselines", ""]
    for key, block in summary["runs"].items():
        lines += [
            f"## {key}",
            "",
            "| method | faithful fair | faithful exact | memory fair | control fair | ranker@1 |",
            "|---|---|---|---|---|---|",
        ]
        for method, s in block["scores"].items():
            cells = [
                s.get(name)
                for name in (
                    "faithful (fair)",
                    "faithful (exact)",
                    "memory (fair)",
                    "control accuracy (fair)",
                    "ranker accuracy@1",
                )
            ]
            shown = [
                f"{c['rate']:.1f} [{c['ci'][0]:.1f}, {c['ci'][1]:.1f}] (n={c['n']})" if c and c["n"] else "—"
                for c in cells
            ]
            lines.append(f"| {method} | " + " | ".join(shown) + " |")
        lines += ["", f"Paired on conflict items (fair grader), `{block['reference']}` − baseline:", ""]
        for method, p in block["paired_conflict"].items():
            fair, exact = p["fair"], p["exact"]
            lines.append(
                f"- vs `{method}`: {fair['delta']:+.1f} (b/c {fair['b']}/{fair['c']}, p = {fair['p_value']:.3g});"
                f" exact {exact['delta']:+.1f} (p = {exact['p_value']:.3g})"
            )
        lines += ["", f"Paired on control items (fair grader), `{block['reference']}` − baseline:", ""]
        for method, p in block["paired_control"].items():
            if p["n"]:
                lines.append(f"- vs `{method}`: {p['delta']:+.1f} (b/c {p['b']}/{p['c']}, p = {p['p_value']:.3g})")
        # No time line: the runs are paused and resumed and the methods share chunks, so summed seconds are not a
        # cost measure (the cost is measured side by side, results/rag-real/README.md).
        lines += [
            "",
            f"Best baseline: `{block['best_baseline']}`; target (+3, p < {block['alpha']}, control ≥ plain − 2) met: "
            f"**{block['target_met']}**",
            "",
        ]
    default = summary.get("default")
    if default:
        verdict = f"`{default['default']}`" if default["decided"] else "not decided yet (a model's run is incomplete)"
        lines += [
            "## The shipped default (rule 3)",
            "",
            f"Default: {verdict}. Eligible (worse than plain RAG on no complete run): "
            + (", ".join(f"`{w}`" for w in default["eligible"]) or "none")
            + ".",
        ]
        lines += [f"- `{w}` worse than plain RAG: {'; '.join(found)}" for w, found in default["worse"].items() if found]
        lines.append("")
    return lines


def summarise(winner: str, winner_2: str | None = None) -> None:
    summary: dict[str, Any] = {"winner": winner, "winner_2": winner_2, "runs": {}}
    # Two pre-registered anchored methods: each is held to p < 0.025 (Bonferroni; rule 2, item 4).
    alpha = 0.025 if winner_2 else 0.05
    # Rule 4: rule 1's winner answers in sentences only in stage 2 (items decoded before rule 4 are not reported).
    stage_2 = winner_2 is None or needs_stage_2(winner_2)
    for style in ("short", "sentence"):
        for model in FINAL_MODELS:
            for rule, reference, other in (("rule 1", winner, winner_2), ("rule 2", winner_2, winner)):
                if style == "sentence" and not stage_2:
                    reference, other = (None, None) if rule == "rule 1" else (reference, None)
                block = model_summary(model, reference, style, (other,) if other else (), alpha) if reference else None
                if block:
                    summary["runs"][f"{model}, {style} answers, {rule}: {block['reference']}"] = block
    if winner_2:
        summary["default"] = shipped_default((winner, winner_2))
    snapshot()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text("\n".join(_markdown(summary)) + "\n")
    print("\n".join(_markdown(summary)), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/nqswap")
    parser.add_argument("--summary-only", action="store_true", help="no decoding: tables from the folders as they are")
    parser.add_argument("--snapshot", action="store_true", help="only copy the logs so far into results/rag-real/logs")
    parser.add_argument("--models", default=",".join(FINAL_MODELS), help="final-run models, in order")
    parser.add_argument(
        "--styles", default="short,sentence", help="answer styles of the final run, in order (short, sentence)"
    )
    args = parser.parse_args()
    styles = args.styles.split(",")
    if unknown := set(styles) - {"short", "sentence"}:
        parser.error(f"unknown --styles {sorted(unknown)}; choose from short, sentence")
    if args.snapshot:
        snapshot()
        return 0
    restore()
    tune = EVALS / f"{TUNE_MODEL}-train"
    if not args.summary_only:
        _eval(TUNE_MODEL, "train", ["rag-plain", *CANDIDATES], tune, args.data_dir)
    choice = choose(tune / "conflictqa")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "choice.json").write_text(json.dumps(choice, indent=2) + "\n")
    print("choice:", json.dumps(choice), flush=True)
    winner = choice["winner"]
    if not args.summary_only:
        _eval(TUNE_MODEL, "train", list(CANDIDATES_2), tune, args.data_dir)
    try:
        choice_2 = choose(tune / "conflictqa", CANDIDATES_2)
    except SystemExit as unfinished:  # --summary-only before rule 2's tuning is done: rule 1's tables alone
        if not args.summary_only:
            raise
        print(unfinished, flush=True)
        summarise(winner)
        return 0
    (RESULTS / "choice-2.json").write_text(json.dumps(choice_2, indent=2) + "\n")
    print("choice 2:", json.dumps(choice_2), flush=True)
    winner_2 = choice_2["winner"]
    if not args.summary_only:
        models = args.models.split(",")
        final_methods = {
            "short": ["closed-book", *BASELINES, winner, winner_2],
            "sentence": [*(m + SENTENCE for m in SENTENCE_BASELINES), sentence_twin(winner_2)],  # rule 4, stage 1
        }
        for style in styles:
            for model in models:
                _eval(model, "test", final_methods[style], EVALS / f"{model}-test", args.data_dir)
                summarise(winner, winner_2)
        if "sentence" in styles and needs_stage_2(winner_2, models):
            for model in models:  # rule 4, stage 2: is rule 1's winner still eligible in sentence answers?
                _eval(model, "test", [sentence_twin(winner)], EVALS / f"{model}-test", args.data_dir)
                summarise(winner, winner_2)
    summarise(winner, winner_2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
