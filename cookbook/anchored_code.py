"""Anchored code generation: the task description anchored while a code model writes the function, then the
function run against its tests in the sandbox (Selective Prompt Anchoring's set-up for code).

python cookbook/anchored_code.py                 # Qwen2.5-Coder-0.5B-Instruct, plain decoding (the default)
python cookbook/anchored_code.py --omega 1.5     # the task anchored, at the ω chosen on MBPP validation
python cookbook/anchored_code.py --fast          # SmolLM2-135M, tiny budget: seconds (it cannot really write code)

The default is plain decoding (ω = 1) because anchoring showed no gain where it was measured, HumanEval + MBPP test
(664 problems per model): Qwen2.5-Coder-0.5B 40.2% vs 39.3% Pass@1 (+0.9, p = 0.54), Qwen2.5-Coder-1.5B 55.6% vs
56.2% (-0.6, p = 0.72), at 1.6-1.8x the cost at batch 8 (results/code/README.md).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from PyPI packages, never from a hub

from selfanchor_chains import SteeredHFLLM
from selfanchor_chains.answers.code import mbpp_program
from selfanchor_chains.answers.sandbox import isolation, run_program
from selfanchor_chains.eval.code_methods import CODE_ANCHORED_OMEGA, CodeChain

TASK = "Write a function second_largest(numbers) that returns the second largest distinct value in a list."
TESTS = ["assert second_largest([3, 1, 4, 1, 5]) == 4", "assert second_largest([2, 2, 1]) == 1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="SmolLM2-135M and a tiny token budget")
    parser.add_argument("--model", default=None, help="registry name or local model folder")
    parser.add_argument("--omega", type=float, default=1.0, help=f"1 = plain (default), {CODE_ANCHORED_OMEGA} = tuned")
    args = parser.parse_args(argv)
    model = args.model or ("smollm2-135m" if args.fast else "qwen2.5-coder-0.5b")
    llm = SteeredHFLLM.from_model_id(model, dtype="float32" if args.fast else "auto")

    # The chain writes the chat prompt with the task anchored (escaped: task text is never markup), opens the
    # assistant's turn with ```python and stops at the closing fence, so the reply is code and nothing else.
    method = "code-anchored" if args.omega > 1 else "code-plain"
    chain = CodeChain(llm=llm, method=method, omega=args.omega, max_new_tokens=24 if args.fast else 384)
    reply = chain.invoke({"question": TASK, "test_list": TESTS})
    print(f"--- {method} (ω = {reply['omega']}) wrote:\n{reply['text'].rstrip()}\n---")

    # Model-written code runs only in the sandbox: a subprocess with limits, no network, a throw-away folder.
    verdict = run_program(mbpp_program(reply["text"], TESTS))
    print(f"tests: {'passed' if verdict.passed else 'failed (' + str(verdict.error) + ')'}")
    print(f"sandbox: {', '.join(isolation())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
