"""The ``selfanchor`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from .argtypes import bench_arg, omega_arg, positive_int_arg, temperature_arg, text_arg, top_p_arg

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
DTYPES = ("auto", "bfloat16", "float32", "float16")
"""``--dtype`` choices; ``auto`` (the default) is bfloat16 where the CPU computes it natively, else float32."""
QUANTIZATIONS = ("int8", "int4")
"""``--quantization`` choices (weight-only, torchao; the default is none)."""


def _methods_list(value: str) -> list[str]:
    methods = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown method(s) {unknown or value!r}; choose from {', '.join(METHODS)}")
    return methods


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` and ``--quantization``, the same on every command that loads a model."""
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="weights dtype; auto (default): bfloat16 where the CPU computes it natively, else float32",
    )
    parser.add_argument(
        "--quantization",
        default=None,
        choices=QUANTIZATIONS,
        help="weight-only int8/int4 linear layers through torchao (pip install 'selfanchor-chains[quant]'); "
        "computes in bfloat16",
    )


def _load(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """Load ``args.model`` in ``args.dtype`` ("auto" resolved first) and say on stderr what was chosen and why.

    Returns:
        ``(model, tokenizer, info)``; ``info`` holds ``dtype`` (concrete), ``dtype_choice`` (requested, chosen,
        reason) and ``quantization``, for the JSON a benchmark writes.
    """
    from .models import load_model_and_tokenizer, resolve_dtype

    quantization = getattr(args, "quantization", None)
    choice = resolve_dtype(args.dtype, quantization=quantization)
    start = time.perf_counter()
    try:
        model, tokenizer = load_model_and_tokenizer(args.model, dtype=choice.dtype, quantization=quantization)
    except (ValueError, ImportError) as exc:  # a bad combination or a missing torchao, said before any loading
        raise SystemExit(f"selfanchor: error: {exc}") from None
    weights = choice.dtype + (f" + {quantization} weights" if quantization else "")
    print(
        f"[loaded {args.model} ({weights}; {choice.reason}) in {time.perf_counter() - start:.1f} s]",
        file=sys.stderr,
    )
    return model, tokenizer, {"dtype": choice.dtype, "dtype_choice": choice.as_dict(), "quantization": quantization}


def cmd_generate(args: argparse.Namespace) -> int:
    from .anchors import parse_anchor_markup, resolve_anchor_strings
    from .engine import RowRequest, SamplingConfig, SteeredDecoder
    from .inputs import prepare_prompt

    # Markup and --anchor are checked on the text before the model is loaded.
    clean, _spans = parse_anchor_markup(args.prompt)
    resolve_anchor_strings(clean, args.anchor or [])
    model, tokenizer, _ = _load(args)
    prepared = prepare_prompt(tokenizer, args.prompt, anchors=args.anchor or (), chat=not args.raw)
    decoder = SteeredDecoder(model, tokenizer)
    sampling = SamplingConfig(
        do_sample=args.temperature > 0, temperature=args.temperature or 1.0, top_p=args.top_p, seed=args.seed
    )
    session = decoder.start(
        [RowRequest(prepared.ids, prepared.token_spans, args.omega)],
        max_new_tokens=args.max_new_tokens,
        sampling=sampling,
        stop=args.stop or (),
    )
    if prepared.char_spans:
        shown = " | ".join(t.replace("\n", " ")[:60] for t in prepared.anchored_texts())
        print(f"[anchors: {shown}] [ω = {args.omega}]", file=sys.stderr)
    start = time.perf_counter()
    for events in session:
        if args.stream:
            for event in events:
                print(event.text, end="", flush=True)
    elapsed = time.perf_counter() - start
    result = session.results()[0]
    if not args.stream:
        print(result.text, end="")
    print()
    n = len(result.token_ids)
    print(
        f"[{n} tokens in {elapsed:.1f} s ({n / elapsed:.1f} tok/s), finish={result.finish_reason}, "
        f"confidence={result.mean_confidence:.3f}]",
        file=sys.stderr,
    )
    return 0


METHODS = ("self-anchor", "cot", "ps", "spa", "structure-only", "constant-omega")


def make_chain(method: str, llm: Any, **kwargs: Any) -> Any:
    """The reasoning runnable for a method name (the names ``selfanchor eval`` uses)."""
    from .chains import CoTChain, PlanAndSolveChain, SelfAnchorChain, SPAChain, constant_omega, structure_only

    builders = {
        "self-anchor": lambda: SelfAnchorChain(llm=llm, **kwargs),
        "cot": lambda: CoTChain(llm=llm, **kwargs),
        "ps": lambda: PlanAndSolveChain(llm=llm, **kwargs),
        "spa": lambda: SPAChain(llm=llm, **kwargs),
        "structure-only": lambda: structure_only(llm, **kwargs),
        "constant-omega": lambda: constant_omega(llm, **kwargs),
    }
    if method not in builders:
        raise SystemExit(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return builders[method]()


def cmd_solve(args: argparse.Namespace) -> int:
    from .llms import SteeredHFLLM

    model, tokenizer, _ = _load(args)
    llm = SteeredHFLLM(model=model, tokenizer=tokenizer, model_id=args.model)
    chain = make_chain(
        args.method, llm, max_new_tokens=args.max_new_tokens, bench=args.bench, trace_tokens=args.html is not None
    )
    from .solve_view import SolveView, show_comparison

    view = SolveView(args.method, plain=True if args.plain else None)
    output = view.run(chain.stream(args.question))
    if args.compare:
        # The other methods on the same question and model, one after another; then all side by side.
        solved = [(args.method, output, time.perf_counter() - view.started)]
        for method in args.compare:
            other = make_chain(method, llm, max_new_tokens=args.max_new_tokens, bench=args.bench)
            started = time.perf_counter()
            solved.append((method, other.invoke(args.question), time.perf_counter() - started))
        show_comparison(solved, plain=view.plain)
    if args.html:
        from pathlib import Path

        from .steering_view import render_steering_html

        Path(args.html).write_text(render_steering_html(args.question, output, method=args.method), encoding="utf-8")
        print(f"[steering map: {args.html}]", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models

    rows = list_models()
    print(f"{'name':<22} {'installed':<10} {'cached':<8} install")
    for row in rows:
        print(
            f"{row['name']:<22} {'yes' if row['installed'] else 'no':<10} {'yes' if row['cached'] else 'no':<8} "
            f"{row['pip_command']}"
        )
    return 0


def _parse_variants(value: str) -> list[str]:
    """``--variants``: comma-separated dtypes (``bfloat16``, ``float32``, ...) and quantizations (int8, int4)."""
    variants = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in variants if v not in (*DTYPES, *QUANTIZATIONS)]
    if unknown or not variants:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; use {', '.join((*DTYPES, *QUANTIZATIONS))}"
        )
    return variants


def _speed_settings(args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    return {
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "omega": args.omega,
        "repeats": args.repeats,
        "methods": methods,
        "log": lambda line: print(line, file=sys.stderr, flush=True),
    }


def _bench_speed_variants(args: argparse.Namespace, methods: list[str]) -> int:
    from .bench import format_variants_table, run_speed_variants, write_json

    models: dict[str, Any] = {}
    loaded: dict[str, dict[str, Any]] = {}
    tokenizer: Any = None
    for variant in args.variants:
        quantized = variant in QUANTIZATIONS
        spec = argparse.Namespace(
            model=args.model, dtype="auto" if quantized else variant, quantization=variant if quantized else None
        )
        model, tokenizer, info = _load(spec)
        label = (info["dtype"] + "+" + variant) if quantized else info["dtype"]
        models[label], loaded[label] = model, info
    result = run_speed_variants(models, tokenizer, **_speed_settings(args, methods))
    for label, info in loaded.items():
        result["variants"][label].update(info)
    result.update(model=args.model, threads=_threads(), cpu=_cpu_description())
    result["command"] = "selfanchor " + " ".join(sys.argv[1:])
    print(format_variants_table(result))
    if args.json:
        write_json(result, args.json)
    return 0


def _cpu_description() -> dict[str, Any]:
    """The CPU's model name and the flags that decide the dtype, for benchmark records."""
    import platform

    from .models.dtypes import cpu_native_bf16_features, proc_cpu_flags

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
    from .bench import format_table, run_speed_bench, write_json

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.variants:
        return _bench_speed_variants(args, methods)
    model, tokenizer, loaded = _load(args)
    result = run_speed_bench(model, tokenizer, **_speed_settings(args, methods))
    result["model"] = args.model
    result.update(loaded)
    result["threads"] = _threads()
    result["cpu"] = _cpu_description()
    result["command"] = "selfanchor " + " ".join(sys.argv[1:])
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    return 0


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from .bench import run_overhead_bench, write_json

    model, tokenizer, loaded = _load(args)
    result = run_overhead_bench(
        model,
        tokenizer,
        new_tokens=args.new_tokens,
        repeats=args.repeats,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    result.update(loaded, model=args.model, command="selfanchor " + " ".join(sys.argv[1:]))
    print(f"invoke_over_engine = {result['invoke_over_engine']:.3f}  (medians: {result['median_s']})")
    if args.json:
        write_json(result, args.json)
    return 0


def cmd_bench_solve_cost(args: argparse.Namespace) -> int:
    from .bench import run_solve_cost_bench, write_json

    model, tokenizer, loaded = _load(args)
    result = run_solve_cost_bench(
        model,
        tokenizer,
        problems=args.problems,
        max_new_tokens=args.max_new_tokens,
        data_dir=args.data_dir,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    result.update(loaded, model=args.model, command="selfanchor " + " ".join(sys.argv[1:]))
    print(
        f"median self-anchor / plain CoT time (same tokens) = {result['median_ratio']:.3f}; "
        f"median prefill tokens per solve = {result['median_prefill_tokens']} "
        f"(prompt {result['median_prompt_tokens']}, re-sync {result['median_resync_tokens']})"
    )
    if args.json:
        write_json(result, args.json)
    return 0


def cmd_bench_throughput(args: argparse.Namespace) -> int:
    from .bench import run_throughput_bench, write_json
    from .llms import SteeredHFLLM

    model, tokenizer, loaded = _load(args)
    result = run_throughput_bench(
        SteeredHFLLM(model=model, tokenizer=tokenizer),
        bench=args.bench_name,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        problems=args.problems,
        batch=args.batch,
        max_new_tokens=args.max_new_tokens,
        split=args.split,
        data_dir=args.data_dir,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    result.update(loaded, model=args.model, threads=_threads(), command="selfanchor " + " ".join(sys.argv[1:]))
    base = result["problems_per_min"]
    for method, per_min in base.items():
        print(f"{method:>14}: {per_min:6.2f} problems/min, {result['tokens_per_s'][method]:6.2f} tokens/s")
    slowdown_key = next(k for k in result if k.startswith("slowdown_vs_"))
    print(slowdown_key + ": " + ", ".join(f"{m} {v:.3f}" for m, v in result[slowdown_key].items()))
    if args.json:
        write_json(result, args.json)
    return 0


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfanchor", description="Self-Anchor steered reasoning on local models.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="decode one prompt with anchored spans steered by ω")
    gen.add_argument("prompt", type=text_arg, help="the prompt; may contain <anchor>…</anchor> markup")
    gen.add_argument("--anchor", action="append", help="a substring of the prompt to anchor (repeatable)")
    gen.add_argument("--omega", type=omega_arg, default=1.5, help="steering strength (1 = plain decoding)")
    gen.add_argument("--model", default=os.environ.get("SELFANCHOR_MODEL", DEFAULT_MODEL))
    add_weights_arguments(gen)
    gen.add_argument("--max-new-tokens", type=positive_int_arg, default=256)
    gen.add_argument("--temperature", type=temperature_arg, default=0.0, help="0 = greedy")
    gen.add_argument("--top-p", type=top_p_arg, default=1.0)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stop", action="append", help="stop string (repeatable)")
    gen.add_argument("--raw", action="store_true", help="do not apply the chat template")
    gen.add_argument("--stream", action="store_true", help="print tokens as they are decoded")
    gen.set_defaults(func=cmd_generate)

    solve = sub.add_parser("solve", help="solve a problem with Self-Anchor (or a baseline), streaming the steps")
    solve.add_argument("question", type=text_arg)
    solve.add_argument("--method", default="self-anchor", choices=METHODS)
    solve.add_argument("--model", default=os.environ.get("SELFANCHOR_MODEL", DEFAULT_MODEL))
    add_weights_arguments(solve)
    solve.add_argument(
        "--bench", type=bench_arg, default="gsm8k", help="answer format/extractor (gsm8k, aqua, math500, ...)"
    )
    solve.add_argument("--max-new-tokens", type=positive_int_arg, default=512)
    solve.add_argument(
        "--compare",
        type=_methods_list,
        default=[],
        metavar="M1,M2",
        help="also solve with these methods (e.g. cot,structure-only) and show all side by side",
    )
    solve.add_argument(
        "--plain", action="store_true", help="print finished steps as plain text (the default when not a terminal)"
    )
    solve.add_argument(
        "--html", default=None, metavar="FILE", help="write a self-contained steering map of the solve (HTML)"
    )
    solve.set_defaults(func=cmd_solve)

    models = sub.add_parser("models", help="list the offline model registry")
    models.set_defaults(func=cmd_models)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    speed = bench_sub.add_parser("speed", help="steered decoding vs plain generate, SPA and CFG")
    speed.add_argument("--model", default=DEFAULT_MODEL)
    add_weights_arguments(speed)
    speed.add_argument("--new-tokens", type=int, default=256)
    speed.add_argument("--batch", type=int, default=1)
    speed.add_argument("--omega", type=float, default=1.5)
    speed.add_argument("--repeats", type=int, default=3)
    speed.add_argument("--methods", default="plain,ours,spa,cfg")
    speed.add_argument(
        "--variants",
        type=_parse_variants,
        default=None,
        metavar="V[,V...]",
        help="time several variants of the model side by side, interleaved: dtypes (bfloat16, float32, ...) and "
        "quantizations (int8, int4; bfloat16 activations); overrides --dtype/--quantization",
    )
    speed.add_argument("--json", default=None, help="write the result here")
    speed.set_defaults(func=cmd_bench_speed)

    overhead = bench_sub.add_parser("llm-overhead", help="SteeredHFLLM.invoke over the bare engine")
    overhead.add_argument("--model", default=DEFAULT_MODEL)
    add_weights_arguments(overhead)
    overhead.add_argument("--new-tokens", type=int, default=256)
    overhead.add_argument("--repeats", type=int, default=3)
    overhead.add_argument("--json", default=None)
    overhead.set_defaults(func=cmd_bench_overhead)

    cost = bench_sub.add_parser("solve-cost", help="Self-Anchor solve over plain CoT decoding, same tokens")
    cost.add_argument("--model", default=DEFAULT_MODEL)
    add_weights_arguments(cost)
    cost.add_argument("--problems", type=int, default=10)
    cost.add_argument("--max-new-tokens", type=int, default=512)
    cost.add_argument("--data-dir", default=None)
    cost.add_argument("--json", default=None)
    cost.set_defaults(func=cmd_bench_solve_cost)

    throughput = bench_sub.add_parser(
        "throughput", help="problems/min of reasoning methods on the same problems, batched as `eval` runs them"
    )
    throughput.add_argument("--model", default=DEFAULT_MODEL)
    add_weights_arguments(throughput)
    throughput.add_argument("--bench-name", default="gsm8k", help="benchmark to draw problems from")
    throughput.add_argument("--methods", default="self-anchor,cot", help="the last one is the reference")
    throughput.add_argument("--problems", type=int, default=16)
    throughput.add_argument("--batch", type=int, default=8)
    throughput.add_argument("--max-new-tokens", type=int, default=512)
    throughput.add_argument("--split", default="dev")
    throughput.add_argument("--data-dir", default=None)
    throughput.add_argument("--json", default=None)
    throughput.set_defaults(func=cmd_bench_throughput)

    from .eval.cli import add_eval_commands

    add_eval_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (ValueError, LookupError, OSError, TypeError, ImportError) as exc:
        # A user's mistake or a missing file: one line, not a traceback (--debug shows it).
        if getattr(args, "debug", False):
            raise
        print(f"selfanchor: error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
