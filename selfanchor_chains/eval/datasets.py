"""Loading the benchmark development splits from the shared data folder.

The data is read in place from ``<data dir>/<bench>/<split>.jsonl`` and never copied into the repository. The
data folder is ``$SELFANCHOR_DATA_DIR`` when set, else the first of ``../shared/data`` relative to the current
working directory and ``../shared/data`` relative to the repository root that exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..answers.formats import BBH_TASK_FORMATS
from ..answers.readers import parse_options

__all__ = [
    "ALL_BENCHMARKS",
    "BBH_TASKS",
    "BENCHMARKS",
    "CODE_BENCHMARKS",
    "DATA_DIR_ENV",
    "GENERATED_BENCHMARKS",
    "DataDirNotFoundError",
    "DataFileNotFoundError",
    "DatasetError",
    "MalformedDataError",
    "Problem",
    "UnknownBenchmarkError",
    "UnknownTaskError",
    "default_data_dir",
    "load_problems",
]

BENCHMARKS = ("gsm8k", "aqua", "math500", "strategyqa", "bbh", "t4d")
"""The reasoning benchmarks of the shared data folder."""
GENERATED_BENCHMARKS = ("conflictqa",)
"""Benchmarks whose data a script of this project builds (``scripts/build_conflict_set.py``), read from the same
``<data dir>/<bench>/<split>.jsonl`` layout (e.g. ``--data-dir evals/data``)."""
CODE_BENCHMARKS = ("humaneval", "mbpp")
"""Code benchmarks, graded by running their tests in a sandbox; converted from their public sources by
``scripts/build_code_data.py`` into the same layout (``humaneval/test``; ``mbpp/{test,validation,train,prompt}``)."""
ALL_BENCHMARKS = BENCHMARKS + GENERATED_BENCHMARKS + CODE_BENCHMARKS
BBH_TASKS: tuple[str, ...] = tuple(BBH_TASK_FORMATS)
DATA_DIR_ENV = "SELFANCHOR_DATA_DIR"

_REPO_ROOT = Path(__file__).resolve().parents[2]  # selfanchor_chains/eval/datasets.py -> the repository
_REQUIRED = ("id", "question", "answer")


class DatasetError(Exception):
    """Base class of the errors raised while locating or reading benchmark data."""


class UnknownBenchmarkError(DatasetError, ValueError):
    """The benchmark name is not one of :data:`ALL_BENCHMARKS`."""


class UnknownTaskError(DatasetError, ValueError):
    """The ``bench:task`` spec names a task the benchmark does not have."""


class DataDirNotFoundError(DatasetError, FileNotFoundError):
    """No benchmark data folder was found."""


class DataFileNotFoundError(DatasetError, FileNotFoundError):
    """The data folder exists but holds no file for the requested benchmark split."""


class MalformedDataError(DatasetError, ValueError):
    """A data line is not a JSON object with the required fields."""


@dataclass(frozen=True)
class Problem:
    """One benchmark item.

    Attributes:
        id: Stable record id (e.g. ``gsm8k/test/0543``, ``bbh/word_sorting/12``).
        bench: Benchmark name.
        question: Full question text, without instructions or template.
        answer: Canonical short gold answer (see ``shared/data/README.md``).
        task: BBH task name; None for the other benchmarks.
        extra: Every other field of the record (``options``, ``solution``, ``source``, ...).
    """

    id: str
    bench: str
    question: str
    answer: str
    task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> dict[str, str] | None:
        """The lettered options, for mapping an answer given as a value to its letter.

        Returns:
            ``{"A": "40", ...}`` for AQuA and T4D (from ``extra["options"]``) and for multiple-choice BBH
            tasks (parsed from the question); None when the item has no lettered options.
        """
        raw = self.extra.get("options")
        if isinstance(raw, list) and raw:
            found = {}
            for item in raw:
                text = str(item).strip()
                if len(text) >= 2 and text[0].isalpha() and text[1] in ").:":
                    found[text[0].upper()] = text[2:].strip()
            if found:
                return found
        parsed = parse_options(self.question) if self.bench in ("aqua", "bbh", "t4d") else {}
        return parsed or None


def _candidate_dirs() -> list[Path]:
    candidates = [Path.cwd() / ".." / "shared" / "data", _REPO_ROOT / ".." / "shared" / "data"]
    unique: list[Path] = []
    for path in candidates:
        resolved = path.resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


def default_data_dir() -> Path:
    """The benchmark data folder.

    Returns:
        ``$SELFANCHOR_DATA_DIR`` when set; else the first existing of ``../shared/data`` relative to the
        current working directory and relative to the repository root.

    Raises:
        DataDirNotFoundError: The environment variable names a missing folder, or none of the candidates
            exists; the message lists the paths tried.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataDirNotFoundError(f"{DATA_DIR_ENV}={env!r} is not a directory")
        return path
    tried = _candidate_dirs()
    for path in tried:
        if path.is_dir():
            return path
    raise DataDirNotFoundError(
        "benchmark data folder not found; tried "
        + ", ".join(str(p) for p in tried)
        + f". Set {DATA_DIR_ENV} to the folder that holds <bench>/dev.jsonl."
    )


