"""``selfanchor eval`` and ``selfanchor report``: registered on the main parser by :func:`add_eval_commands`."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from ..eval.runner import METHOD_NAMES, MethodSpec, parse_benches, parse_methods
from .args import non_negative_int_arg as _non_negative
from .args import positive_int_arg as _positive

__all__ = ["add_eval_commands", "cmd_eval", "cmd_report", "default_out_dir"]


def _add_ray_options(ev: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]``, ``--workers``, ``--threads-per-worker``: the items fanned out to Ray workers."""
    ev.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="fan the items out to Ray workers (pip install 'selfanchor-chains[ray]'); without ADDRESS a local "
        "Ray instance is started, with one (e.g. ray://host:10001, auto) a running cluster is joined",
    )
    ev.add_argument("--workers", type=_positive, default=2, help="with --ray: workers, each loading the model once")
    ev.add_argument("--threads-per-worker", type=_positive, default=1, help="with --ray: torch threads per worker")


def _benches_arg(value: str) -> list[str]:
    try:
        return parse_benches(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _methods_arg(value: str) -> list[MethodSpec]:
    try:
        return parse_methods(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def default_out_dir(model: str, dtype: str, quantization: str | None = None) -> Path:
    """``evals/<model>-<dtype>[-<quantization>]``: one folder per model, since a folder only holds results of one model.

    ``dtype`` is the concrete dtype (``"auto"`` resolved), so a folder made with ``--dtype bfloat16`` is found again.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_.") or "model"
    return Path("evals") / (f"{slug}-{dtype}" + (f"-{quantization}" if quantization else ""))


def add_eval_commands(subparsers: Any) -> None:
    """Register the ``eval`` and ``report`` subcommands on the main parser's subparsers."""
    from .args import add_example_options, add_weights_arguments

    ev = subparsers.add_parser(
        "eval",
        help="evaluate the methods on benchmarks (resumable)",
        description=(
            "Run the methods on the benchmarks, batch by batch (every method on a batch before the next one), "
            "appending per-item results to OUT/<bench>/<method>.jsonl. Re-running the same command resumes: "
            "items already there are skipped."
        ),
    )
    ev.add_argument(
        "benches",
        type=_benches_arg,
        metavar="BENCH[,BENCH...]",
        help="gsm8k, aqua, math500, strategyqa, bbh (all tasks) or bbh:<task>, t4d",
    )
    ev.add_argument(
        "--methods",
        type=_methods_arg,
        default=[MethodSpec(m) for m in METHOD_NAMES],
        metavar="M[:N],...",
        help=f"methods to run, {','.join(METHOD_NAMES)} (default: all); method:N caps it at N items per benchmark",
    )
    ev.add_argument(
        "--model",
        default=None,
        help="registry name, local path or hub id (default: $SELFANCHOR_MODEL, else the solve default)",
    )
    add_weights_arguments(ev)
    ev.add_argument("--limit", type=_positive, default=None, help="at most N problems per benchmark")
    ev.add_argument("--data-dir", default=None, help="benchmark data folder (default: $SELFANCHOR_DATA_DIR, ...)")
    ev.add_argument("--split", default="dev")
    ev.add_argument("--out", default=None, help="output folder (default: evals/<model>-<dtype>)")
    ev.add_argument("--batch", type=_positive, default=8, help="problems decoded together per method")
    ev.add_argument(
        "--continuous",
        action="store_true",
        help="continuous batching: a finished problem's place in the batch goes to the next one at once",
    )
    ev.add_argument("--max-new-tokens", type=_positive, default=512)
    ev.add_argument(
        "--trace-tokens",
        action="store_true",
        help="keep each generated token's steering trace in the records (the report's pages shade the tokens)",
    )
    add_example_options(ev)
    _add_ray_options(ev)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    ev.set_defaults(func=cmd_eval)

    rep = subparsers.add_parser(
        "report",
        help="accuracy table, paired tests and charts of an eval folder",
        description=(
            "Print the accuracy table (Wilson intervals), the paired differences of the reference method against "
            "each baseline (bootstrap interval, exact McNemar p), speed and failure modes; write OUT/report.md, "
            "OUT/report.json, OUT/accuracy.png and OUT/tokens.png."
        ),
    )
    rep.add_argument("out", help="the eval output folder")
    rep.add_argument("--reference", default="self-anchor", help="method compared against the others")
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    rep.add_argument("--resamples", type=_positive, default=10_000, help="bootstrap resamples")
    rep.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG charts")
    rep.add_argument(
        "--pages",
        type=_non_negative,
        default=5,
        help="per benchmark, a page for up to this many items where the methods disagree (OUT/maps/); 0: none",
    )
    rep.set_defaults(func=cmd_report)


def _nothing_to_solve(method: str, bench: str) -> Any:
    raise AssertionError(f"no chain should be needed: {method} on {bench} is complete")


def _error(message: str) -> int:
    print(f"selfanchor: error: {message}", file=sys.stderr)
    return 2


def _record_dtype_choice(out: Path, choice: dict[str, Any], ran: Any) -> None:
    """Add how the dtype was chosen to ``run.json`` (after the run released the folder's lock)."""
    from ..eval.store import update_run_info

    if ran and out.is_dir():
        update_run_info(out, dtype_choice=choice)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``selfanchor eval``; returns the exit code (0, 2 on bad input, 130 when interrupted)."""
    from ..eval.datasets import DatasetError, load_problems
    from ..eval.method_specs import WorkedExampleError
    from ..eval.prompted import SteeringRequiredError
    from ..eval.runner import pending_items, run_eval
    from ..eval.store import IncompatibleRunError, ResultsFileError, RunLockedError, check_compatible, read_run_info

    if args.worked_example and any(spec.partition(":")[0] == "conflictqa" for spec in args.benches):
        return _error("--worked-example: conflictqa's methods answer from their passages and have no worked example")
    if args.model is None:
        from ..models.registry import DEFAULT_MODEL

        args.model = os.environ.get("SELFANCHOR_MODEL", DEFAULT_MODEL)
    from ..models import model_tag
    from ..models.quantization import check_quantization, resolve_weights

    # "auto" resolved before it names anything.
    choice, quantized = resolve_weights(args.dtype, getattr(args, "quantization", None), batch=args.batch)
    dtype, quantization = choice.dtype, quantized.quantization
    try:
        check_quantization(quantization, dtype=dtype)
    except (ValueError, ImportError) as exc:
        return _error(str(exc))
    out = Path(args.out) if args.out else default_out_dir(args.model, dtype, quantization)
    model_id = model_tag(args.model, dtype, quantization)  # what SteeredHFLLM.from_model_id records as its identity
    # Loading a model takes a while: find bad data or an incompatible folder first.
    try:
        for spec in args.benches:
            load_problems(spec, data_dir=args.data_dir, split=args.split, limit=args.limit)
        current = {"model": model_id, "dtype": dtype, "split": args.split, "max_new_tokens": args.max_new_tokens}
        check_compatible(read_run_info(out), current, out)
        remaining = pending_items(
            args.benches, args.methods, out, limit=args.limit, data_dir=args.data_dir, split=args.split
        )
    except (DatasetError, IncompatibleRunError, ResultsFileError) as exc:
        return _error(str(exc))

    command = "selfanchor " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        if args.ray is not None and remaining:
            summary = _run_on_ray(args, dtype, quantization, out, command)
        else:
            reason = f"{choice.reason}; {quantized.reason}"
            source = _load_source(args, dtype, quantization, reason) if remaining else _nothing_to_solve
            summary = run_eval(
                args.benches,
                args.methods,
                source,
                out,
                **_items(args),
                max_new_tokens=args.max_new_tokens,
                seed=args.seed,
                model_name=model_id,
                dtype=dtype,
                progress=args.progress,
                command=command,
                continuous=args.continuous,
                trace_tokens=args.trace_tokens,
                worked_example=args.worked_example,
            )
    except KeyboardInterrupt:
        _record_dtype_choice(out, {**choice.as_dict(), **quantized.as_dict()}, remaining)
        print(f"\ninterrupted: results so far are in {out}; run the same command again to resume", file=sys.stderr)
        return 130
    except (
        DatasetError,
        IncompatibleRunError,
        SteeringRequiredError,
        RunLockedError,
        ResultsFileError,
        WorkedExampleError,
    ) as exc:
        return _error(str(exc))
    _record_dtype_choice(out, {**choice.as_dict(), **quantized.as_dict()}, remaining)
    _print_summary(summary, out)
    return 0


def _items(args: argparse.Namespace) -> dict[str, Any]:
    """Which items an evaluation runs, in batches of how many (the same for a local and a Ray run)."""
    return {"limit": args.limit, "data_dir": args.data_dir, "split": args.split, "batch_size": args.batch}


def _run_on_ray(args: argparse.Namespace, dtype: str, quantization: str | None, out: Path, command: str) -> Any:
    """``--ray``: the items fanned out to Ray workers that each load the model once."""
    from ..eval.distributed import WorkerSpec, run_eval_ray

    worker = WorkerSpec(
        args.model,
        dtype,
        quantization,
        threads=args.threads_per_worker,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        worked_example=args.worked_example,
    )
    address = None if args.ray == "local" else args.ray
    result = run_eval_ray(
        args.benches,
        args.methods,
        worker,
        out,
        address=address,
        workers=args.workers,
        command=command,
        **_items(args),
    )
    print(
        f"[ray: {result['shards']} shards, {result['items']} items, {result['wall_seconds']:.1f} s wall, "
        f"overhead {result['overhead_seconds_per_item']:.3f} s per item]",
        file=sys.stderr,
    )
    return result["summary"]


def _load_source(args: argparse.Namespace, dtype: str, quantization: str | None, reason: str) -> Any:
    """The steered LLM the evaluation decodes with, seeded (loaded only when items are left to solve)."""
    import random

    import torch

    from ..langchain.llm import SteeredHFLLM

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    weights = f"{dtype} + {quantization} weights" if quantization else dtype
    print(f"[dtype {weights}: {reason}]", file=sys.stderr)
    return SteeredHFLLM.from_model_id(args.model, dtype=dtype, quantization=quantization, seed=args.seed)


def _print_summary(summary: dict[str, dict[str, dict[str, Any]]], out: Path) -> None:
    print(f"{'benchmark':<12} {'method':<16} {'n':>6} {'new':>6} {'accuracy':>9}")
    for bench, by_method in summary.items():
        for method, row in by_method.items():
            acc = "–" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}%"
            print(f"{bench:<12} {method:<16} {row['n']:>6} {row['new']:>6} {acc:>9}")
    print(f"[results in {out}; tables and charts: selfanchor report {shlex.quote(str(out))}]", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    """Run ``selfanchor report``; returns the exit code (0, or 2 when the folder holds no results)."""
    from ..eval.report import build_report, write_report
    from ..eval.store import ResultsFileError

    out = Path(args.out)
    if not out.is_dir():
        return _error(f"{out} is not a directory")
    try:
        report = build_report(out, reference=args.reference, seed=args.seed, resamples=args.resamples)
    except ResultsFileError as exc:
        return _error(str(exc))
    if not report["rows"]:
        return _error(f"no results under {out} (expected {out}/<bench>/<method>.jsonl)")
    plots = args.plots
    if plots:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            print("[matplotlib is not installed (pip install matplotlib): skipping the charts]", file=sys.stderr)
            plots = False
    written = write_report(out, report, plots=plots, pages=args.pages)
    print(written["markdown"].read_text(encoding="utf-8"))
    print("[wrote " + ", ".join(str(p) for p in written.values()) + "]", file=sys.stderr)
    return 0
