"""On-disk layout of an evaluation: ``OUT/<bench>/<method>.jsonl`` result files and ``OUT/run.json``.

Result files are append-only JSON lines, one per solved item, flushed and fsynced after every batch, so an
interrupted run loses at most the batch in flight. The only damage an interruption can leave is a half-written
last line; readers ignore it and :class:`ResultsFile` cuts it off before appending again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "IncompatibleRunError",
    "ResultsFile",
    "ResultsFileError",
    "RunLockedError",
    "iter_result_files",
    "read_records",
    "read_run_info",
    "run_lock",
    "update_run_info",
    "utc_now",
]

RUN_INFO = "run.json"
LOCK_FILE = ".eval.lock"
# Settings that change what a method answers: results written under different values are not comparable.
COMPATIBILITY_KEYS = ("model", "dtype", "split", "max_new_tokens")


class ResultsFileError(ValueError):
    """A results file has a corrupt line that is not the last one (so it was not cut off by an interruption)."""


class IncompatibleRunError(ValueError):
    """The output folder holds results produced with another model or other decoding settings."""


class RunLockedError(RuntimeError):
    """Another evaluation is writing to the same output folder."""


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _parse_lines(path: Path, data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Records of a results file and the byte length of its intact part (the half-written tail excluded)."""
    records: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    intact = 0
    for lineno, raw in enumerate(lines, start=1):
        last = lineno == len(lines)
        if not raw.strip():
            if not last:
                intact += len(raw) + 1
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError("not a result record")
        except ValueError as exc:
            if last:
                break  # cut off mid-write by an interruption
            raise ResultsFileError(f"{path}:{lineno}: corrupt result line ({exc})") from exc
        records.append(record)
        intact += len(raw) + (0 if last else 1)
    return records, intact


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a results file, ignoring a half-written last line and keeping the first record of each id.

    Args:
        path: A ``<method>.jsonl`` file.

    Returns:
        The records in file order; ``[]`` when the file does not exist.

    Raises:
        ResultsFileError: A line other than the last is not a JSON object with an ``id``.
    """
    target = Path(path)
    if not target.is_file():
        return []
    records, _ = _parse_lines(target, target.read_bytes())
    return _first_per_id(records)


def _first_per_id(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    unique = []
    for record in records:
        key = str(record["id"])
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique


def iter_result_files(out_dir: str | os.PathLike[str]) -> Iterator[tuple[str, str, Path]]:
    """``(bench, method, path)`` for every ``OUT/<bench>/<method>.jsonl``, sorted by path."""
    root = Path(out_dir)
    for path in sorted(root.glob("*/*.jsonl")):
        yield path.parent.name, path.stem, path


class ResultsFile:
    """One method's results on one benchmark: the ids already done, and durable appends.

    Opening repairs an interrupted tail (a half-written line is cut off; a complete record that only lacks its
    newline gets one), so the next append starts on a fresh line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes() if self.path.is_file() else b""
        records, intact = _parse_lines(self.path, data)
        if intact < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(intact)
        elif data and not data.endswith(b"\n"):
            with self.path.open("ab") as fh:
                fh.write(b"\n")
        self.records = _first_per_id(records)
        self.done: set[str] = {str(r["id"]) for r in self.records}
        self.correct = sum(bool(r.get("correct")) for r in self.records)
        self.new = 0
        """Records appended through this object."""

    @property
    def n(self) -> int:
        return len(self.done)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append records (skipping ids already present) and make them durable before returning.

        Returns:
            How many records were written.
        """
        fresh = []
        for record in records:
            key = str(record["id"])
            if key in self.done:
                continue
            self.done.add(key)
            fresh.append(record)
        if not fresh:
            return 0
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in fresh)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        self.records.extend(fresh)
        self.correct += sum(bool(r.get("correct")) for r in fresh)
        self.new += len(fresh)
        return len(fresh)


def read_run_info(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The merged ``OUT/run.json`` (``{}`` when absent or unreadable)."""
    path = Path(out_dir) / RUN_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def check_compatible(info: dict[str, Any], current: dict[str, Any], out_dir: Path) -> None:
    """Refuse to mix results of another model or other decoding settings into one folder.

    Raises:
        IncompatibleRunError: A key of :data:`COMPATIBILITY_KEYS` differs (unknown values on either side pass).
    """
    known = {**info.get("settings", {}), "model": info.get("model"), "dtype": info.get("dtype")}
    for key in COMPATIBILITY_KEYS:
        old, new = known.get(key), current.get(key)
        if old is not None and new is not None and old != new:
            raise IncompatibleRunError(
                f"{out_dir} holds results with {key}={old!r}, this run has {key}={new!r}; "
                "use another --out folder (results with different settings are not comparable)"
            )


def check_fingerprints(info: dict[str, Any], current: Mapping[str, str | None], out_dir: Path) -> None:
    """Refuse to resume a method whose prompt or steering configuration changed since its results were written.

    Args:
        info: The folder's ``run.json``.
        current: ``{"<bench>/<method>": fingerprint}`` of this run's chains (None: unknown, not checked).
        out_dir: The folder, for the message.

    Raises:
        IncompatibleRunError: A stored fingerprint differs from this run's.
    """
    stored = info.get("fingerprints") or {}
    for key, new in current.items():
        old = stored.get(key)
        if old is not None and new is not None and old != new:
            raise IncompatibleRunError(
                f"{out_dir}/{key}.jsonl was written with another prompt or steering configuration of {key} "
                f"(fingerprint {old}, now {new}); move that file away or use another --out folder"
            )


def update_run_info(out_dir: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """Merge into ``OUT/run.json`` and write it atomically.

    Args:
        out_dir: The output folder.
        **fields: Top-level fields to set; ``settings`` and ``fingerprints`` are merged key by key; ``command`` (a
            dict with an ``id``) replaces the entry of ``commands`` with the same ``id`` or is appended.

    Returns:
        The merged content.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    info = read_run_info(root)
    command = fields.pop("command", None)
    merged = {key: fields.pop(key, None) for key in ("settings", "fingerprints")}
    for key, value in fields.items():
        if value is not None:
            info[key] = value
    for key, value in merged.items():
        if value:
            info[key] = {**info.get(key, {}), **{k: v for k, v in value.items() if v is not None}}
    if command is not None:
        commands = info.setdefault("commands", [])
        for k, existing in enumerate(commands):
            if existing.get("id") == command.get("id"):
                commands[k] = command
                break
        else:
            commands.append(command)
    tmp = root / (RUN_INFO + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(root / RUN_INFO)
    return info


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the output folder: two runs appending to one file would duplicate items.

    Raises:
        RunLockedError: Another process holds the lock.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: run unguarded
        yield
        return
    with (root / LOCK_FILE).open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise RunLockedError(f"another evaluation is writing to {root}; wait for it or use another --out") from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
