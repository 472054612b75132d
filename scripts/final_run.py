"""Issue #17's final dev run ("The final dev run" in results/study/README.md) as one resumable command.

    python scripts/final_run.py --winner sa-example --dry-run      # check the default, print the commands
    nohup python scripts/final_run.py --winner sa-example >> evals/final/run.log 2>&1 &
    python scripts/final_run.py --save                            # mid-command: the logs so far (pause it first)

It refuses to start unless ``SelfAnchorChain``'s defaults are the study winner's settings (the dev table must measure
the shipped default, nothing else), then runs the ``selfanchor eval`` commands one after another. Each command
resumes from the results folder, so a run cut off by a session's end continues where it stopped; the per-item logs
are gzipped to ``results/final/logs/`` after every command (and restored from there first, so a fresh clone resumes
too). When all are done it writes the report (``selfanchor report``) into the results folder and its summary to
``results/final/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/study.py holds the variants and the log sync

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "evals" / "final"  # the results folder is RUNS/<model>-<dtype>; study.sync_logs works on RUNS
OUT = RUNS / "qwen2.5-coder-1.5b-bfloat16"
OUT_ARG = OUT.relative_to(ROOT)  # the commands run from the repository root
LOGS = ROOT / "results" / "final" / "logs"
GSM8K_METHODS = "self-anchor,structure-only,cot,ps"
OTHER_BENCHES = "aqua,math500,strategyqa,t4d,bbh"
OTHER_METHODS = "self-anchor,structure-only,cot"


def commands(worked_example: bool, out: Path = OUT_ARG) -> list[list[str]]:
    """The ``selfanchor`` argument lists, in order: each benchmark group in halves, so that a run cut short has
    covered all six benchmarks."""
    common = ["--model", "qwen2.5-coder-1.5b", "--dtype", "bfloat16", "--quantization", "none", "--batch", "8"]
    common += ["--max-new-tokens", "512", "--out", str(out), "--no-progress"]
    if worked_example:
        common.append("--worked-example")  # every method sees the example, each in its own format
    return [
        ["eval", "gsm8k", "--methods", GSM8K_METHODS, "--limit", "150", *common],
        ["eval", OTHER_BENCHES, "--methods", OTHER_METHODS, "--limit", "50", *common],
        ["eval", "gsm8k", "--methods", GSM8K_METHODS, "--limit", "300", *common],
        ["eval", OTHER_BENCHES, "--methods", OTHER_METHODS, "--limit", "100", *common],
    ]


def winner_settings(winner: str) -> dict[str, Any]:
    """The study variant's chain settings (``scripts/study.py``), which the default must equal."""
    from study import _variants

    variants = _variants()
    if winner not in variants:
        raise SystemExit(f"unknown study variant {winner!r}")
    settings = dict(variants[winner][1]())
    if settings.pop("_chain", "self-anchor") != "self-anchor":
        raise SystemExit(f"{winner} is not a Self-Anchor variant")
    return settings


def default_mismatches(settings: dict[str, Any]) -> list[str]:
    """Fields of ``SelfAnchorChain`` whose default differs from the winner's setting (compared by repr, which
    schedules and plain values define by their parameters)."""
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    fields = SelfAnchorChain.model_fields
    out = []
    for name, wanted in settings.items():
        default = fields[name].get_default(call_default_factory=True)
        if repr(default) != repr(wanted):
            out.append(f"{name}: default {default!r}, winner {wanted!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--winner", help="the study's winner (python scripts/study_select.py)")
    parser.add_argument("--dry-run", action="store_true", help="check the default and print the commands only")
    parser.add_argument(
        "--save", action="store_true", help="only gzip the logs so far to results/final/logs (pause a run first)"
    )
    args = parser.parse_args(argv)
    if args.save:
        from study import sync_logs

        return sync_logs(RUNS, LOGS, save=True)
    if not args.winner:
        parser.error("--winner is required (python scripts/study_select.py names it)")
    settings = winner_settings(args.winner)
    mismatches = default_mismatches(settings)
    if mismatches:
        print("SelfAnchorChain's defaults are not the winner's settings:\n  " + "\n  ".join(mismatches))
        return 2
    selfanchor = shutil.which("selfanchor", path=str(Path(sys.executable).parent)) or "selfanchor"
    todo = commands(bool(settings.get("worked_example")))
    if args.dry_run:
        for argv_ in todo:
            print("selfanchor " + " ".join(argv_))
        return 0
    from study import sync_logs

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    sync_logs(RUNS, LOGS, save=False)
    for argv_ in todo:
        print("selfanchor " + " ".join(argv_), flush=True)
        code = subprocess.run([selfanchor, *argv_], env=env, cwd=ROOT).returncode
        sync_logs(RUNS, LOGS, save=True)
        if code != 0:
            print(f"stopped: exit {code}")
            return code
    report = subprocess.run([selfanchor, "report", str(OUT_ARG), "--reference", "self-anchor"], env=env, cwd=ROOT)
    for name in ("report.md", "report.json"):
        if (OUT / name).is_file():
            shutil.copyfile(OUT / name, LOGS.parent / name)
    return report.returncode


if __name__ == "__main__":
    raise SystemExit(main())
