"""Self-Anchor solves on llama.cpp beside the torch engine on the same weights: how often the answers agree
(issue #37: >= 95% of 100 GSM8K train items with a float16 GGUF; quantised GGUFs reported).

    python scripts/llamacpp_agreement.py --model qwen2.5-coder-0.5b --gguf-type f16 --items 100 \
        --log evals/llamacpp/agreement-qwen2.5-coder-0.5b-f16.jsonl \
        --json results/llamacpp/agreement-qwen2.5-coder-0.5b-f16.json

The registry model's GGUF is re-encoded by llama.cpp itself (``llama_model_quantize``) to float16, float32 or
Q8_0 (``--gguf-type native`` keeps the shipped quantisation); the torch engine loads the very same file, dequantised to
float32, so both engines hold the same weights. Each engine solves the items with ``SelfAnchorChain`` (the solve
default: plan/reason steps, Self-Anchor's ω schedule, greedy) through ``--batch`` continuously refilled slots; llama.cpp
keeps its default float16 KV cache (what a user gets). Per item the log holds both answers and whether the whole
texts are equal; a rerun resumes, skipping the items an engine already solved. One model job on the CPU at a time.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from llamacpp_speed import cpu_model

# llama.cpp file types a GGUF can be re-encoded to ("native": the shipped file as it is).
GGUF_TYPES = {"f16": "LLAMA_FTYPE_MOSTLY_F16", "f32": "LLAMA_FTYPE_ALL_F32", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}


def reencode_gguf(source: Path, gguf_type: str, folder: Path) -> Path:
    """``source`` re-encoded by llama.cpp to ``gguf_type`` under ``folder`` (reused when already there)."""
    import llama_cpp

    if gguf_type == "native":
        return source
    dest = folder / f"{source.stem}-{gguf_type}.gguf"
    if dest.is_file():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, GGUF_TYPES[gguf_type])
    params.allow_requantize = True
    params.nthread = 2
    if llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params) != 0:
        raise SystemExit(f"llama.cpp could not re-encode {source} to {gguf_type}")
    partial.rename(dest)  # only a complete file gets the name that is reused
    return dest


def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """Per-item records so far, keyed by engine then item id (a torn last line from a killed run is skipped)."""
    done: dict[str, dict[str, Any]] = {"torch": {}, "llama.cpp": {}}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[record["engine"]][record["id"]] = record
    return done


def solve_all(engine: str, llm: Any, problems: list[Any], done: dict[str, Any], log: Path, batch: int) -> None:
    """Solve the problems ``done`` lacks, appending one record per finished problem to ``log``."""
    from selfanchor_chains import SelfAnchorChain
    from selfanchor_chains.answers.grading import grade

    todo = [p for p in problems if p.id not in done]
    if not todo:
        return
    chain = SelfAnchorChain(llm=llm, bench="gsm8k", batch_size=batch)
    start = time.perf_counter()
    with log.open("a") as out:
        for index, output in chain.as_completed([p.question for p in todo]):
            problem = todo[index]
            record = {
                "engine": engine,
                "id": problem.id,
                "answer": output["answer"],
                "correct": grade("gsm8k", output["answer"], problem.answer).correct,
                "text": output["text"],
                "seconds_since_start": round(time.perf_counter() - start, 1),
            }
            done[problem.id] = record
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(f"[{engine}] {len(done)}/{len(problems)} {problem.id}: {output['answer']!r}", flush=True)


def summarise(problems: list[Any], done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ids = [p.id for p in problems if p.id in done["torch"] and p.id in done["llama.cpp"]]
    torch_side, llama_side = done["torch"], done["llama.cpp"]
    same_answer = [i for i in ids if torch_side[i]["answer"] == llama_side[i]["answer"]]
    same_text = [i for i in ids if torch_side[i]["text"] == llama_side[i]["text"]]
    return {
        "n": len(ids),
        "same_answer": len(same_answer),
        "same_answer_rate": 100 * len(same_answer) / len(ids) if ids else None,
        "same_text": len(same_text),
        "correct": {engine: sum(bool(done[engine][i]["correct"]) for i in ids) for engine in done},
        "different_answers": [i for i in ids if i not in same_answer],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="registry name")
    parser.add_argument("--gguf-type", choices=[*GGUF_TYPES, "native"], default="f16")
    parser.add_argument("--items", type=int, default=100, help="the first N items of the split")
    parser.add_argument("--split", default="train", help="a GSM8K training pool")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch", type=int, default=8, help="problems decoded together (continuous batching)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gguf-dir", type=Path, default=Path("evals/llamacpp/gguf"))
    parser.add_argument("--log", type=Path, required=True, help="per-item JSONL (appended; a rerun resumes)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args()
    if args.items < 1 or args.batch < 1 or args.threads < 1:
        parser.error("--items, --batch and --threads must be positive")

    import torch

    from selfanchor_chains import SteeredHFLLM
    from selfanchor_chains.engine.llamacpp_model import LlamaCppModel
    from selfanchor_chains.eval.datasets import load_problems
    from selfanchor_chains.langchain.llamacpp_llm import SteeredLlamaCpp, load_gguf_tokenizer
    from selfanchor_chains.models.cache import resolve_gguf
    from selfanchor_chains.models.loading import _load_from_gguf, _prepare

    problems = load_problems("gsm8k", data_dir=args.data_dir, split=args.split, limit=args.items)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    done = read_log(args.log)
    gguf = reencode_gguf(resolve_gguf(args.model), args.gguf_type, args.gguf_dir)
    tokenizer = load_gguf_tokenizer(gguf)
    model_id = f"{args.model}@{args.gguf_type}"

    torch.set_num_threads(args.threads)
    torch_model, _ = _load_from_gguf(gguf, "float32")
    _prepare(torch_model, tokenizer)
    torch_llm = SteeredHFLLM(model=torch_model, tokenizer=tokenizer, model_id=model_id)
    solve_all("torch", torch_llm, problems, done["torch"], args.log, args.batch)
    del torch_llm, torch_model

    llama_model = LlamaCppModel(gguf, n_ctx=args.batch * 2 * 2048, slots=2 * args.batch, n_threads=args.threads)
    try:
        llama_llm = SteeredLlamaCpp(model=llama_model, tokenizer=tokenizer, model_id=model_id)
        solve_all("llama.cpp", llama_llm, problems, done["llama.cpp"], args.log, args.batch)
    finally:
        llama_model.close()

    summary = {"model": args.model, "gguf_type": args.gguf_type, "split": args.split, "cpu": cpu_model()}
    summary |= {"command": shlex.join(["python", *sys.argv])}
    summary |= summarise(problems, done)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
