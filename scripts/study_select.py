"""Apply the study's selection rule (results/study/README.md) to the per-item logs, mechanically.

    python scripts/study_select.py                      # screening table, finalists, and (when the
                                                         # confirmation runs exist) the winner
    python scripts/study_select.py --json out.json

Screening: GSM8K train items 1-100 (the variants of SCREENED, plus the follow-ups that are due). Finalists: the three
Self-Anchor variants with the best screening accuracy
(ties: fewer changed options, i.e. the shorter name). Confirmation pools: GSM8K train items 101-300, StrategyQA
train 1-100, AQuA official_dev 1-100. Winner: the best mean accuracy over the three confirmation pools; a tie goes
to the larger mean paired gain over ``structure``. Accuracies carry Wilson 95% intervals.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from selfanchor_chains.eval.stats import wilson_interval

OUT = Path("evals/study/qwen2.5-coder-1.5b-bfloat16")
SPLITS = {"gsm8k": "train", "strategyqa": "train", "aqua": "official_dev"}  # the training pool of each benchmark
REFERENCES = ("cot", "cot-example", "structure", "structure-example")
POOLS = {"gsm8k": (100, 300), "strategyqa": (0, 100), "aqua": (0, 100)}  # [start, end) by position in the file
# The screened Self-Anchor variants (results/study/README.md, session 7) and the follow-ups that join them when the
# variant they refine scores above sa-default; finalists are named once all of these are complete.
SCREENED = (
    "sa-default",
    "sa-scaled-1.5-0.5",
    "sa-example",
    "sa-reasoning-only",
    "sa-gate-0.5",
    "sa-replace",
    "sa-scaled-2-0.5",
    "sa-final-none",
    "sa-scope-plans",
    "sa-scope-plan",
    "sa-midline",
    "sa-noretry",
    "sa-final-question",
)
# Options of the steering itself (not of the format): the best of them, when it beats sa-default, is combined with the
# worked example as a fourth finalist whenever sa-example is a finalist.
NOT_STEERING = ("sa-default", "sa-example", "sa-midline", "sa-noretry")
FOLLOW_UPS = {
    "sa-scaled-1.5-0.5-reasoning-only": "sa-reasoning-only",
    "sa-gate-0.8": "sa-gate-0.5",
    "sa-gate-0.5-strong": "sa-gate-0.5",
}


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of k/n (NaNs for an empty pool, which the tables print as "-")."""
    return wilson_interval(k, n) or (math.nan, math.nan)


def load(out: Path, bench: str, variant: str) -> dict[str, bool]:
    # scripts/study.py writes a pool other than ``train`` to its own folder, named after the split
    folder = out if SPLITS[bench] == "train" else out.with_name(f"{out.name}-{SPLITS[bench]}")
    path = folder / bench / f"{variant}.jsonl"
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: bool(r["correct"]) for r in records}


def positions(bench: str, split: str) -> list[str]:
    from selfanchor_chains.eval.datasets import load_problems

    return [p.id for p in load_problems(bench, split=split)]


def accuracy(results: dict[str, bool], ids: list[str]) -> dict[str, Any] | None:
    if not ids or any(i not in results for i in ids):
        return None  # not complete on this pool
    k = sum(results[i] for i in ids)
    low, high = wilson(k, len(ids))
    return {"n": len(ids), "correct": k, "accuracy": k / len(ids), "ci": [low, high]}


def combined_finalist(screening: dict[str, Any], screened: list[str]) -> str | None:
    """``sa-example-<option>`` for the best steering option of the screening (ties: the shorter name, then the name),
    or None when no steering option scored above sa-default."""
    options = [v for v in screened if v not in NOT_STEERING and screening.get(v)]
    if not options or not screening.get("sa-default"):
        return None
    best = min(options, key=lambda v: (-screening[v]["accuracy"], len(v), v))
    if screening[best]["accuracy"] <= screening["sa-default"]["accuracy"]:
        return None
    return "sa-example-" + best.removeprefix("sa-")


def choose_finalists(screening: dict[str, Any], screened: list[str]) -> list[str]:
    """Rule 2: the three screened Self-Anchor variants with the best screening accuracy (ties: the shorter name), plus
    the combined ``sa-example-<option>`` when ``sa-example`` is among them. Only the screened variants compete: the
    combined variant's own screening items (decoded later, for the table) do not make it a finalist by themselves."""
    candidates = [v for v in screened if v.startswith("sa-") and screening.get(v)]
    finalists = sorted(candidates, key=lambda v: (-screening[v]["accuracy"], len(v)))[:3]
    if "sa-example" in finalists:
        combined = combined_finalist(screening, screened)
        if combined:
            finalists.append(combined)
    return finalists


