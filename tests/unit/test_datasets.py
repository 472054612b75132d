"""Loading the shared benchmark data: real files for the happy paths, temporary files for the errors."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from selfanchor_chains.eval import datasets
from selfanchor_chains.eval.datasets import (
    BBH_TASKS,
    BENCHMARKS,
    DATA_DIR_ENV,
    DataDirNotFoundError,
    DataFileNotFoundError,
    DatasetError,
    MalformedDataError,
    Problem,
    UnknownBenchmarkError,
    UnknownTaskError,
    default_data_dir,
    load_problems,
)

# Dev counts from shared/data/README.md.
_DEV_COUNTS = {"gsm8k": 400, "aqua": 127, "math500": 250, "strategyqa": 300, "bbh": 1952, "t4d": 269}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    try:
        return default_data_dir()
    except DataDirNotFoundError as exc:  # a clone without the shared data folder
        pytest.skip(str(exc))


def _write(root: Path, bench: str, lines: list[str], split: str = "dev") -> Path:
    (root / bench).mkdir(parents=True, exist_ok=True)
    path = root / bench / f"{split}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _record(i: int, **extra: object) -> str:
    return json.dumps({"id": f"x/{i}", "question": f"q{i}", "answer": str(i), **extra})


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_load_each_benchmark(data_dir: Path, bench: str) -> None:
    problems = load_problems(bench, data_dir=data_dir)
    assert len(problems) == _DEV_COUNTS[bench]
    assert len({p.id for p in problems}) == len(problems)
    for p in problems:
        assert isinstance(p, Problem)
        assert p.bench == bench
        assert p.question and p.answer
        assert "id" not in p.extra and "question" not in p.extra and "answer" not in p.extra
        assert (p.task is not None) == (bench == "bbh")


def test_record_fields(data_dir: Path) -> None:
    gsm = load_problems("gsm8k", data_dir=data_dir, limit=1)[0]
    assert gsm.id == "gsm8k/test/0543"
    assert gsm.answer == "6"
    assert "#### 6" in gsm.extra["solution"]
    aqua = load_problems("aqua", data_dir=data_dir, limit=1)[0]
    assert aqua.extra["options"][0].startswith("A)")
    assert aqua.options is not None and set(aqua.options) == set("ABCDE")
    t4d = load_problems("t4d", data_dir=data_dir, limit=1)[0]
    assert t4d.options is not None and t4d.options[t4d.answer] == t4d.extra["answer_text"]
    sqa = load_problems("strategyqa", data_dir=data_dir, limit=1)[0]
    assert sqa.answer in ("yes", "no") and sqa.options is None
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass raises FrozenInstanceError
        gsm.answer = "7"  # type: ignore[misc]


def test_limit_takes_file_order(data_dir: Path) -> None:
    everything = load_problems("math500", data_dir=data_dir)
    first = load_problems("math500", data_dir=data_dir, limit=7)
    assert [p.id for p in first] == [p.id for p in everything[:7]]
    assert load_problems("math500", data_dir=data_dir, limit=0) == []
    assert len(load_problems("aqua", data_dir=data_dir, limit=10_000)) == _DEV_COUNTS["aqua"]


def test_bbh_limit_spreads_over_tasks(data_dir: Path) -> None:
    problems = load_problems("bbh", data_dir=data_dir, limit=54)
    counts = Counter(p.task for p in problems)
    assert set(counts) == set(BBH_TASKS)
    assert set(counts.values()) == {2}
    # Round-robin: one item of every task before the second of any, each task in file order.
    assert len({p.task for p in problems[:27]}) == 27
    full = load_problems("bbh", data_dir=data_dir)
    for task in BBH_TASKS:
        in_file = [p.id for p in full if p.task == task][:2]
        assert [p.id for p in problems if p.task == task] == in_file
    assert load_problems("bbh", data_dir=data_dir, limit=54) == problems  # deterministic


def test_bbh_small_limit_and_exhausted_tasks(data_dir: Path) -> None:
    assert len({p.task for p in load_problems("bbh", data_dir=data_dir, limit=5)}) == 5
    # penguins_in_a_table has 44 dev items, so at 60 per task it runs out and the others fill in.
    problems = load_problems("bbh", data_dir=data_dir, limit=60 * 27)
    counts = Counter(p.task for p in problems)
    assert counts["penguins_in_a_table"] == 44
    assert len(problems) == 60 * 27


def test_bbh_single_task(data_dir: Path) -> None:
    problems = load_problems("bbh:word_sorting", data_dir=data_dir)
    assert len(problems) == 75
    assert {p.task for p in problems} == {"word_sorting"}
    assert [p.id for p in load_problems("bbh:word_sorting", data_dir=data_dir, limit=3)] == [p.id for p in problems[:3]]


def test_other_splits(data_dir: Path) -> None:
    assert len(load_problems("aqua", data_dir=data_dir, split="official_dev", limit=3)) == 3


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("mmlu", UnknownBenchmarkError, "unknown benchmark 'mmlu'.*gsm8k"),
        ("bbh:not_a_task", UnknownTaskError, "unknown BBH task 'not_a_task'.*word_sorting"),
        ("gsm8k:foo", UnknownTaskError, "has no tasks"),
    ],
)
def test_bad_specs(tmp_path: Path, spec: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        load_problems(spec, data_dir=tmp_path)
    assert issubclass(error, ValueError) and issubclass(error, DatasetError)


def test_missing_file(tmp_path: Path) -> None:
    _write(tmp_path, "gsm8k", [_record(1)], split="train")
    with pytest.raises(DataFileNotFoundError, match=r"'dev' split.*available splits: train") as info:
        load_problems("gsm8k", data_dir=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataFileNotFoundError, match="aqua"):
        load_problems("aqua", data_dir=tmp_path)
    with pytest.raises(DataDirNotFoundError):
        load_problems("aqua", data_dir=tmp_path / "nope")


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "gsm8k", [_record(1), "", "{not json", _record(3)])
    with pytest.raises(MalformedDataError, match=re.escape(f"{path}:3: invalid JSON")) as info:
        load_problems("gsm8k", data_dir=tmp_path)
    assert isinstance(info.value, ValueError)
    _write(tmp_path, "aqua", [_record(1), json.dumps({"id": "a", "question": "q"})])
    with pytest.raises(MalformedDataError, match=r"dev\.jsonl:2: record lacks field\(s\) answer"):
        load_problems("aqua", data_dir=tmp_path)
    _write(tmp_path, "t4d", ["[1, 2]"])
    with pytest.raises(MalformedDataError, match=r"dev\.jsonl:1: expected a JSON object"):
        load_problems("t4d", data_dir=tmp_path)


def test_negative_limit(tmp_path: Path) -> None:
    _write(tmp_path, "gsm8k", [_record(1)])
    with pytest.raises(ValueError, match="limit"):
        load_problems("gsm8k", data_dir=tmp_path, limit=-1)


def test_synthetic_round_robin(tmp_path: Path) -> None:
    lines = [_record(i, task="boolean_expressions") for i in range(3)]
    lines += [_record(10 + i, task="snarks") for i in range(1)]
    lines += [_record(20 + i, task="navigate") for i in range(2)]
    _write(tmp_path, "bbh", lines)
    ids = [p.id for p in load_problems("bbh", data_dir=tmp_path, limit=5)]
    assert ids == ["x/0", "x/10", "x/20", "x/1", "x/21"]
    assert [p.id for p in load_problems("bbh", data_dir=tmp_path, limit=100)] == [
        "x/0", "x/10", "x/20", "x/1", "x/21", "x/2",
    ]  # fmt: skip
    assert [p.id for p in load_problems("bbh:navigate", data_dir=tmp_path)] == ["x/20", "x/21"]


def test_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "strategyqa", [_record(1), _record(2)])
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path
    assert [p.answer for p in load_problems("strategyqa")] == ["1", "2"]
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(DataDirNotFoundError, match=DATA_DIR_ENV):
        default_data_dir()


def test_search_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(work)
    assert default_data_dir() == shared.resolve()


def test_missing_dir_names_paths_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "_REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataDirNotFoundError) as info:
        default_data_dir()
    message = str(info.value)
    assert DATA_DIR_ENV in message
    assert str((tmp_path / ".." / "shared" / "data").resolve()) in message
    assert str((tmp_path / "shared" / "data").resolve()) in message
    assert isinstance(info.value, FileNotFoundError)
