"""The row-friendly float32 linear: the same product as ``torch.nn.Linear`` (to float rounding), one row through
Linear's own path bit for bit, the same parameters (tied weights stay tied), and a switch that goes both ways."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from selfanchor_chains.models.cpu_linear import use_row_friendly_linears


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 64), (1, 2, 64), (2, 1, 64), (4, 3, 64), (16, 64)])
def test_same_product_as_linear(bias: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 48, bias=bias)
    model = torch.nn.Sequential(copy.deepcopy(layer))
    assert use_row_friendly_linears(model) == 1
    x = torch.randn(*shape)
    got, want = model(x), layer(x)
    assert got.shape == want.shape == (*shape[:-1], 48)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if x.reshape(-1, 64).shape[0] == 1:
        assert torch.equal(got, want)  # one row: Linear's own matrix-vector path, bit for bit


def test_other_dtypes_use_linear_unchanged() -> None:
    layer = torch.nn.Linear(32, 16).to(torch.bfloat16)
    model = torch.nn.Sequential(copy.deepcopy(layer))
    use_row_friendly_linears(model)
    x = torch.randn(4, 32, dtype=torch.bfloat16)
    assert torch.equal(model(x), layer(x))


def test_parameters_ties_and_switching_back(tiny_model: Any) -> None:
    model = copy.deepcopy(tiny_model).float()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    switched = use_row_friendly_linears(model)
    assert switched == len(linears) and all(type(m).__name__ == "RowFriendlyLinear" for m in linears)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    with torch.no_grad():
        fast = model(input_ids=ids).logits
        assert use_row_friendly_linears(model, enabled=False) == switched
        assert all(type(m) is torch.nn.Linear for m in linears)
        stock = model(input_ids=ids).logits
    torch.testing.assert_close(fast, stock, rtol=1e-4, atol=1e-4)
