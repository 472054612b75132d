"""Compare Self-Anchor template wordings on GSM8K *train* items (never the dev items the evaluation reports).

Prints, per variant: accuracy, how many reasoning steps actually compute something ("= <number>"), tokens, wall
time and finish reasons. Used to decide on the template's wording without tuning it to the evaluation items:

    python scripts/compare_templates.py --offset 0 --problems 24 --variants current,compute,cot
    python scripts/compare_templates.py --offset 0 --problems 48 --variants gentle,structure --save out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

COMPUTE_SYSTEM = (
    "Solve the problem by alternating short plans and reasoning. {core}\n"
    "Use exactly this format:\n"
    "Plan 1: <one sentence: the first thing to find out>\n"
    "Reasoning 1: <find it: write out each calculation or fact with its result>\n"
    "Plan 2: <one sentence: the next thing to find out>\n"
    "Reasoning 2: <find it: write out each calculation or fact with its result>\n"
    "(more plan and reasoning steps until the question itself is answered)\n"
    "Final Answer: <the answer only>\n"
    "{{hint}}"
)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--variants",
        default="current,compute,cot",
        help="current, compute (reworded template), cot, structure (ω = 1), gentle (ω from 1.25, at most 1.5)",
    )
    parser.add_argument("--save", default=None, help="write every solve's text and correctness here (JSON)")
    args = parser.parse_args()

    from selfanchor_chains.answers import is_correct
    from selfanchor_chains.eval.datasets import load_problems
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from selfanchor_chains.prompting import templates as prompts
    from selfanchor_chains.reasoning.chains import CoTChain, SelfAnchorChain
    from selfanchor_chains.reasoning.schedules import ConfidenceOmega, ConstantOmega

    compute = prompts.ReasoningTemplate(
        name="self-anchor", system=COMPUTE_SYSTEM.format(core=prompts._CORE), assistant_prefix="Plan 1:"
    )
    llm = SteeredHFLLM.from_model_id(args.model)
    chains = {
        "current": SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=512),
        "compute": SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=512, template=compute),
        "cot": CoTChain(llm=llm, bench="gsm8k", max_new_tokens=512),
        "structure": SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=512, schedule=ConstantOmega(1.0)),
        "gentle": SelfAnchorChain(
            llm=llm, bench="gsm8k", max_new_tokens=512, schedule=ConfidenceOmega(omega_init=1.25, omega_max=1.5)
        ),
    }
    saved: dict[str, list[dict[str, object]]] = {}
    problems = load_problems("gsm8k", split="train", limit=args.offset + args.problems)[args.offset :]
    for variant in args.variants.split(","):
        start, outputs = time.perf_counter(), []
        for i in range(0, len(problems), args.batch):
            outputs += chains[variant].batch([p.question for p in problems[i : i + args.batch]])
        wall = time.perf_counter() - start
        correct = sum(is_correct("gsm8k", o["answer"], p.answer) for o, p in zip(outputs, problems, strict=True))
        steps = [s for o in outputs for s in o["steps"] if s["kind"] == "reasoning"]
        computing = sum(bool(re.search(r"=\s*\$?-?\d", s["text"])) for s in steps)
        reasons: dict[str, int] = {}
        for o in outputs:
            reasons[o["finish_reason"]] = reasons.get(o["finish_reason"], 0) + 1
        tokens = sum(o["usage"]["completion_tokens"] for o in outputs)
        saved[variant] = [
            {
                "id": p.id,
                "question": p.question,
                "correct": is_correct("gsm8k", o["answer"], p.answer),
                "text": o["text"],
            }
            for o, p in zip(outputs, problems, strict=True)
        ]
        if args.save:
            Path(args.save).write_text(json.dumps(saved, indent=1))
        print(
            f"{variant}: accuracy {correct}/{len(problems)}, reasoning steps computing {computing}/{len(steps)}, "
            f"tokens {tokens}, {wall:.0f} s, {reasons}",
            flush=True,
        )


if __name__ == "__main__":
    main()
