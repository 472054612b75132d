"""Issue #16's measurement: a distributed evaluation (Ray, 2 single-threaded workers) against one process with 2
threads on the same items, and Ray's overhead per item (1 worker: the driver's wall time beyond the worker's own).

    python scripts/ray_overhead.py --items 24 --json results/ray/overhead.json

SmolLM2-135M, float32 (exact, so the records must be identical), CoT, greedy. On 2 cores this shows overhead, not
scale: the two workers share the cores that the single process uses with 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    import ray
    import torch

    from selfanchor_chains import SteeredHFLLM
    from selfanchor_chains.eval.distributed import WorkerSpec, run_eval_ray
    from selfanchor_chains.eval.runner import run_eval
    from selfanchor_chains.eval.store import read_records

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    options = {"limit": args.items, "batch_size": args.batch, "split": "dev"}
    worker = WorkerSpec(model="smollm2-135m", dtype="float32", threads=1, max_new_tokens=args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.set_num_threads(2)
        llm = SteeredHFLLM.from_model_id("smollm2-135m", dtype="float32")
        began = time.perf_counter()
        run_eval("gsm8k", "cot", llm, root / "local", max_new_tokens=args.tokens, progress=False, **options)
        local_s = time.perf_counter() - began
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            began = time.perf_counter()
            two = run_eval_ray("gsm8k", "cot", worker, root / "ray2", workers=2, **options)
            two_s = time.perf_counter() - began
            one = run_eval_ray("gsm8k", "cot", worker, root / "ray1", workers=1, **options)
        finally:
            ray.shutdown()
        local = {r["id"]: (r["text"], r["prediction"]) for r in read_records(root / "local" / "gsm8k" / "cot.jsonl")}
        remote = {r["id"]: (r["text"], r["prediction"]) for r in read_records(root / "ray2" / "gsm8k" / "cot.jsonl")}
    item_s = one["worker_seconds"] / one["items"]
    result = {
        "command": "python scripts/ray_overhead.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "items": args.items,
        "identical_records": local == remote,
        "local_2_threads_items_per_min": 60 * args.items / local_s,
        "ray_2_workers_items_per_min": 60 * args.items / two_s,
        "ray_2_workers_wall_incl_startup_s": two_s,
        "ray_2_workers_shards": two["shards"],
        "ray_1_worker": {k: one[k] for k in ("items", "shards", "worker_seconds", "wall_seconds")},
        "worker_seconds_per_item": item_s,
        "overhead_seconds_per_item": one["overhead_seconds_per_item"],
        "overhead_share_of_item": one["overhead_seconds_per_item"] / item_s,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
