"""The steering study (issue #17): Self-Anchor's free choices screened on *training* pools, never the dev splits.

Each variant is a named chain configuration; the evaluation runner solves the same items with each variant and
writes per-item logs (``OUT/<bench>/<variant>.jsonl``, resumable), so the variants are compared pairwise:

    python scripts/study.py --bench gsm8k --split train --limit 100 --variants cot,structure,sa-default
    python scripts/study.py --bench strategyqa --split train --limit 100 --variants cot,sa-default
    python scripts/study.py --bench aqua --split official_dev --limit 100 --variants cot,sa-default
    python scripts/study.py --list          # the variants and what each changes

``selfanchor report OUT`` (with ``--reference`` a variant) gives accuracies with Wilson intervals, paired tests
and the steering diagnostics. The variants and the selection rule are documented in ``results/study/README.md``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOGS = Path(__file__).resolve().parent.parent / "results" / "study" / "logs"

ChainKwargs = dict[str, Any]


def _variants() -> dict[str, tuple[str, Callable[[], ChainKwargs]]]:
    """name -> (description, kwargs for :class:`SelfAnchorChain` or, with ``"_chain": "cot"``, :class:`CoTChain`)."""
    from selfanchor_chains.reasoning.schedules import ConfidenceOmega, ConstantOmega, ScaledOmega

    def sa(**kwargs: Any) -> Callable[[], ChainKwargs]:
        return lambda: {"schedule": ConfidenceOmega(), **kwargs}

    def scaled(base: float, alpha: float, **kwargs: Any) -> Callable[[], ChainKwargs]:
        return lambda: {"schedule": ScaledOmega(base, alpha), **kwargs}

    reasoning_only = {"step_strength": {"plan": 0.0, "final": 0.0}}
    variants: dict[str, tuple[str, Callable[[], ChainKwargs]]] = {
        # references
        "cot": ("zero-shot CoT", lambda: {"_chain": "cot"}),
        "cot-example": (
            "CoT with the worked example as a CoT trace",
            lambda: {"_chain": "cot", "worked_example": True},
        ),
        "structure": ("plan/reason format, no steering (ω = 1)", lambda: {"schedule": ConstantOmega(1.0)}),
        "structure-example": (
            "plan/reason format with the worked example, no steering",
            lambda: {"schedule": ConstantOmega(1.0), "worked_example": True},
        ),
        "sa-default": ("Self-Anchor as shipped before the study: ω = 1 + 0.5·(1 − c) in [1, 1.5], first 1.25", sa()),
        # 6. format
        "sa-example": ("sa-default + the worked example in plan/reason format", sa(worked_example=True)),
        "sa-midline": ("sa-default + numbered labels inside a line open steps", sa(midline_labels=True)),
        "sa-noretry": ("sa-default without the format retry (as every baseline)", sa(format_retries=0)),
        # 1. ω mapping: ω = ω_base·(1 + α·(1 − c))
        "sa-scaled-1.25-0.5": ("ω = 1.25·(1 + 0.5·(1 − c))", scaled(1.25, 0.5)),
        "sa-scaled-1.5-0.5": ("ω = 1.5·(1 + 0.5·(1 − c))", scaled(1.5, 0.5)),
        "sa-scaled-2-0.5": ("ω = 2·(1 + 0.5·(1 − c))", scaled(2.0, 0.5)),
        "sa-scaled-1.5-1": ("ω = 1.5·(1 + (1 − c))", scaled(1.5, 1.0)),
        # 2. per-kind strength
        "sa-reasoning-only": ("sa-default, steering only reasoning steps", sa(**reasoning_only)),
        "sa-scaled-1.5-0.5-reasoning-only": (
            "ω = 1.5·(1 + 0.5·(1 − c)) on reasoning steps only",
            scaled(1.5, 0.5, **reasoning_only),
        ),
        "sa-plans-half": ("sa-default, plans steered at half strength", sa(step_strength={"plan": 0.5})),
        # 3. what the final-answer line anchors
        "sa-final-none": ("sa-default, final-answer line unsteered", sa(step_strength={"final": 0.0})),
        "sa-final-question": (
            "sa-default, final-answer line anchors the question only",
            sa(anchor_plan_in_final=False),
        ),
        # 4. the masked branch's counterfactual
        "sa-replace": ("sa-default, anchors replaced by a neutral token (not hidden)", sa(anchor_masking="replace")),
        # 5. what reasoning steps anchor
        "sa-scope-plan": ("sa-default, reasoning anchors its plan only", sa(reasoning_scope="plan")),
        "sa-scope-plans": ("sa-default, reasoning anchors question + all plans", sa(reasoning_scope="question+plans")),
        # 7. steering only when unsure
        "sa-gate-0.5": ("ω = 1.5·(1 + 0.5·(1 − c)), only tokens with top p < 0.5", scaled(1.5, 0.5, steer_below=0.5)),
        "sa-gate-0.8": ("ω = 1.5·(1 + 0.5·(1 − c)), only tokens with top p < 0.8", scaled(1.5, 0.5, steer_below=0.8)),
        "sa-gate-0.5-strong": (
            "ω = 2·(1 + 0.5·(1 − c)), only tokens with top p < 0.5",
            scaled(2.0, 0.5, steer_below=0.5),
        ),
    }
    # the worked example combined with a steering option (the finalist rule's fourth finalist)
    combined = {
        f"sa-example-{name.removeprefix('sa-')}": (f"{description} + the worked example", _with_example(build))
        for name, (description, build) in variants.items()
        if name.startswith("sa-") and name not in ("sa-default", "sa-example")
    }
    return {**variants, **combined}


def _with_example(build: Callable[[], ChainKwargs]) -> Callable[[], ChainKwargs]:
    return lambda: {**build(), "worked_example": True}


def run_folder(model: str, dtype: str, split: str) -> str:
    """The results folder of a pool's runs: one per split, because a results folder holds a single split (the
    runner refuses to mix them); ``train`` keeps the plain name the screening was written under."""
    return f"{model}-{dtype}" if split == "train" else f"{model}-{dtype}-{split}"


def make_factory(llm: Any, variants: dict[str, tuple[str, Callable[[], ChainKwargs]]], max_new_tokens: int) -> Any:
    from selfanchor_chains.reasoning.chains import CoTChain, SelfAnchorChain

    def factory(method: str, bench: str) -> Any:
        kwargs = dict(variants[method][1]())
        kind = kwargs.pop("_chain", "self-anchor")
        cls = CoTChain if kind == "cot" else SelfAnchorChain
        return cls(llm=llm, bench=bench, max_new_tokens=max_new_tokens, **kwargs)

    return factory


def sync_logs(out: Path, logs: Path, *, save: bool) -> int:
    """Save: every ``OUT/<run>/<bench>/<variant>.jsonl`` and ``run.json`` to ``logs/<run>/...`` (jsonl gzipped).
    Restore: the reverse, for files missing from ``OUT`` (a fresh clone resumes the study where it stopped)."""
    if save:
        for source in sorted(out.glob("*/run.json")) + sorted(out.glob("*/*/*.jsonl")):
            target = logs / source.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.suffix == ".jsonl":
                with (
                    source.open("rb") as f_in,
                    open(f"{target}.gz", "wb") as raw,
                    gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f_out,
                ):
                    shutil.copyfileobj(f_in, f_out)
            else:
                shutil.copyfile(source, target)
            print(f"saved {target}")
        return 0
    for source in sorted(logs.glob("*/run.json")) + sorted(logs.glob("*/*/*.jsonl.gz")):
        target = out / source.relative_to(logs)
        target = target.with_suffix("") if source.suffix == ".gz" else target
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".gz":
            with gzip.open(source, "rb") as f_in, target.open("wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
        else:
            shutil.copyfile(source, target)
        print(f"restored {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default="gsm8k")
    parser.add_argument(
        "--split", default="train", help="a training pool: train (gsm8k, strategyqa), official_dev (aqua)"
    )
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--variants", default="cot,structure,sa-default")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--out", default="evals/study")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--save", action="store_true", help="copy the per-item logs into results/study/logs (gzip)")
    parser.add_argument("--restore", action="store_true", help="copy committed logs back into --out to resume")
    args = parser.parse_args(argv)
    if args.save or args.restore:
        return sync_logs(Path(args.out), LOGS, save=args.save)

    variants = _variants()
    if args.list:
        for name, (description, _) in variants.items():
            print(f"{name:24s} {description}")
        return 0
    if args.split == "dev":
        raise SystemExit("the study tunes on training pools only; dev is for the final run")
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; see --list")

    from selfanchor_chains.eval.runner import run_eval
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM.from_model_id(args.model, dtype=args.dtype)
    out = os.path.join(args.out, run_folder(args.model, args.dtype, args.split))
    summary = run_eval(
        args.bench,
        chosen,
        make_factory(llm, variants, args.max_new_tokens),
        out,
        limit=args.limit,
        split=args.split,
        batch_size=args.batch,
        max_new_tokens=args.max_new_tokens,
        model_name=args.model,
        dtype=args.dtype,
        progress=sys.stderr.isatty(),
        command="python scripts/study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    for bench, methods in summary.items():
        for method, row in methods.items():
            print(f"{bench} {method}: {row['correct']}/{row['n']} (new {row['new']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
