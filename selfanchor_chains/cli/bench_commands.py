"""``selfanchor bench``: speed, LLM overhead, solve cost and throughput, with the machine they ran on."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .args import QUANTIZATIONS
from .commands import load_model


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _finish(result: dict[str, Any], args: argparse.Namespace, loaded: dict[str, Any] | None = None) -> int:
    """Record what ran where (model, weights, threads, CPU, command) and write the JSON if asked."""
    from ..bench.speed import write_json

    result.update(loaded or {}, model=args.model, threads=_threads(), cpu=_cpu_description())
    result["command"] = "selfanchor " + " ".join(sys.argv[1:])
    if args.json:
        write_json(result, args.json)
    return 0


def _speed_settings(args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    return {
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "omega": args.omega,
        "repeats": args.repeats,
        "methods": methods,
    }


def _run_on_model(args: argparse.Namespace, bench: Any, **settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the model ``args`` name and run ``bench(model, tokenizer, **settings)`` on it; (result, load info)."""
    model, tokenizer, loaded = load_model(args)
    return bench(model, tokenizer, log=_log, **settings), loaded


def _bench_speed_variants(args: argparse.Namespace, methods: list[str]) -> int:
    from ..bench.speed import format_variants_table, run_speed_variants

    models: dict[str, Any] = {}
    loaded: dict[str, dict[str, Any]] = {}
    tokenizer: Any = None
    for variant in args.variants:
        quantized = variant in QUANTIZATIONS
        spec = argparse.Namespace(
            model=args.model, dtype="auto" if quantized else variant, quantization=variant if quantized else None
        )
        model, tokenizer, info = load_model(spec)
        label = (info["dtype"] + "+" + variant) if quantized else info["dtype"]
        models[label], loaded[label] = model, info
    result = run_speed_variants(models, tokenizer, log=_log, **_speed_settings(args, methods))
    for label, info in loaded.items():
        result["variants"][label].update(info)
    print(format_variants_table({**result, "model": args.model}))
    return _finish(result, args)


def _cpu_description() -> dict[str, Any]:
    """The CPU's model name and the flags that decide the dtype, for benchmark records."""
    import platform

    from ..models.dtypes import cpu_native_bf16_features, proc_cpu_flags

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    flags = proc_cpu_flags()
    shown = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))
    return {"model_name": name, "cores": os.cpu_count(), "flags": shown, "native_bf16": cpu_native_bf16_features()}


def cmd_bench_speed(args: argparse.Namespace) -> int:
    from ..bench.speed import format_table, run_speed_bench

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.variants:
        return _bench_speed_variants(args, methods)
    gguf = _registry_gguf(args.model) if "llamacpp" in methods else None
    result, loaded = _run_on_model(args, run_speed_bench, **_speed_settings(args, methods), gguf=gguf)
    print(format_table({**result, **loaded, "model": args.model}))
    return _finish(result, args, loaded)


def _registry_gguf(model: str) -> Any:
    """The GGUF file a registry model was converted from (llama.cpp's row decodes it), or None."""
    from ..models.cache import resolve_gguf
    from ..models.registry import REGISTRY, ModelRegistryError

    if model not in REGISTRY:
        return None
    try:
        return resolve_gguf(model)
    except ModelRegistryError as exc:
        _log(f"no GGUF for {model} ({exc}): no llama.cpp row")
        return None


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from ..bench.speed import run_overhead_bench

    result, loaded = _run_on_model(args, run_overhead_bench, new_tokens=args.new_tokens, repeats=args.repeats)
    print(f"invoke_over_engine = {result['invoke_over_engine']:.3f}  (medians: {result['median_s']})")
    return _finish(result, args, loaded)


def cmd_bench_solve_cost(args: argparse.Namespace) -> int:
    from ..bench.speed import run_solve_cost_bench

    settings = {"problems": args.problems, "max_new_tokens": args.max_new_tokens, "data_dir": args.data_dir}
    result, loaded = _run_on_model(args, run_solve_cost_bench, **settings)
    print(
        f"median self-anchor / plain CoT time (same tokens) = {result['median_ratio']:.3f}; "
        f"median prefill tokens per solve = {result['median_prefill_tokens']} "
        f"(prompt {result['median_prompt_tokens']}, re-sync {result['median_resync_tokens']})"
    )
    return _finish(result, args, loaded)


def cmd_bench_throughput(args: argparse.Namespace) -> int:
    from ..bench.speed import run_throughput_bench
    from ..langchain.llm import SteeredHFLLM

    model, tokenizer, loaded = load_model(args)
    result = run_throughput_bench(
        SteeredHFLLM(model=model, tokenizer=tokenizer),
        bench=args.bench_name,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        problems=args.problems,
        batch=args.batch,
        max_new_tokens=args.max_new_tokens,
        split=args.split,
        data_dir=args.data_dir,
        modes=[m.strip() for m in args.modes.split(",") if m.strip()],
        log=_log,
        worked_example=args.worked_example,
    )
    base = result["problems_per_min"]
    for method, per_min in base.items():
        print(f"{method:>14}: {per_min:6.2f} problems/min, {result['tokens_per_s'][method]:6.2f} tokens/s")
    slowdown_key = next(k for k in result if k.startswith("slowdown_vs_"))
    print(slowdown_key + ": " + ", ".join(f"{m} {v:.3f}" for m, v in result[slowdown_key].items()))
    if "continuous_speedup" in result:
        for method, speedup in result["continuous_speedup"].items():
            differ = result["answers_differ"][method]
            print(f"{method:>14}: continuous / static = {speedup:.3f}, answers that differ: {differ}")
    return _finish(result, args, loaded)


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())
