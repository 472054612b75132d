"""Time one linear layer (Qwen2.5-0.5B's 896 -> 4864 MLP projection) per kernel and row count (issue #11).

    python scripts/layer_kernels.py [--threads 1,2] [--json out.json]

Rows 1, 2, 4, 8, 16 stand for batch 1 / 2 / ... decoding; "2 rows / 1 row" is what the steering engine's second
(masked) branch costs per layer at batch 1. Kernels: float32 and bfloat16 dense; int8 weight-only as
selfanchor_chains.models.quantization runs it (aten._weight_int8pack_mm) and torchao's own eager int8 path; torchao's
int4 CPU layout (Int4OpaqueTensor, group 64); the quantized ones also with float32 activations. Each cell is the
minimum over 6 blocks of 10 calls (robust to a shared machine, not immune to it).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
import warnings
from typing import Any

import torch

K, N, ROWS = 896, 4864, (1, 2, 4, 8, 16)


def _time(fn: Any, x: torch.Tensor, blocks: int = 6, calls: int = 10) -> float:
    for _ in range(5):
        fn(x)
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            fn(x)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def _variants(base: torch.nn.Linear) -> dict[str, tuple[Any, torch.dtype]]:
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    from selfanchor_chains.models.quantization import INT4_GROUP_SIZE, _int8_linear_class, _to_int8

    bf16 = copy.deepcopy(base).to(torch.bfloat16)
    int8 = _to_int8(bf16, _int8_linear_class())
    int4 = copy.deepcopy(bf16)
    quantize_(int4, PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, set_inductor_config=False))
    ao_int8 = copy.deepcopy(bf16)
    quantize_(ao_int8, Int8WeightOnlyConfig(set_inductor_config=False))
    return {
        "float32": (base, torch.float32),
        "bfloat16": (bf16, torch.bfloat16),
        "int8 (aten._weight_int8pack_mm)": (int8, torch.bfloat16),
        "int4 (torchao Int4OpaqueTensor)": (int4, torch.bfloat16),
        "int8 (torchao eager Int8WeightOnlyConfig)": (ao_int8, torch.bfloat16),
        "int8 (aten), float32 activations": (_to_int8(base, _int8_linear_class()), torch.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    variants = _variants(torch.nn.Linear(K, N, bias=False))
    result: dict[str, Any] = {"layer": f"{K}->{N}", "rows": ROWS, "unit": "ms, min over 6 blocks of 10", "ms": {}}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for name, (layer, act) in variants.items():
            with torch.inference_mode():
                ms = [_time(layer, torch.randn(m, K, dtype=act)) for m in ROWS]
            result["ms"][f"{threads} threads / {name}"] = ms
            cells = " ".join(f"{v:7.3f}" for v in ms)
            print(f"{threads}t {name:>42}: {cells}   2 rows / 1 row = {ms[1] / ms[0]:.2f}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
