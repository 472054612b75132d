"""Device check, the speed and eval half (issue #36, item 7; scripts/gpu_check.sh runs it after the exactness
tests): a speed table of plain / steered / CFG decoding at batch 1 and 8, then a short GSM8K eval (Self-Anchor and
CoT), on CUDA.

The weights: ``--model-dir`` holds a model's config and tokenizer (scripts/gpu_check_prepare.sh copies
SmolLM2-135M's); its ``model.safetensors`` is loaded when present, else the weights are random with the real
architecture — the timings are then real, the eval's accuracy is not (it checks that the whole path runs on the
device: chains, steering, continuous batching, grading). The output says which.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def load(model_dir: Path, dtype: str, device: str) -> tuple[Any, Any, str]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if (model_dir / "model.safetensors").is_file():
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
        weights = "trained"
    else:
        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        weights = "random (architecture only: timings are real, accuracy is not)"
    model = model.to(device)  # type: ignore[arg-type]  # transformers types .to oddly
    return model.eval(), tokenizer, weights


def inputs_follow_the_model(model: Any) -> None:
    """transformers' ``generate`` leaves its inputs where they are; the speed bench builds them on the CPU. Move
    them to the model's device, and wait for the device before the clock stops."""
    import torch

    generate = model.generate

    def on_device(*args: Any, **kwargs: Any) -> Any:
        args = tuple(a.to(model.device) if torch.is_tensor(a) else a for a in args)
        kwargs = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in kwargs.items()}
        out = generate(*args, **kwargs)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        return out

    model.generate = on_device


def speed_table(model: Any, tokenizer: Any, new_tokens: int, repeats: int) -> list[dict[str, Any]]:
    from selfanchor_chains.bench.speed import run_speed_bench

    rows = []
    for batch in (1, 8):
        result = run_speed_bench(
            model, tokenizer, new_tokens=new_tokens, batch=batch, repeats=repeats, methods=("plain", "ours", "cfg")
        )
        rows.append(result)
        rates = result["tokens_per_s"]
        print(f"batch {batch}, tokens/s: " + ", ".join(f"{m} {r:.1f}" for m, r in rates.items()), flush=True)
    return rows


def short_eval(model: Any, tokenizer: Any, data_dir: Path, problems: int, max_new_tokens: int) -> dict[str, Any]:
    from selfanchor_chains import SteeredHFLLM
    from selfanchor_chains.answers import score
    from selfanchor_chains.eval.datasets import load_problems
    from selfanchor_chains.reasoning.chains import CoTChain, SelfAnchorChain

    items = load_problems("gsm8k", data_dir=data_dir, limit=problems)
    llm = SteeredHFLLM(model=model, tokenizer=tokenizer, model_id="gpu-check", max_new_tokens=max_new_tokens)
    out: dict[str, Any] = {"problems": len(items)}
    for name, cls in (("self-anchor", SelfAnchorChain), ("cot", CoTChain)):
        chain = cls(llm=llm, bench="gsm8k", max_new_tokens=max_new_tokens, batch_size=len(items))
        started = time.perf_counter()
        outputs = chain.batch([p.question for p in items])
        seconds = time.perf_counter() - started
        correct = [score("gsm8k", o["text"], p.answer)[1] for o, p in zip(outputs, items, strict=True)]
        tokens = sum(o["usage"].get("completion_tokens", 0) for o in outputs)
        out[name] = {
            "accuracy": sum(correct) / len(items),
            "seconds": seconds,
            "problems_per_min": 60 * len(items) / seconds,
            "completion_tokens": tokens,
            "finish_reasons": sorted({o["finish_reason"] for o in outputs}),
        }
        print(f"eval {name}: {out[name]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description="speed table and short eval on CUDA")
    parser.add_argument("--model-dir", type=Path, default=Path(".gpucheck/smollm2"))
    parser.add_argument("--data-dir", type=Path, default=Path(".gpucheck/data"))
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this check is for a GPU machine", file=sys.stderr)
        return 2
    model, tokenizer, weights = load(args.model_dir, args.dtype, "cuda")
    inputs_follow_the_model(model)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "dtype": args.dtype,
        "weights": weights,
        "model": json.loads((args.model_dir / "config.json").read_text()).get("_name_or_path", str(args.model_dir)),
    }
    print(report, flush=True)
    report["speed"] = speed_table(model, tokenizer, args.new_tokens, args.repeats)
    report["eval"] = short_eval(model, tokenizer, args.data_dir, args.problems, args.max_new_tokens)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
