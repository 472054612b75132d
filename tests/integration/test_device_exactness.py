"""The engine's exactness on an accelerator (issue #36, item 7): run by scripts/gpu_check.sh with
``SELFANCHOR_TEST_DEVICE=cuda``; skipped unless that variable names a device (``cpu`` checks the tests themselves).

A tiny random Llama (built in code: no weights travel to the device machine), float32: every steered step equals
ω·l_orig + (1−ω)·l_masked from cache-free forwards, greedy steering equals transformers' CFG, and rows decoded in a
batch or in a shared session (concurrent calls) equal the same rows decoded alone.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import torch

from tests.cfg_reference import cfg_greedy_tokens, reference_steered_logits

DEVICE = os.environ.get("SELFANCHOR_TEST_DEVICE")

pytestmark = [
    pytest.mark.skipif(DEVICE is None, reason="set SELFANCHOR_TEST_DEVICE (scripts/gpu_check.sh sets cuda)"),
    pytest.mark.skipif(
        DEVICE is not None and DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA here"
    ),
]

PROMPTS = ["Question: Tom has 3 apples and buys 5 more. How many?\nAnswer:", "The capital of France is"]
ATOL = 2e-4  # float32 logits of size ~10: a cached step and a whole-sequence forward round differently


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from tests.conftest import build_byte_tokenizer

    return build_byte_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer: Any) -> Any:
    from tests.conftest import build_tiny_llama

    if DEVICE is not None and DEVICE.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # exactness is checked in true float32
    return build_tiny_llama(len(tokenizer), tokenizer=tokenizer).to(DEVICE)


def test_every_step_matches_cache_free_forwards(model: Any, tokenizer: Any) -> None:
    from selfanchor_chains.engine import RowRequest, SteeredDecoder

    ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    rows = [RowRequest(ids[0], [(10, 40)], 1.8), RowRequest(ids[1], [(4, 11)], 1.4)]
    session = SteeredDecoder(model, tokenizer, eos_token_ids=[]).start(rows, max_new_tokens=8)
    steps = 0
    for _ in session:
        steps += 1
        for k, i in enumerate(session.last_rows):
            seq = list(rows[i].prompt_ids) + session.generated_ids(i)[:-1]
            expected = reference_steered_logits(model, seq, rows[i].anchor_spans, rows[i].omega)
            got = session.last_logits[k].to(expected.device)
            assert torch.allclose(got, expected, atol=ATOL), (got - expected).abs().max()
    assert steps == 8


def test_greedy_steering_equals_transformers_cfg(model: Any, tokenizer: Any) -> None:
    from selfanchor_chains.engine import RowRequest, SteeredDecoder

    ids = tokenizer(PROMPTS[0])["input_ids"]
    ours = SteeredDecoder(model, tokenizer, eos_token_ids=[]).generate(
        [RowRequest(ids, [(10, 40)], 1.8)], max_new_tokens=16
    )
    assert ours[0].token_ids == cfg_greedy_tokens(model, ids, (10, 40), 1.8, 16, tokenizer.pad_token_id)


def test_batched_and_concurrent_rows_equal_rows_decoded_alone(model: Any, tokenizer: Any) -> None:
    from selfanchor_chains import SteeredHFLLM

    llm = SteeredHFLLM(model=model, tokenizer=tokenizer, model_id="tiny", omega=1.5, max_new_tokens=12)
    llm.runtime.decoder.eos_token_ids = frozenset()  # full budgets: the rows overlap for their whole length
    prompts = [f"<anchor>{p}</anchor> Go on." for p in PROMPTS] + ["Plain text, no anchor."]
    alone = [llm.invoke(p) for p in prompts]
    assert llm.batch(prompts) == alone
    got: dict[int, str] = {}

    def call(k: int) -> None:
        got[k] = llm.invoke(prompts[k])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [got.get(k) for k in range(len(prompts))] == alone
