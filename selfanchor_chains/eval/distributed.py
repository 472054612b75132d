"""Evaluations fanned out over Ray (``selfanchor eval ... --ray [ADDRESS]``; ``pip install 'selfanchor-chains[ray]'``).

The driver does what :func:`~selfanchor_chains.eval.runner.run_eval` does (checks, the run lock, ``run.json``,
fingerprints, resumption from the results files) but hands the work to Ray actors: each worker loads the model
once and solves *shards* (one method on one batch of items, the same batches ``run_eval`` makes, so the batch
composition and hence the answers are the same). Results stream back and the driver alone writes them into the
same resumable store as they come. A worker that dies is restarted and its shard re-run by Ray (actor restarts and
task retries); nothing is written before a shard has completed, so a re-run shard adds no duplicates, and an
interrupted distributed run resumes like a local one. Without an address a local Ray instance is started; with
one, an existing cluster is joined. Ray does the scheduling; nothing here schedules or shards a model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .method_specs import (
    CONFLICT_METHOD_NAMES,
    METHOD_NAMES,
    MethodSpec,
    _check_bench_methods,
    parse_benches,
    parse_methods,
)
from .records import _chain_input, make_record
from .runner import _batches, _command_entry, _pending_by_method, _run_settings, _summary, _todo, _unique, recorded
from .store import (
    ResultsFile,
    check_compatible,
    check_fingerprints,
    read_run_info,
    run_lock,
    update_run_info,
)


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker loads and how it decodes."""

    model: str
    dtype: str
    quantization: str | None = None
    threads: int = 1
    max_new_tokens: int = 512
    seed: int | None = None
    worked_example: bool | None = None  # None: SelfAnchorChain's default, for every method


@dataclass(frozen=True)
class Shard:
    """One method on one batch of one benchmark's items."""

    bench: str
    method: str
    problems: tuple[Any, ...]


