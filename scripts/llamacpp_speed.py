"""Steered decoding on llama.cpp beside plain llama.cpp on the same GGUF, interleaved in one process (issue #37).

    python scripts/llamacpp_speed.py --model qwen2.5-coder-0.5b --batch 1 8 --new-tokens 128 --repeats 3 \
        --json results/llamacpp/speed-qwen2.5-coder-0.5b.json

The GGUF's own quantisation, one llama.cpp context for both methods (same threads, same build). Each round runs,
per batch size, plain llama.cpp greedy decoding (one sequence per row, one ``llama_decode`` per step, argmax of
the logits: :func:`selfanchor_chains.bench.llamacpp.plain_llamacpp_greedy`) and our steered decoding (ω = OMEGA,
each row's question anchored, both branches in one ``llama_decode`` per step), in alternating order; EOS ignored,
so every run decodes NEW_TOKENS tokens per row. Wall time per run including the prompt's prefill; medians over the
rounds. The prompts are ``selfanchor bench speed``'s (chat prompts, the question anchored).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any


def cpu_model() -> dict[str, str]:
    """The CPU as lscpu names it, and whether it has AVX-512 (the build is AVX2: see scripts/llamacpp_build.py)."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "")
    return {
        "model_name": fields.get("Model name", platform.processor()).strip(),
        "cpus": fields.get("CPU(s)", "?").strip(),
        "avx512f": str("avx512f" in flags.split()),
    }


def _time(run: Any) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(model_name: str, batches: list[int], new_tokens: int, repeats: int, threads: int, omega: float) -> dict:
    from selfanchor_chains.bench.llamacpp import plain_llamacpp_greedy
    from selfanchor_chains.bench.speed import build_prompts
    from selfanchor_chains.engine.llamacpp_model import LlamaCppModel
    from selfanchor_chains.engine.llamacpp_session import LlamaCppDecoder
    from selfanchor_chains.engine.requests import RowRequest
    from selfanchor_chains.langchain.llamacpp_llm import load_gguf_tokenizer, resolve_model_path

    path, _ = resolve_model_path(model_name)
    tokenizer = load_gguf_tokenizer(path)
    model = LlamaCppModel(path, n_ctx=4 * max(batches) * (200 + new_tokens), slots=max(batches), n_threads=threads)
    decoder = LlamaCppDecoder(model, tokenizer, eos_token_ids=[])
    result: dict[str, Any] = {"model": model_name, "gguf": str(path), "new_tokens": new_tokens, "omega": omega}
    result.update({"threads": threads, "repeats": repeats, "cpu": cpu_model(), "batches": {}})
    for batch in batches:
        prompts = build_prompts(tokenizer, batch)
        ids = [p.ids for p in prompts]
        rows = [RowRequest(p.ids, [p.anchor], omega) for p in prompts]

        def plain(n: int = new_tokens, ids: list = ids) -> None:
            plain_llamacpp_greedy(model, ids, n)

        def steered(n: int = new_tokens, rows: list = rows) -> None:
            decoder.generate(rows, max_new_tokens=n)

        plain(8), steered(8)  # warm-up, untimed
        times: dict[str, list[float]] = {"plain": [], "steered": []}
        for round_ in range(repeats):
            order = (("plain", plain), ("steered", steered))
            for method, run in order if round_ % 2 == 0 else order[::-1]:
                times[method].append(_time(run))
                print(f"batch {batch} round {round_ + 1}/{repeats} {method:>8}: {times[method][-1]:6.2f} s", flush=True)
        medians = {m: statistics.median(t) for m, t in times.items()}
        tokens = batch * new_tokens
        result["batches"][str(batch)] = {
            "times_s": times,
            "median_s": medians,
            "tokens_per_s": {m: tokens / s for m, s in medians.items()},
            "steered_over_plain_time": medians["steered"] / medians["plain"],
            "steered_over_plain_tokens_per_s": medians["plain"] / medians["steered"],
            "prompt_tokens": [len(i) for i in ids],
        }
        print(json.dumps({batch: result["batches"][str(batch)]["tokens_per_s"]}), flush=True)
    model.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="registry name or GGUF path")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--omega", type=float, default=1.5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = measure(args.model, args.batch, args.new_tokens, args.repeats, args.threads, args.omega)
    for batch, row in result["batches"].items():
        print(
            f"batch {batch}: plain {row['tokens_per_s']['plain']:.1f} tok/s, steered "
            f"{row['tokens_per_s']['steered']:.1f} tok/s, steered/plain time {row['steered_over_plain_time']:.3f}"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