def _parse_spec(bench_spec: str) -> tuple[str, str | None]:
    bench, sep, task = bench_spec.strip().partition(":")
    bench = bench.strip().lower()
    if bench not in ALL_BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {bench_spec!r}; expected one of {', '.join(ALL_BENCHMARKS)}")
    if not sep:
        return bench, None
    task = task.strip()
    if bench != "bbh":
        raise UnknownTaskError(f"benchmark {bench!r} has no tasks (got {bench_spec!r}); only bbh:<task> is valid")
    if task not in BBH_TASKS:
        raise UnknownTaskError(f"unknown BBH task {task!r}; expected one of {', '.join(BBH_TASKS)}")
    return bench, task


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MalformedDataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise MalformedDataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            missing = [key for key in _REQUIRED if key not in record]
            if missing:
                raise MalformedDataError(f"{path}:{lineno}: record lacks field(s) {', '.join(missing)}")
            yield record


def _to_problem(bench: str, record: dict[str, Any]) -> Problem:
    extra = {k: v for k, v in record.items() if k not in ("id", "question", "answer", "task")}
    task = record.get("task")
    return Problem(
        id=str(record["id"]),
        bench=bench,
        question=str(record["question"]),
        answer=str(record["answer"]),
        task=str(task) if task is not None else None,
        extra=extra,
    )


def _round_robin(problems: list[Problem], limit: int) -> list[Problem]:
    """Interleave tasks (in order of first appearance), each in file order, so a small limit spans tasks."""
    by_task: dict[str | None, list[Problem]] = {}
    for problem in problems:
        by_task.setdefault(problem.task, []).append(problem)
    queues = list(by_task.values())
    picked: list[Problem] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue):
                picked.append(queue[depth])
                if len(picked) == limit:
                    break
        depth += 1
    return picked


def load_problems(
    bench_spec: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "dev",
    limit: int | None = None,
) -> list[Problem]:
    """Load a benchmark split.

    Args:
        bench_spec: A benchmark name from :data:`ALL_BENCHMARKS`, or ``"bbh:<task>"`` for one BBH task.
        data_dir: The data folder; :func:`default_data_dir` when None.
        split: File stem under ``<data_dir>/<bench>/`` (``dev``; also ``train`` / ``official_dev`` pools; the
            code benchmarks have ``test``, and MBPP also ``validation``, ``train`` and ``prompt``).
        limit: At most this many problems. Without a task, BBH is taken round-robin over its tasks (each task
            in file order) so that a small limit still spans the tasks; the other benchmarks take the first
            ``limit`` records in file order (the files are already shuffled).

    Returns:
        The problems.

    Raises:
        UnknownBenchmarkError: Unknown benchmark name.
        UnknownTaskError: Unknown BBH task, or a task given for another benchmark.
        DataDirNotFoundError: No data folder (see :func:`default_data_dir`).
        DataFileNotFoundError: The split file does not exist.
        MalformedDataError: A line is not valid JSON or lacks ``id``/``question``/``answer``; the message
            names the file and line.
        ValueError: ``limit`` is negative.
    """
    bench, task = _parse_spec(bench_spec)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if not root.is_dir():
        raise DataDirNotFoundError(f"data folder {root} does not exist")
    path = root / bench / f"{split}.jsonl"
    if not path.is_file():
        available = sorted(p.stem for p in (root / bench).glob("*.jsonl")) if (root / bench).is_dir() else []
        hint = f"; available splits: {', '.join(available)}" if available else ""
        if bench in GENERATED_BENCHMARKS:
            hint += "; build it with `python scripts/build_conflict_set.py --out DIR`, then pass --data-dir DIR"
        if bench in CODE_BENCHMARKS:
            hint += "; convert it with `python scripts/build_code_data.py` (see its docstring for the sources)"
        raise DataFileNotFoundError(f"no {split!r} split for {bench}: {path} does not exist{hint}")
    problems = [_to_problem(bench, record) for record in _read_jsonl(path)]
    if task is not None:
        problems = [p for p in problems if p.task == task]
    if limit is None:
        return problems
    if bench == "bbh" and task is None:
        return _round_robin(problems, limit)
    return problems[:limit]