def confirmation_table(out: Path, pools: dict[str, list[str]], variants: list[str]) -> str:
    """Markdown: each variant's accuracy on each pool (items done so far, Wilson 95%), the mean over the complete
    pools, and the paired comparison with ``structure`` over the items both have (only it / only structure, exact
    McNemar p)."""
    from selfanchor_chains.eval.stats import mcnemar_exact

    names = {"gsm8k": "GSM8K train 101-300", "strategyqa": "StrategyQA train 1-100", "aqua": "AQuA official_dev 1-100"}
    head = [
        "variant",
        *(names[b] for b in pools),
        "mean (complete pools)",
        "vs structure: only it / only structure (p)",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    base = {b: load(out, b, "structure") for b in pools}
    for v in variants:
        cells, accs, only_it, only_base = [], [], 0, 0
        for bench, ids in pools.items():
            results = load(out, bench, v)
            done = [i for i in ids if i in results]
            k = sum(results[i] for i in done)
            low, high = wilson(k, len(done))
            partial = "" if len(done) == len(ids) else " (so far)"
            cells.append(f"{k}/{len(done)}{partial} [{100 * low:.1f}, {100 * high:.1f}]" if done else "-")
            if len(done) == len(ids):
                accs.append(k / len(ids))
            shared = [i for i in done if i in base[bench]]
            only_it += sum(results[i] and not base[bench][i] for i in shared)
            only_base += sum(base[bench][i] and not results[i] for i in shared)
        mean = f"{100 * sum(accs) / len(accs):.1f}% ({len(accs)} pools)" if accs else "-"
        paired = "-" if v == "structure" else f"{only_it} / {only_base} ({mcnemar_exact(only_it, only_base):.2f})"
        rows.append(f"| {v} | " + " | ".join(cells) + f" | {mean} | {paired} |")
    return "\n".join(rows) + "\n"


def references_due(winner: str) -> list[str]:
    """The references run on the pools once the winner is named: CoT, and the unsteered and CoT twins with the worked
    example when the winner shows it (``structure`` already ran with the finalists)."""
    return ["cot", "structure-example", "cot-example"] if winner.startswith("sa-example") else ["cot"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None, help="write the confirmation table (so far) here")
    args = parser.parse_args()

    gsm8k_ids = positions("gsm8k", "train")
    screen_ids = gsm8k_ids[:100]
    variants = sorted(p.stem for p in (args.out / "gsm8k").glob("*.jsonl"))
    screening = {v: accuracy(load(args.out, "gsm8k", v), screen_ids) for v in variants}
    print("Screening (GSM8K train items 1-100):")
    for v, cell in sorted(screening.items(), key=lambda kv: -(kv[1] or {}).get("accuracy", -1)):
        text = "incomplete" if cell is None else f"{cell['correct']}/{cell['n']} = {100 * cell['accuracy']:.1f}%"
        print(
            f"  {v:36s} {text}" + ("" if cell is None else f"  [{100 * cell['ci'][0]:.1f}, {100 * cell['ci'][1]:.1f}]")
        )
    default = screening.get("sa-default")
    due = [
        f
        for f, refined in FOLLOW_UPS.items()
        if default and screening.get(refined) and screening[refined]["accuracy"] > default["accuracy"]  # type: ignore[index]
    ]
    required = [*SCREENED, *due]
    missing = [v for v in required if screening.get(v) is None]
    print(f"Follow-ups due: {due or 'none so far'}; not complete yet: {missing or 'none'}")
    finalists = [] if missing else choose_finalists(screening, required)
    print(f"Finalists: {finalists or 'not yet (screening incomplete)'}")
    if "sa-example" in finalists:
        print("sa-example is a finalist: structure-example, cot-example join the screening (pools: after the winner)")
        if len(finalists) > 3:
            print(f"the best steering option combined with the example joins the finalists: {finalists[3]}")

    pools = {
        "gsm8k": gsm8k_ids[slice(*POOLS["gsm8k"])],
        "strategyqa": positions("strategyqa", SPLITS["strategyqa"])[slice(*POOLS["strategyqa"])],
        "aqua": positions("aqua", SPLITS["aqua"])[slice(*POOLS["aqua"])],
    }
    confirmation: dict[str, dict[str, Any]] = {}
    for v in [*finalists, *REFERENCES]:
        confirmation[v] = {bench: accuracy(load(args.out, bench, v), ids) for bench, ids in pools.items()}
    complete = [v for v in finalists if all(confirmation[v].values())]
    winner = None
    if finalists and len(complete) == len(finalists):

        def mean(v: str) -> float:
            return sum(c["accuracy"] for c in confirmation[v].values()) / len(pools)

        def gain(v: str) -> float:
            base = confirmation.get("structure") or {}
            return sum(c["accuracy"] - (base.get(b) or {}).get("accuracy", 0.0) for b, c in confirmation[v].items())

        winner = max(complete, key=lambda v: (mean(v), gain(v)))
        print("Confirmation (mean over GSM8K train 101-300, StrategyQA train 1-100, AQuA official_dev 1-100):")
        for v in complete:
            print(f"  {v:36s} {100 * mean(v):.1f}%")
    print(f"Winner: {winner or 'not yet (confirmation runs incomplete)'}")
    for v in [*finalists, "structure"]:
        done = {b: sum(i in load(args.out, b, v) for i in ids) for b, ids in pools.items()}
        print(f"  pool progress {v:32s} " + ", ".join(f"{b} {n}/{len(pools[b])}" for b, n in done.items()))
    if args.markdown:
        shown = [*finalists, "structure", *(references_due(winner) if winner else [])]
        args.markdown.write_text(confirmation_table(args.out, pools, shown))
    if winner:
        due_refs = references_due(winner)
        print(f"References due on the pools (report only, rule 3 as amended in session 10): {', '.join(due_refs)}")
        for bench, (_, end) in POOLS.items():
            print(f"  --bench {bench} --split {SPLITS[bench]} --limit {end} --variants {','.join(due_refs)}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"screening": screening, "finalists": finalists, "confirmation": confirmation, "winner": winner},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
