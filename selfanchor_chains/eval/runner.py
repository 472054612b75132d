"""Resumable evaluation of the reasoning methods on the benchmarks.

For each benchmark the problems are cut into batches, and every batch is run by each method in turn before the
next batch starts: a run that is stopped part-way has compared all methods on the same items. Results go to
``OUT/<bench>/<method>.jsonl`` (see :mod:`selfanchor_chains.eval.store`); a re-run skips the ids already there."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .code_methods import CodeChain, code_fingerprint
from .fingerprints import is_language_model
from .method_specs import (
    CODE_METHOD_NAMES,
    CONFLICT_METHOD_NAMES,
    METHOD_NAMES,
    MethodSpec,
    _check_bench_methods,
    _check_source,
    _is_steered,
    _make_chain,
    _model_name,
    method_fingerprint,
    parse_benches,
    parse_methods,
)
from .records import _chain_input, make_record
from .store import (
    ResultsFile,
    check_compatible,
    check_fingerprints,
    read_records,
    read_run_info,
    run_lock,
    update_run_info,
    utc_now,
)

"""The method names of ``selfanchor eval`` (the registry's, :data:`selfanchor_chains.reasoning.methods.METHODS`)."""
"""What a results file keeps of each step: its kind, ω, confidence, length and the steering diagnostics."""
"""Reasoning-chain options whose non-default values are part of a method's fingerprint."""
"""The methods of the knowledge-conflict benchmark ``conflictqa`` (:mod:`selfanchor_chains.eval.conflict_methods`)."""
"""``factory(method, bench) -> runnable`` whose ``batch`` maps ``{"question", "task", "options"}`` dicts to the
reasoning chains' output dicts (``answer``, ``text``, ``steps``, ``finish_reason``, ``usage``, ``retried``)."""


# -- the run -----------------------------------------------------------------------------------------------------


class _Progress:
    """A tqdm bar over one benchmark's remaining (item, method) pairs, showing each method's running accuracy."""

    def __init__(self, bench: str, total: int, files: Mapping[str, ResultsFile], enabled: bool) -> None:
        self.files = files
        self.bar: Any = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=bench, unit="item", file=sys.stderr, dynamic_ncols=True)
            self.refresh()

    def refresh(self) -> None:
        if self.bar is None:
            return
        parts = [
            f"{name} {f.accuracy:.1%}/{f.n}" if f.accuracy is not None else f"{name} -"
            for name, f in self.files.items()
        ]
        self.bar.set_postfix_str(" ".join(parts), refresh=False)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.refresh()
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _batches(positions: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(positions), size):
        yield list(positions[start : start + size])


