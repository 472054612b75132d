"""Quickstart: a steered LLM with anchors written as markup, then one Self-Anchor solve streamed step by step.

python cookbook/quickstart.py           # Qwen2.5-Coder-0.5B-Instruct
python cookbook/quickstart.py --fast    # SmolLM2-135M, tiny budgets: seconds (it cannot really reason)
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from PyPI packages, never from a hub

from selfanchor_chains import SelfAnchorChain, SteeredHFLLM
from selfanchor_chains.prompting.markup import anchor

QUESTION = "A baker bakes 7 trays of 12 muffins and gives away 15 of them. How many muffins are left?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="SmolLM2-135M and tiny token budgets")
    parser.add_argument("--model", default=None, help="registry name or local model folder")
    args = parser.parse_args(argv)
    model = args.model or ("smollm2-135m" if args.fast else "qwen2.5-coder-0.5b")
    budget = 48 if args.fast else 384

    llm = SteeredHFLLM.from_model_id(model, dtype="float32" if args.fast else "auto", omega=1.5)

    # 1. The LLM alone. anchor() escapes the text and marks it; while decoding, the logits are
    #    ω·l_orig + (1−ω)·l_masked with the question hidden from the masked branch, so the model leans on it.
    prompt = f"Question: {anchor(QUESTION)}\nAnswer with one number."
    print("LLM:", llm.invoke(prompt, max_new_tokens=16 if args.fast else 64).strip())

    # 2. Self-Anchor: Plan/Reasoning steps; each step anchors the question (and its plan), ω follows confidence.
    chain = SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=budget)
    output: dict = {}
    for chunk in chain.stream(QUESTION):
        if "step" in chunk:
            step = chunk["step"]
            print(f"  [{step['kind']} {step['index']}] ω={step['omega']:.2f} {step['text'].strip()[:100]}")
        elif "output" in chunk:
            output = chunk["output"]
    print(f"Self-Anchor answer: {output['answer']!r} (finish: {output['finish_reason']}, gold: 69)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
