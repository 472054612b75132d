"""Evaluate a model on the benchmarks with run_eval (the library face of `selfanchor eval`), then report.

    python cookbook/evaluate_your_model.py           # Qwen2.5-Coder-0.5B, 10 GSM8K problems, Self-Anchor vs CoT
    python cookbook/evaluate_your_model.py --fast    # SmolLM2-135M, 2 problems, tiny budget

The same from the shell:

    selfanchor eval gsm8k --methods self-anchor,cot --limit 10 --model qwen2.5-coder-0.5b --out evals/mine
    selfanchor report evals/mine
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from selfanchor_chains import SteeredHFLLM
from selfanchor_chains.eval import build_report, format_markdown, run_eval


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="SmolLM2-135M, 2 problems, tiny budget")
    parser.add_argument("--model", default=None, help="registry name or local model folder")
    parser.add_argument("--bench", default="gsm8k", help="benchmark(s), e.g. gsm8k,strategyqa or bbh:navigate")
    parser.add_argument("--limit", type=int, default=None, help="problems per benchmark")
    parser.add_argument("--out", default=None, help="results folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    model = args.model or ("smollm2-135m" if args.fast else "qwen2.5-coder-0.5b")
    dtype = "float32" if args.fast else "auto"  # auto: the fastest weights this machine has (see README)
    limit = args.limit or (2 if args.fast else 10)
    # Results are resumable per folder: run the same call again and only the missing items are solved.
    out = args.out or tempfile.mkdtemp(prefix="selfanchor-eval-")

    llm = SteeredHFLLM.from_model_id(model, dtype=dtype)
    summary = run_eval(
        args.bench,
        "self-anchor,cot",
        llm,
        out,
        limit=limit,
        batch_size=limit,
        max_new_tokens=32 if args.fast else 384,
        dtype=str(llm.runtime.model.dtype).removeprefix("torch."),  # what "auto" chose (model_id adds +int8 etc.)
        progress=False,
    )
    for bench, methods in summary.items():
        for method, row in methods.items():
            print(f"{bench:<10} {method:<12} {row['correct']}/{row['n']} correct")
    # bootstrap resamples kept small here; the CLI report uses 10,000
    print(format_markdown(build_report(out, resamples=1000)))
    print(f"[per-item results in {out}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
