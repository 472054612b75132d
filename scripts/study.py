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
import os
import sys
from collections.abc import Callable
from typing import Any

ChainKwargs = dict[str, Any]


def _variants() -> dict[str, tuple[str, Callable[[], ChainKwargs]]]:
    """name -> (description, kwargs for :class:`SelfAnchorChain` or, with ``"_chain": "cot"``, :class:`CoTChain`)."""
    from selfanchor_chains.schedules import ConfidenceOmega, ConstantOmega

    return {
        "cot": ("zero-shot CoT (reference)", lambda: {"_chain": "cot"}),
        "structure": ("plan/reason format, no steering (ω = 1)", lambda: {"schedule": ConstantOmega(1.0)}),
        "sa-default": (
            "Self-Anchor as shipped before the study: ω = 1 + 0.5·(1 − c) in [1, 1.5], first step 1.25",
            lambda: {"schedule": ConfidenceOmega()},
        ),
    }


def make_factory(llm: Any, variants: dict[str, tuple[str, Callable[[], ChainKwargs]]], max_new_tokens: int) -> Any:
    from selfanchor_chains.chains import CoTChain, SelfAnchorChain

    def factory(method: str, bench: str) -> Any:
        kwargs = dict(variants[method][1]())
        kind = kwargs.pop("_chain", "self-anchor")
        cls = CoTChain if kind == "cot" else SelfAnchorChain
        return cls(llm=llm, bench=bench, max_new_tokens=max_new_tokens, **kwargs)

    return factory


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default="gsm8k")
    parser.add_argument("--split", default="train", help="a training pool: train (gsm8k, strategyqa), official_dev (aqua)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--variants", default="cot,structure,sa-default")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--out", default="evals/study")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    args = parser.parse_args(argv)

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
    from selfanchor_chains.llms import SteeredHFLLM

    llm = SteeredHFLLM.from_model_id(args.model, dtype=args.dtype)
    out = os.path.join(args.out, f"{args.model}-{args.dtype}")
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