class Solver:
    """A Ray actor's body: the model loaded once, the chains built once per (benchmark, method)."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from ..langchain.llm import SteeredHFLLM

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.llm = SteeredHFLLM.from_model_id(
            spec.model, dtype=spec.dtype, quantization=spec.quantization, seed=spec.seed
        )
        self.chains: dict[tuple[str, str], Any] = {}

    def _chain(self, bench: str, method: str) -> Any:
        from .method_specs import _make_chain

        if (bench, method) not in self.chains:
            budget, example = self.spec.max_new_tokens, self.spec.worked_example
            self.chains[(bench, method)] = _make_chain(self.llm, method, bench, budget, example)
        return self.chains[(bench, method)]

    def fingerprint(self, bench: str, method: str) -> str | None:
        from .conflict_methods import conflict_fingerprint
        from .method_specs import method_fingerprint

        chain = self._chain(bench, method)
        if bench == "conflictqa":
            return conflict_fingerprint(chain)
        return method_fingerprint(chain, self.llm, method, bench)

    def model_id(self) -> str:
        return str(self.llm.model_id)

    def solve(self, index: int, shard: Shard) -> tuple[int, list[dict[str, Any]], float]:
        """The shard's index and records, and the seconds the worker spent on them (for Ray's overhead)."""
        start = time.perf_counter()
        outputs = self._chain(shard.bench, shard.method).batch([_chain_input(p) for p in shard.problems])
        took = time.perf_counter() - start
        per_item = took / len(shard.problems)
        records = [
            make_record(p, shard.method, o, per_item, bench=shard.bench)
            for p, o in zip(shard.problems, outputs, strict=True)
        ]
        return index, records, took


def _shards(
    problem_sets: Sequence[tuple[str, list[Any]]],
    method_specs: Sequence[MethodSpec],
    files: dict[tuple[str, str], ResultsFile],
    out: Path,
    batch_size: int,
) -> list[Shard]:
    """The work left, in the order ``run_eval`` would do it: per benchmark, batch by batch, method by method."""
    shards = []
    for spec, problems in problem_sets:
        bench = spec.partition(":")[0]
        items = _unique(problems)
        for m in method_specs:
            if (bench, m.name) not in files:
                files[(bench, m.name)] = ResultsFile(out / bench / f"{m.name}.jsonl")
        pending = [
            i for i in range(len(items)) if any(_todo(m, i, items, files[(bench, m.name)].done) for m in method_specs)
        ]
        for positions in _batches(pending, batch_size):
            for m in method_specs:
                batch = tuple(items[i] for i in positions if _todo(m, i, items, files[(bench, m.name)].done))
                if batch:
                    shards.append(Shard(bench, m.name, batch))
    return shards


def run_eval_ray(
    benches: str | Sequence[str],
    methods: str | Sequence[str | MethodSpec],
    worker: WorkerSpec,
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 2,
    address: str | None = None,
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "dev",
    batch_size: int = 8,
    command: str | None = None,
    on_shard: Callable[[Shard, list[Any]], None] | None = None,
) -> dict[str, Any]:
    """Evaluate like :func:`~selfanchor_chains.eval.runner.run_eval`, the shards solved by Ray actors.

    Args:
        benches: Benchmark specs.
        methods: Method specs.
        worker: The model every worker loads, its threads and token budget.
        out_dir: Output folder (the same store as a local run: a distributed run resumes a local one and back).
        workers: Actors (each loads the model once).
        address: A Ray cluster to join (``"ray://host:10001"``, ``"auto"``); None starts a local instance.
        limit: At most this many problems per benchmark spec.
        data_dir: Benchmark data folder.
        split: Data split.
        batch_size: Items per shard (one batched decode per shard).
        command: The command line to record.
        on_shard: Called in the driver after each shard's records are written, with the actors (tests use it
            to kill a worker mid-run).

    Returns:
        ``{"summary": {bench: {method: {"n", "correct", "accuracy", "new"}}}, "shards", "worker_seconds",
        "wall_seconds", "overhead_seconds_per_item"}``: the last is the driver's time per item beyond the
        workers' own (scheduling, serialisation, transfer), from the shards' round trips.
    """
    import ray

    from .datasets import load_problems

    bench_specs = parse_benches(benches)
    method_specs = parse_methods(methods, known=METHOD_NAMES + CONFLICT_METHOD_NAMES)
    _check_bench_methods(bench_specs, method_specs, factory=False)
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be >= 1, got {batch_size} and {workers}")
    out = Path(out_dir)
    data = str(data_dir) if data_dir is not None else None
    settings = _run_settings(split, worker.max_new_tokens, batch_size, worker.seed, limit, False, data)
    entry = _command_entry(command, bench_specs, method_specs, settings)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, num_cpus=None if address else workers)
    try:
        with run_lock(out):
            problem_sets = [(s, load_problems(s, data_dir=data_dir, split=split, limit=limit)) for s in bench_specs]
            actor_class = ray.remote(num_cpus=worker.threads, max_restarts=3, max_task_retries=3)(Solver)
            actors: list[Any] = [actor_class.remote(worker) for _ in range(workers)]
            model = ray.get(actors[0].model_id.remote())
            check_compatible(read_run_info(out), {**settings, "model": model, "dtype": worker.dtype}, out)
            fingerprints = _fingerprints(ray, actors[0], problem_sets, method_specs, out)
            info = {"model": model, "dtype": worker.dtype, "settings": settings, "fingerprints": fingerprints}
            update_run_info(out, **info, command=entry)
            return _run_shards(ray, actors, problem_sets, method_specs, out, batch_size, entry, on_shard)
    finally:
        if started_ray:
            ray.shutdown()


def _fingerprints(
    ray: Any, actor: Any, problem_sets: Sequence[tuple[str, list[Any]]], method_specs: Sequence[MethodSpec], out: Path
) -> dict[str, str | None]:
    """The fingerprints of the methods with work left, from a worker (it has the chains); refused on a change."""
    pending, done = _pending_by_method(problem_sets, method_specs, out)
    keys = [key for key, left in pending.items() if left]
    prints = ray.get([actor.fingerprint.remote(bench, method) for bench, method in keys])
    fingerprints = {f"{bench}/{method}": p for (bench, method), p in zip(keys, prints, strict=True)}
    bound = {f"{bench}/{method}": fingerprints[f"{bench}/{method}"] for bench, method in keys if done[(bench, method)]}
    check_fingerprints(read_run_info(out), bound, out)  # only results on disk bind a method to its configuration
    return fingerprints


def _run_shards(
    ray: Any,
    actors: list[Any],
    problem_sets: Sequence[tuple[str, list[Any]]],
    method_specs: Sequence[MethodSpec],
    out: Path,
    batch_size: int,
    entry: dict[str, Any],
    on_shard: Callable[[Shard, list[Any]], None] | None,
) -> dict[str, Any]:
    """Solve the shards on the actors, writing each one's records as it completes (the driver alone writes)."""
    from ray.util import ActorPool

    files: dict[tuple[str, str], ResultsFile] = {}
    shards = _shards(problem_sets, method_specs, files, out, batch_size)
    worker_seconds = round_trips = 0.0
    began = time.perf_counter()
    with recorded(out, entry, files):
        pool = ActorPool(actors)
        for k, shard in enumerate(shards):
            pool.submit(lambda actor, item: actor.solve.remote(*item), (k, shard))
        for _ in shards:
            index, records, took = pool.get_next_unordered()
            shard = shards[index]
            results = files[(shard.bench, shard.method)]
            results.append([r for r in records if r["id"] not in results.done])  # a re-run shard adds nothing twice
            worker_seconds += took
            if on_shard is not None:
                on_shard(shard, actors)
        round_trips = time.perf_counter() - began
    items = sum(len(s.problems) for s in shards)
    # With several workers the wall time is shared; the overhead is the wall time the workers' own work leaves.
    overhead = max(0.0, round_trips * len(actors) - worker_seconds) / items if items else 0.0
    return {
        "summary": _summary(files),
        "shards": len(shards),
        "items": items,
        "worker_seconds": worker_seconds,
        "wall_seconds": round_trips,
        "overhead_seconds_per_item": overhead,
    }