def run_eval(
    benches: str | Sequence[str],
    methods: str | Sequence[str | MethodSpec],
    llm_or_chain_factory: Any,
    out_dir: str | os.PathLike[str],
    *,
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "dev",
    batch_size: int = 8,
    max_new_tokens: int = 512,
    seed: int | None = None,
    model_name: str | None = None,
    dtype: str | None = None,
    progress: bool = True,
    command: str | None = None,
    continuous: bool = False,
    trace_tokens: bool = False,
    worked_example: bool | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Evaluate methods on benchmarks, resumably, appending per-item results under ``out_dir``.

    Each benchmark's problems are split into batches of ``batch_size``; each batch is run by every method before
    the next batch starts, so an interrupted run has compared the methods on the same items. Items already in
    ``OUT/<bench>/<method>.jsonl`` are skipped, so calling again with the same arguments resumes.

    Args:
        benches: Benchmark specs (``"gsm8k,bbh"`` or a list; ``bbh:<task>`` for one BBH task).
        methods: Method specs (``"self-anchor,cot,spa:100"`` or a list); ``name:N``: at most N items per benchmark.
        llm_or_chain_factory: A :class:`~selfanchor_chains.SteeredHFLLM` (all methods); any other LangChain
            LLM or chat model (``cot`` and ``ps`` only, via :func:`~selfanchor_chains.eval.make_prompted_chain`); or
            a factory ``(method, bench) -> runnable`` (see :data:`ChainFactory`).
        out_dir: Output folder.
        limit: At most this many problems per benchmark spec (BBH without a task: spread over the tasks).
        data_dir: Benchmark data folder (default: :func:`~selfanchor_chains.eval.datasets.default_data_dir`).
        split: Data split.
        batch_size: Items per batch (one batched decoding session per method and batch).
        max_new_tokens: Decoding budget of the steered chains (a factory or hosted LLM sets its own).
        seed: Recorded in ``run.json`` (set it on the LLM for sampling; decoding is greedy by default).
        model_name: Model name for ``run.json`` (default: the LLM's ``model_id`` / ``model_name``).
        dtype: The model's dtype, for ``run.json``.
        progress: Show a progress bar on stderr.
        command: The command line to record (default: ``run_eval(...)``).
        continuous: Continuous batching for the package's reasoning chains: each method streams a chunk of
            ``4 × batch_size`` items through ``batch_size`` decoding slots (a finished item's place goes to the
            next one at once) and its results are written as items finish; the methods take turns chunk by chunk.
        trace_tokens: Keep each generated token's steering trace in the records (``trace``; for the report's pages).
        worked_example: Every method shows its worked example (True) or none (False); None: as SelfAnchorChain.

    Returns:
        ``{bench: {method: {"n", "correct", "accuracy", "new"}}}`` over all results in the folder for the
        benchmarks and methods of this call (``new``: items solved by this call).

    Raises:
        ValueError: Unknown benchmark or method, a bad limit / batch size, or a worked example a chain lacks.
        SteeringRequiredError: A steered method with a plain LLM.
        IncompatibleRunError: ``out_dir`` holds results of another model, dtype, split or token budget, or of a
            method whose prompt or steering changed since (see :func:`method_fingerprint`).
        RunLockedError: Another evaluation is writing to ``out_dir``; DatasetError: the data cannot be read.
    """
    from .. import __version__
    from .datasets import load_problems

    bench_specs, method_specs = _checked_specs(benches, methods, llm_or_chain_factory, batch_size, limit)
    out = Path(out_dir)
    model = model_name or _model_name(llm_or_chain_factory)
    settings = _run_settings(split, max_new_tokens, batch_size, seed, limit, continuous, data_dir)
    entry = _command_entry(command, bench_specs, method_specs, settings)
    with run_lock(out):
        check_compatible(read_run_info(out), {**settings, "model": model, "dtype": dtype}, out)
        # Problems are loaded before anything is written, so a data error leaves the folder untouched.
        problem_sets = [(s, load_problems(s, data_dir=data_dir, split=split, limit=limit)) for s in bench_specs]
        decoding: dict[str, Any] = {"max_new_tokens": max_new_tokens, "worked_example": worked_example}
        binding = {**decoding, "trace_tokens": trace_tokens}
        chains, fingerprints = _bind_chains(problem_sets, method_specs, llm_or_chain_factory, out, **binding)
        info = {"model": model, "dtype": dtype, "package_version": __version__, "settings": settings}
        update_run_info(out, **info, fingerprints=fingerprints, command=entry)
        run = {**decoding, "batch_size": batch_size, "progress": progress}
        files = _run_recorded(problem_sets, method_specs, llm_or_chain_factory, out, chains, entry, continuous, run)
    return _summary(files)


def _run_recorded(
    problem_sets: Sequence[tuple[str, list[Any]]],
    method_specs: Sequence[MethodSpec],
    source: Any,
    out: Path,
    chains: dict[tuple[str, str], Any],
    entry: dict[str, Any],
    continuous: bool,
    run: Mapping[str, Any],
) -> dict[tuple[str, str], ResultsFile]:
    """Run every benchmark, recording in ``run.json`` how the run ended (completed, interrupted, failed)."""
    files: dict[tuple[str, str], ResultsFile] = {}
    with recorded(out, entry, files):
        for spec, problems in problem_sets:
            _run_bench(
                spec.partition(":")[0],
                problems,
                method_specs,
                source,
                out,
                files,
                chains,
                batch_size=run["batch_size"],
                max_new_tokens=run["max_new_tokens"],
                worked_example=run["worked_example"],
                progress=run["progress"],
                label=spec,
                continuous=continuous,
            )
    return files


@contextlib.contextmanager
def recorded(out: Path, entry: dict[str, Any], files: Mapping[tuple[str, str], ResultsFile]) -> Iterator[None]:
    """Record in ``run.json`` how the work inside ended (completed, interrupted, failed) and what it added."""
    try:
        yield
    except BaseException as exc:
        entry["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc!r}"[:500]
        raise
    else:
        entry["status"] = "completed"
    finally:
        entry["finished"] = utc_now()
        entry["new_items"] = sum(f.new for f in files.values())
        update_run_info(out, command=entry)


def _run_settings(
    split: str, max_new_tokens: int, batch_size: int, seed: int | None, limit: int | None, continuous: bool, data: Any
) -> dict[str, Any]:
    """What ``run.json`` records of a run's settings (a later run must agree on those that change answers)."""
    return {
        "split": split,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "seed": seed,
        "limit": limit,
        "continuous": continuous,
        "data_dir": str(data) if data is not None else None,
    }


def _checked_specs(
    benches: str | Sequence[str], methods: Any, source: Any, batch_size: int, limit: int | None
) -> tuple[list[str], list[MethodSpec]]:
    """The benchmark and method specs, checked against each other and the LLM before any work."""
    bench_specs = parse_benches(benches)
    known = METHOD_NAMES + CONFLICT_METHOD_NAMES + CODE_METHOD_NAMES if is_language_model(source) else None
    method_specs = parse_methods(methods, known=known)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    _check_source(source, method_specs)
    _check_bench_methods(bench_specs, method_specs, factory=not is_language_model(source))
    return bench_specs, method_specs


def _summary(files: Mapping[tuple[str, str], ResultsFile]) -> dict[str, dict[str, dict[str, Any]]]:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for (bench, method), results in files.items():
        summary.setdefault(bench, {})[method] = {
            "n": results.n,
            "correct": results.correct,
            "accuracy": results.accuracy,
            "new": results.new,
        }
    return summary


def _command_entry(
    command: str | None, bench_specs: Sequence[str], method_specs: Sequence[MethodSpec], settings: dict[str, Any]
) -> dict[str, Any]:
    """The run's entry in ``run.json``'s command history (completed when the run ends)."""
    from .. import __version__

    return {
        "id": uuid.uuid4().hex[:12],
        "command": command or f"run_eval({','.join(bench_specs)!r}, {','.join(map(str, method_specs))!r}, ...)",
        "benches": list(bench_specs),
        "methods": [str(m) for m in method_specs],
        "settings": settings,
        "package_version": __version__,
        "started": utc_now(),
        "finished": None,
        "status": "running",
        "new_items": 0,
    }


def _bind_chains(
    problem_sets: Sequence[tuple[str, list[Any]]],
    method_specs: Sequence[MethodSpec],
    source: Any,
    out: Path,
    max_new_tokens: int,
    trace_tokens: bool = False,
    worked_example: bool | None = None,
) -> tuple[dict[tuple[str, str], Any], dict[str, str | None]]:
    """The chains of methods with work left, and their fingerprints, built before anything runs: a method whose
    prompt or steering changed since its results were written is refused (only results on disk bind a method to
    its old configuration: a moved-away file frees it).

    Raises:
        IncompatibleRunError: A method's configuration differs from the one its stored results were made with.
    """
    chains: dict[tuple[str, str], Any] = {}
    fingerprints: dict[str, str | None] = {}
    with_results: dict[str, str | None] = {}
    pending, done = _pending_by_method(problem_sets, method_specs, out)
    for (bench, method), left in pending.items():
        if not left:
            continue
        chain = chains[(bench, method)] = _make_chain(source, method, bench, max_new_tokens, worked_example)
        if trace_tokens and "trace_tokens" in getattr(type(chain), "model_fields", {}):
            chains[(bench, method)] = chain.model_copy(update={"trace_tokens": True})  # no change to the answers
        key = f"{bench}/{method}"
        if bench == "conflictqa" and _is_steered(source):
            from .conflict_methods import conflict_fingerprint

            fingerprints[key] = conflict_fingerprint(chain)
        elif isinstance(chain, CodeChain):
            fingerprints[key] = code_fingerprint(chain)
        else:
            fingerprints[key] = method_fingerprint(chain, source, method, bench)
        if done[(bench, method)]:
            with_results[key] = fingerprints[key]
    check_fingerprints(read_run_info(out), with_results, out)
    return chains, fingerprints


CONTINUOUS_CHUNK = 4
"""With ``continuous``, each method streams this many batches' worth of items through its slots at a time."""


def _run_continuous(
    chain: Any, batch: Sequence[Any], method: str, bench: str, slots: int, results: ResultsFile, bar: Any
) -> None:
    """Stream ``batch`` through ``slots`` decoding rows, writing each record as its item finishes.

    An item's ``seconds`` is the wall time since the previous item finished (the method's time over the chunk,
    shared out in the order items finish).
    """
    streaming = chain.model_copy(update={"batch_size": slots})
    last = time.perf_counter()
    for index, output in streaming.as_completed([_chain_input(p) for p in batch]):
        now = time.perf_counter()
        results.append([make_record(batch[index], method, output, now - last, bench=bench)])
        last = now
        bar.update(1)


def _unique(problems: Iterable[Any]) -> list[Any]:
    unique: dict[str, Any] = {}
    for problem in problems:
        unique.setdefault(problem.id, problem)
    return list(unique.values())


def _todo(method: MethodSpec, position: int, items: Sequence[Any], done: set[str]) -> bool:
    within = method.limit is None or position < method.limit
    return within and items[position].id not in done


def pending_items(
    benches: str | Sequence[str],
    methods: str | Sequence[str | MethodSpec],
    out_dir: str | os.PathLike[str],
    *,
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "dev",
) -> int:
    """How many (item, method) pairs :func:`run_eval` with these arguments would still solve (0: all done).

    Reads the results without repairing or locking anything, so it is safe while another run writes.
    """
    from .datasets import load_problems

    bench_specs = parse_benches(benches)
    method_specs = parse_methods(methods, known=None)
    _check_bench_methods(bench_specs, method_specs, factory=False)
    problem_sets = [(spec, load_problems(spec, data_dir=data_dir, split=split, limit=limit)) for spec in bench_specs]
    return sum(_pending_by_method(problem_sets, method_specs, Path(out_dir))[0].values())


def _pending_by_method(
    problem_sets: Sequence[tuple[str, Sequence[Any]]], method_specs: Sequence[MethodSpec], out: Path
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], set[str]]]:
    """Items still to solve and ids already solved, by ``(bench, method)``, from the results files (read, not
    repaired)."""
    done: dict[tuple[str, str], set[str]] = {}
    pending: dict[tuple[str, str], int] = {}
    for spec, problems in problem_sets:
        bench = spec.partition(":")[0]
        items = _unique(problems)
        for m in method_specs:
            key = (bench, m.name)
            if key not in done:
                done[key] = {str(r["id"]) for r in read_records(out / bench / f"{m.name}.jsonl")}
            pending[key] = pending.get(key, 0) + sum(_todo(m, i, items, done[key]) for i in range(len(items)))
    return pending, done


