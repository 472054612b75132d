"""Cost of one decode step against the number of rows it carries (the ceiling on what continuous batching can gain).

    python scripts/step_cost.py --model qwen2.5-coder-1.5b --rows 1,2,4,8,16 --context 300 --repeats 5

For each row count r: a cache of CONTEXT random tokens per row, then the median time of one forward of r new tokens.
If a step costs about r times a one-row step, decoding is compute-bound and keeping the batch full (continuous
batching) buys little; if it costs about the same, it is weight-bandwidth-bound and full batches are nearly free.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    import torch

    from selfanchor_chains.engine.kv import cache_from_tensors, layer_tensors
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rows", default="1,2,4,8,16")
    parser.add_argument("--context", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    llm = SteeredHFLLM.from_model_id(args.model, dtype=args.dtype)
    decoder = llm.runtime.decoder
    generator = torch.Generator().manual_seed(0)
    result: dict[str, float] = {}
    for rows in (int(r) for r in args.rows.split(",")):
        ids = torch.randint(100, 20000, (rows, args.context), generator=generator)
        mask = torch.ones_like(ids)
        positions = torch.arange(args.context).expand(rows, -1)
        cache = decoder.new_cache()
        decoder.forward(ids, mask, positions, cache)
        layers = layer_tensors(cache)
        times = []
        for _ in range(args.repeats + 1):
            step_cache = cache_from_tensors(list(layers))  # the same context every time (appending copies)
            token = torch.randint(100, 20000, (rows, 1), generator=generator)
            start = time.perf_counter()
            decoder.forward(
                token, torch.ones((rows, args.context + 1), dtype=torch.long), positions[:, -1:] + 1, step_cache
            )
            times.append(time.perf_counter() - start)
        result[str(rows)] = statistics.median(times[1:])
        print(f"rows {rows:>3}: {1000 * result[str(rows)]:8.1f} ms per step, {rows / result[str(rows)]:6.1f} tokens/s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"model": args.model, "dtype": args.dtype, "context": args.context, "seconds": result}, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
