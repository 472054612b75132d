"""Resumable evaluation of the reasoning methods on the benchmarks.

For each benchmark the problems are cut into batches, and every batch is run by each method in turn before the
next batch starts: a run that is stopped part-way has compared all methods on the same items. Results go to
``OUT/<bench>/<method>.jsonl`` (see :mod:`selfanchor_chains.eval.store`); a re-run skips the ids already there.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..reasoning.methods import METHODS
from .conflict_set import CONFLICT_METHODS
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

__all__ = [
    "ChainFactory",
    "MethodSpec",
    "make_record",
    "method_fingerprint",
    "parse_benches",
    "parse_methods",
    "pending_items",
    "run_eval",
]

METHOD_NAMES = METHODS
"""The method names of ``selfanchor eval`` (the registry's, :data:`selfanchor_chains.reasoning.methods.METHODS`)."""

STEP_LOG_KEYS = ("kind", "omega", "confidence", "tokens", "changed", "kl")
"""What a results file keeps of each step: its kind, ω, confidence, length and the steering diagnostics."""

STUDY_OPTION_DEFAULTS: dict[str, Any] = {
    "step_strength": {},
    "reasoning_scope": "question+plan",
    "midline_labels": False,
    "anchor_masking": "attention",
    "steer_below": None,
    "worked_example": False,
}
"""Reasoning-chain options whose non-default values are part of a method's fingerprint."""

CONFLICT_METHOD_NAMES = CONFLICT_METHODS
"""The methods of the knowledge-conflict benchmark ``conflictqa`` (:mod:`selfanchor_chains.eval.conflict_methods`)."""

ChainFactory = Callable[[str, str], Any]
"""``factory(method, bench) -> runnable`` whose ``batch`` maps ``{"question", "task", "options"}`` dicts to the
reasoning chains' output dicts (``answer``, ``text``, ``steps``, ``finish_reason``, ``usage``, ``retried``)."""


@dataclass(frozen=True)
class MethodSpec:
    """A method to run and an optional cap on how many items of each benchmark it gets.

    Attributes:
        name: Method name (one of :data:`METHOD_NAMES` unless a chain factory knows others).
        limit: At most this many items per benchmark (the first ones, so they are shared with the other methods);
            None: as many as the benchmark's ``--limit``.
    """

    name: str
    limit: int | None = None

    def __str__(self) -> str:
        return self.name if self.limit is None else f"{self.name}:{self.limit}"


def parse_methods(
    spec: str | Sequence[str | MethodSpec], known: Sequence[str] | None = METHOD_NAMES + CONFLICT_METHOD_NAMES
) -> list[MethodSpec]:
    """Parse ``"self-anchor,cot,spa:100"`` (``method:N`` caps the method at N items per benchmark).

    Args:
        spec: Comma-separated methods, or a sequence of names / ``name:N`` strings / specs.
        known: Allowed names; None accepts any name (for chain factories with their own methods).

    Returns:
        The specs, in the given order.

    Raises:
        ValueError: Unknown or repeated method, a bad cap, or no method at all.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[MethodSpec] = []
    for item in items:
        if isinstance(item, MethodSpec):
            parsed = item
        else:
            name, sep, cap = item.strip().partition(":")
            name = name.strip()
            if not name:
                continue
            limit = None
            if sep:
                try:
                    limit = int(cap)
                except ValueError:
                    raise ValueError(f"bad item cap in {item.strip()!r}: expected method:N with N an integer") from None
                if limit < 0:
                    raise ValueError(f"item cap must be >= 0 in {item.strip()!r}")
            parsed = MethodSpec(name, limit)
        if known is not None and parsed.name not in known:
            raise ValueError(f"unknown method {parsed.name!r}; choose from {', '.join(known)}")
        if any(m.name == parsed.name for m in out):
            raise ValueError(f"method {parsed.name!r} given twice")
        out.append(parsed)
    if not out:
        raise ValueError("no method given")
    return out


def parse_benches(spec: str | Sequence[str]) -> list[str]:
    """Parse ``"gsm8k,bbh:word_sorting"`` into validated benchmark specs (duplicates dropped).

    Raises:
        ValueError: Unknown benchmark or BBH task, a task on a benchmark without tasks, or no benchmark at all.
    """
    from .datasets import ALL_BENCHMARKS as BENCHMARKS
    from .datasets import BBH_TASKS

    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        bench, sep, task = item.strip().partition(":")
        bench, task = bench.strip().lower(), task.strip()
        if not bench:
            continue
        if bench not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {item.strip()!r}; choose from {', '.join(BENCHMARKS)} (or bbh:<task>)")
        if sep and bench != "bbh":
            raise ValueError(f"benchmark {bench!r} has no tasks (got {item.strip()!r}); only bbh:<task> is valid")
        if sep and task not in BBH_TASKS:
            raise ValueError(f"unknown BBH task {task!r}; choose from {', '.join(BBH_TASKS)}")
        name = f"{bench}:{task}" if sep else bench
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("no benchmark given")
    return out


# -- chains ------------------------------------------------------------------------------------------------------


def _is_steered(source: Any) -> bool:
    from ..langchain.llm import SteeredHFLLM

    return isinstance(source, SteeredHFLLM)


def _is_language_model(source: Any) -> bool:
    from langchain_core.language_models import BaseLanguageModel

    return isinstance(source, BaseLanguageModel)


def _check_source(source: Any, methods: Sequence[MethodSpec]) -> None:
    """Fail before any work when a method cannot run on the given LLM."""
    from .prompted import PROMPTED_METHODS, SteeringRequiredError

    if _is_steered(source) or not _is_language_model(source):
        if not _is_language_model(source) and not callable(source):
            raise TypeError(
                "llm_or_chain_factory must be a LangChain LLM or a callable factory(method, bench) -> runnable, "
                f"got {type(source).__name__}"
            )
        return
    steered = [m.name for m in methods if m.name not in PROMPTED_METHODS]
    if steered:
        raise SteeringRequiredError(
            f"{', '.join(steered)} need a SteeredHFLLM (attention steering or step tracking while decoding); "
            f"{type(source).__name__} can run only {', '.join(PROMPTED_METHODS)}"
        )


def _make_chain(source: Any, method: str, bench: str, max_new_tokens: int) -> Any:
    if _is_steered(source) and bench == "conflictqa":
        from .conflict_methods import make_conflict_chain

        return make_conflict_chain(method, source, max_new_tokens=max_new_tokens)
    if _is_steered(source):
        from ..reasoning.methods import make_chain

        return make_chain(method, source, bench=bench, max_new_tokens=max_new_tokens)
    if _is_language_model(source):
        from .prompted import make_prompted_chain

        return make_prompted_chain(source, method, bench)
    return source(method, bench)


def method_fingerprint(chain: Any, source: Any, method: str, bench: str) -> str | None:
    """A short hash of what decides a method's answers besides the model: prompt template and steering set-up.

    Known for the package's reasoning chains and for the prompted baselines on other LLMs; None for chains from a
    user's factory (their configuration is theirs to track).
    """
    import dataclasses
    import hashlib
    import json

    from ..reasoning.chains import ReasoningChain

    payload: dict[str, Any]
    if isinstance(chain, ReasoningChain):
        payload = {
            "chain": type(chain).__name__,
            "template": dataclasses.asdict(chain._template_for()),
            "schedule": repr(chain.schedule),
            "omega": chain.omega,
            "anchors": [chain.anchor_question, chain.anchor_context, chain.anchor_plan_in_final],
            "limits": dataclasses.asdict(chain.limits),
            "format_retries": chain.format_retries,
        }
        # Options added by the steering study enter the hash only when set, so that the fingerprints of
        # configurations that existed before them stay the same.
        for name, default in STUDY_OPTION_DEFAULTS.items():
            value = getattr(chain, name)
            if value != default:
                payload[name] = value
    elif _is_language_model(source):
        from .prompted import _template

        payload = {"prompted": method, "template": dataclasses.asdict(_template(method, bench))}
    else:
        return None
    blob = json.dumps(payload, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _check_bench_methods(benches: Sequence[str], methods: Sequence[MethodSpec], *, factory: bool) -> None:
    """conflictqa runs only its own methods (they read the passages), and they run only on it (names a chain factory
    defines are its own business)."""
    if factory:
        return
    for bench in benches:
        conflict = bench.partition(":")[0] == "conflictqa"
        other = METHOD_NAMES if conflict else CONFLICT_METHOD_NAMES
        wrong = [m.name for m in methods if m.name in other]
        if wrong:
            allowed = CONFLICT_METHOD_NAMES if conflict else METHOD_NAMES
            raise ValueError(f"{', '.join(wrong)} cannot run on {bench}; its methods are {', '.join(allowed)}")


def _model_name(source: Any) -> str | None:
    for attr in ("model_id", "model_name", "model"):
        value = getattr(source, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


# -- records -----------------------------------------------------------------------------------------------------


def make_record(
    problem: Any, method: str, output: Mapping[str, Any], seconds: float, bench: str | None = None
) -> dict[str, Any]:
    """One line of a results file: the item's prediction, grade, cost and trace.

    Args:
        problem: The :class:`~selfanchor_chains.eval.datasets.Problem`.
        method: Method name.
        output: The chain's output dict; without ``answer`` the answer is extracted from ``text``.
        seconds: Wall time charged to this item (its batch's time divided by the batch size).
        bench: Benchmark name (default ``problem.bench``).

    Returns:
        ``{id, bench, task, method, prediction, gold, correct, tokens, prompt_tokens, seconds, steps,
        finish_reason, retried, text}``; ``tokens`` are completion tokens, ``steps`` keep kind, ω, confidence
        and tokens of each step.
    """
    from ..answers import extract_answer, grade

    bench = bench or problem.bench
    text = str(output.get("text") or "")
    if "answer" in output:
        prediction = output["answer"]
    else:
        prediction = extract_answer(bench, text, task=problem.task, options=problem.options)
    usage = output.get("usage") or {}
    steps = [{k: step[k] for k in STEP_LOG_KEYS if k in step} for step in output.get("steps") or []]
    graded = grade(bench, prediction, problem.answer, task=problem.task)
    record = {
        "id": problem.id,
        "bench": bench,
        "task": problem.task,
        "method": method,
        "prediction": prediction,
        "gold": problem.answer,
        "correct": graded.correct,
        "tokens": usage.get("completion_tokens"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "seconds": round(seconds, 4),
        "steps": steps,
        "finish_reason": output.get("finish_reason"),
        "retried": bool(output.get("retried", False)),
        "text": text,
    }
    if graded.error is not None:
        record["grade_error"] = graded.error  # the prediction could not be read; it is graded wrong
    if bench == "conflictqa":
        from .conflict_set import grade_conflict

        record.update(grade_conflict(prediction, problem.extra))
    return record


def _chain_input(problem: Any) -> dict[str, Any]:
    if problem.bench == "conflictqa":
        from .conflict_set import chain_input

        return chain_input(problem)
    return {"question": problem.question, "task": problem.task, "options": problem.options}


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
) -> dict[str, dict[str, dict[str, Any]]]:
    """Evaluate methods on benchmarks, resumably, appending per-item results under ``out_dir``.

    Each benchmark's problems are split into batches of ``batch_size``; each batch is run by every method before
    the next batch starts, so an interrupted run has compared the methods on the same items. Items already in
    ``OUT/<bench>/<method>.jsonl`` are skipped, so calling again with the same arguments resumes.

    Args:
        benches: Benchmark specs (``"gsm8k,bbh"`` or a list; ``bbh:<task>`` for one BBH task).
        methods: Method specs (``"self-anchor,cot,spa:100"`` or a list); ``name:N`` caps a method at N items per
            benchmark.
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
        dtype: Weights dtype for ``run.json``.
        progress: Show a progress bar on stderr.
        command: The command line to record (default: ``run_eval(...)``).
        continuous: Continuous batching for the package's reasoning chains: each method streams a chunk of
            ``4 × batch_size`` items through ``batch_size`` decoding slots (a finished item's place goes to the
            next one at once) and its results are written as items finish; the methods take turns chunk by chunk.

    Returns:
        ``{bench: {method: {"n", "correct", "accuracy", "new"}}}`` over all results in the folder for the
        benchmarks and methods of this call (``new``: items solved by this call).

    Raises:
        ValueError: Unknown benchmark or method, or a bad limit / batch size.
        SteeringRequiredError: A steered method with a plain LLM.
        IncompatibleRunError: ``out_dir`` holds results of another model, dtype, split or token budget, or of a
            method whose prompt template or steering configuration has changed since (see
            :func:`method_fingerprint`).
        RunLockedError: Another evaluation is writing to ``out_dir``.
        DatasetError: The data cannot be found or read.
    """
    from .. import __version__
    from .datasets import load_problems

    bench_specs = parse_benches(benches)
    known = METHOD_NAMES + CONFLICT_METHOD_NAMES if _is_language_model(llm_or_chain_factory) else None
    method_specs = parse_methods(methods, known=known)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    _check_source(llm_or_chain_factory, method_specs)
    _check_bench_methods(bench_specs, method_specs, factory=not _is_language_model(llm_or_chain_factory))

    out = Path(out_dir)
    model = model_name or _model_name(llm_or_chain_factory)
    settings: dict[str, Any] = {
        "split": split,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "seed": seed,
        "limit": limit,
        "continuous": continuous,
        "data_dir": str(data_dir) if data_dir is not None else None,
    }
    entry: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "command": command or f"run_eval({','.join(bench_specs)!r}, {','.join(map(str, method_specs))!r}, ...)",
        "benches": bench_specs,
        "methods": [str(m) for m in method_specs],
        "settings": settings,
        "package_version": __version__,
        "started": utc_now(),
        "finished": None,
        "status": "running",
        "new_items": 0,
    }
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    with run_lock(out):
        check_compatible(read_run_info(out), {**settings, "model": model, "dtype": dtype}, out)
        # Problems are loaded before anything is written, so a data error leaves the folder untouched.
        problem_sets = [
            (spec, load_problems(spec, data_dir=data_dir, split=split, limit=limit)) for spec in bench_specs
        ]
        # The chains of methods with work left are built up front, so that one whose prompt or steering changed
        # since its results were written is refused before anything runs.
        chains: dict[tuple[str, str], Any] = {}
        fingerprints: dict[str, str | None] = {}
        # Only results on disk bind a method to its old configuration: a moved-away file frees it.
        with_results: dict[str, str | None] = {}
        pending, done = _pending_by_method(problem_sets, method_specs, out)
        for (bench, method), left in pending.items():
            if left:
                chain = chains[(bench, method)] = _make_chain(llm_or_chain_factory, method, bench, max_new_tokens)
                key = f"{bench}/{method}"
                if bench == "conflictqa" and _is_steered(llm_or_chain_factory):
                    from .conflict_methods import conflict_fingerprint

                    fingerprints[key] = conflict_fingerprint(chain)
                else:
                    fingerprints[key] = method_fingerprint(chain, llm_or_chain_factory, method, bench)
                if done[(bench, method)]:
                    with_results[key] = fingerprints[key]
        check_fingerprints(read_run_info(out), with_results, out)
        update_run_info(
            out,
            model=model,
            dtype=dtype,
            package_version=__version__,
            settings=settings,
            fingerprints=fingerprints,
            command=entry,
        )
        files: dict[tuple[str, str], ResultsFile] = {}
        try:
            for spec, problems in problem_sets:
                _run_bench(
                    spec.partition(":")[0],
                    problems,
                    method_specs,
                    llm_or_chain_factory,
                    out,
                    files,
                    chains,
                    batch_size=batch_size,
                    max_new_tokens=max_new_tokens,
                    progress=progress,
                    label=spec,
                    continuous=continuous,
                )
        except BaseException as exc:
            entry["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc!r}"[:500]
            raise
        else:
            entry["status"] = "completed"
        finally:
            entry["finished"] = utc_now()
            entry["new_items"] = sum(f.new for f in files.values())
            update_run_info(out, command=entry)
        for (bench, method), results in files.items():
            summary.setdefault(bench, {})[method] = {
                "n": results.n,
                "correct": results.correct,
                "accuracy": results.accuracy,
                "new": results.new,
            }
    return summary


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
                    chains[key] = _make_chain(source, m.name, bench, max_new_tokens)
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