def _run_bench(
    bench: str,
    problems: Sequence[Any],
    methods: Sequence[MethodSpec],
    source: Any,
    out: Path,
    files: dict[tuple[str, str], ResultsFile],
    chains: dict[tuple[str, str], Any],
    *,
    batch_size: int,
    max_new_tokens: int,
    progress: bool,
    label: str,
    worked_example: bool | None = None,
    continuous: bool = False,
) -> None:
    """Run all methods over one benchmark spec, batch by batch (results land in ``files``)."""
    items = _unique(problems)
    for m in methods:
        if (bench, m.name) not in files:
            files[(bench, m.name)] = ResultsFile(out / bench / f"{m.name}.jsonl")

    def todo(m: MethodSpec, position: int) -> bool:
        return _todo(m, position, items, files[(bench, m.name)].done)

    pending = [i for i in range(len(items)) if any(todo(m, i) for m in methods)]
    total = sum(todo(m, i) for m in methods for i in pending)
    bar = _Progress(label, total, {m.name: files[(bench, m.name)] for m in methods}, progress)
    try:
        for positions in _batches(pending, batch_size * (CONTINUOUS_CHUNK if continuous else 1)):
            for m in methods:
                batch = [items[i] for i in positions if todo(m, i)]
                if not batch:
                    continue
                key = (bench, m.name)
                if key not in chains:
                    chains[key] = _make_chain(source, m.name, bench, max_new_tokens, worked_example)
                if continuous and hasattr(chains[key], "as_completed"):
                    _run_continuous(chains[key], batch, m.name, bench, batch_size, files[key], bar)
                    continue
                start = time.perf_counter()
                outputs = chains[key].batch([_chain_input(p) for p in batch])
                per_item = (time.perf_counter() - start) / len(batch)
                records = [
                    make_record(p, m.name, o, per_item, bench=bench) for p, o in zip(batch, outputs, strict=True)
                ]
                files[key].append(records)
                bar.update(len(batch))
    finally:
        bar.close()
