"""The ``selfanchor`` command line: argument parsing only; the commands live beside it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..models.noise import DEBUG_ENV
from ..models.registry import DEFAULT_MODEL
from ..reasoning.methods import METHODS
from . import bench_commands, commands
from .args import (
    add_example_options,
    add_weights_arguments,
    bench_arg,
    methods_list_arg,
    omega_arg,
    positive_int_arg,
    temperature_arg,
    text_arg,
    top_p_arg,
    variants_arg,
)
from .eval_commands import add_eval_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfanchor", description="Self-Anchor steered reasoning on local models.")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error, and third-party messages while loading a model (torchao, torch)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_solve(sub)
    models = sub.add_parser("models", help="list the offline model registry")
    models.set_defaults(func=commands.cmd_models)
    _add_bench(sub)
    add_eval_commands(sub)
    return parser


def _add_generate(sub: argparse._SubParsersAction) -> None:
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
    gen.set_defaults(func=commands.cmd_generate)


def _add_solve(sub: argparse._SubParsersAction) -> None:
    solve = sub.add_parser("solve", help="solve a problem with Self-Anchor (or a baseline), streaming the steps")
    solve.add_argument("question", type=text_arg)
    solve.add_argument("--method", default="self-anchor", choices=METHODS)
    solve.add_argument("--model", default=os.environ.get("SELFANCHOR_MODEL", DEFAULT_MODEL))
    add_weights_arguments(solve)
    solve.add_argument(
        "--bench", type=bench_arg, default="gsm8k", help="answer format/extractor (gsm8k, aqua, math500, ...)"
    )
    solve.add_argument("--max-new-tokens", type=positive_int_arg, default=512)
    add_example_options(solve)
    solve.add_argument(
        "--compare",
        type=methods_list_arg,
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
    solve.set_defaults(func=commands.cmd_solve)


def _bench_parser(bench_sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A ``bench`` subcommand with the options every benchmark has: the model, its weights, ``--json``."""
    parser = bench_sub.add_parser(name, help=help)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    add_weights_arguments(parser)
    parser.add_argument("--json", default=None, help="write the result here")
    return parser


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    speed = _bench_parser(
        bench_sub, "speed", help="steered decoding vs plain generate, SPA, CFG and llama.cpp on the same GGUF"
    )
    speed.add_argument("--new-tokens", type=int, default=256)
    speed.add_argument("--batch", type=int, default=1)
    speed.add_argument("--omega", type=float, default=1.5)
    speed.add_argument("--repeats", type=int, default=3)
    speed.add_argument(
        "--methods",
        default="plain,ours,spa,cfg,llamacpp",
        help="methods to time; spa and llamacpp run where installed (llamacpp: batch 1, registry models)",
    )
    speed.add_argument(
        "--variants",
        type=variants_arg,
        default=None,
        metavar="V[,V...]",
        help="time several variants of the model side by side, interleaved: dtypes (bfloat16, float32, ...) and "
        "quantizations (int8, int4; bfloat16 activations); overrides --dtype/--quantization",
    )
    speed.set_defaults(func=bench_commands.cmd_bench_speed)

    overhead = _bench_parser(bench_sub, "llm-overhead", help="SteeredHFLLM.invoke over the bare engine")
    overhead.add_argument("--new-tokens", type=int, default=256)
    overhead.add_argument("--repeats", type=int, default=3)
    overhead.set_defaults(func=bench_commands.cmd_bench_overhead)

    cost = _bench_parser(bench_sub, "solve-cost", help="Self-Anchor solve over plain CoT decoding, same tokens")
    cost.add_argument("--problems", type=int, default=10)
    cost.add_argument("--max-new-tokens", type=int, default=512)
    cost.add_argument("--data-dir", default=None)
    cost.set_defaults(func=bench_commands.cmd_bench_solve_cost)

    throughput = _bench_parser(
        bench_sub,
        "throughput",
        help="problems/min of reasoning methods on the same problems, batched as `eval` runs them",
    )
    throughput.add_argument("--bench-name", default="gsm8k", help="benchmark to draw problems from")
    throughput.add_argument("--methods", default="self-anchor,cot", help="the last one is the reference")
    throughput.add_argument("--problems", type=int, default=16)
    throughput.add_argument("--batch", type=int, default=8)
    throughput.add_argument("--max-new-tokens", type=int, default=512)
    throughput.add_argument("--split", default="dev")
    throughput.add_argument("--data-dir", default=None)
    throughput.add_argument(
        "--modes",
        default="static",
        help="batching modes to time side by side: static (eval's default), continuous, or static,continuous",
    )
    add_example_options(throughput)
    throughput.set_defaults(func=bench_commands.cmd_bench_throughput)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # read where models load (models.noise), in this process and its workers
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
