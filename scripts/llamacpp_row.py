"""llama.cpp's plain decoding of the same GGUF next to ours, interleaved in one process (issue #11's llama.cpp row).

    pip install --target /tmp/xl --no-deps xllamacpp==2026.10.11549   # prebuilt llama.cpp (not in our deps)
    PYTHONPATH=/tmp/xl python scripts/llamacpp_row.py --model qwen2.5-coder-0.5b --new-tokens 256 --repeats 3 \
        --json results/bench/llamacpp-qwen0.5b-b1.json

Batch 1, the prompt of ``selfanchor bench speed`` (the same token ids for every method), greedy, every method forced
to NEW_TOKENS tokens (llama.cpp: ``ignore_eos``; ours: EOS suppressed). Each round runs our plain ``generate``, our
steered decoding (ω = 1.5, the question anchored) and llama.cpp (``xllamacpp``'s embedded server, the GGUF the
registry model was converted from, 2 threads); wall time per run including the prompt, medians over the rounds.
llama.cpp decodes the GGUF's own quantized weights; ours decode the dequantized weights in DTYPE.
"""

from __future__ import annotations

import argparse
import json
import statistics


def main(argv: list[str] | None = None) -> int:
    import torch

    from selfanchor_chains.bench.llamacpp import LlamaCppDecode
    from selfanchor_chains.bench.speed import SpeedBench, build_prompts
    from selfanchor_chains.models.cache import resolve_gguf
    from selfanchor_chains.models.loading import load_model_and_tokenizer

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--quantization", choices=("int8", "int4"), default=None, help="ours: weight-only")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model, dtype=args.dtype, quantization=args.quantization)
    bench = SpeedBench(model, tokenizer, build_prompts(tokenizer, 1), args.new_tokens, omega=1.5)
    gguf = resolve_gguf(args.model)
    bench.llamacpp_decode = LlamaCppDecode(gguf, bench.prompts[0].ids, args.new_tokens, args.threads)

    bench.warm_up()
    times: dict[str, list[float]] = {"plain": [], "ours": [], "llamacpp": []}
    for round_ in range(args.repeats):
        for method, run in (("plain", bench.plain), ("ours", bench.ours), ("llamacpp", bench.llamacpp)):
            times[method].append(run())
            print(f"round {round_ + 1}/{args.repeats} {method:>8}: {times[method][-1]:7.2f} s", flush=True)
    medians = {m: statistics.median(t) for m, t in times.items()}
    result = {
        "model": args.model,
        "dtype": args.dtype,
        "quantization": args.quantization,
        "gguf": str(gguf),
        "batch": 1,
        "new_tokens": args.new_tokens,
        "threads": args.threads,
        "times_s": times,
        "median_s": medians,
        "tokens_produced": bench.produced,
        "tokens_per_s": {m: bench.produced[m] / medians[m] for m in medians},
        "steered_over_plain": medians["ours"] / medians["plain"],
        "steered_over_llamacpp_tokens_per_s": medians["llamacpp"] / medians["ours"],
    }
    print(json.dumps({k: result[k] for k in ("median_s", "tokens_per_s", "steered_over_plain")}, indent=1))
    print(f"steered tokens/s over llama.cpp's: {result['steered_over_llamacpp_tokens_per_s']:.3f} (target >= 0.5)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
