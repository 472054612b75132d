"""float32 linear layers that stay fast with a few rows on the CPU (issue #11).

``torch.nn.Linear`` computes ``x @ Wᵀ``. With float32 weights and 2–16 input rows the CPU BLAS takes a slow path
for that layout, while the same product computed as ``(W @ xᵀ)ᵀ`` runs several times faster (this project's CPU,
AVX-512, two threads, minimum of 5 blocks; ``W`` is 4864 × 896, then the 151936 × 896 output head of
Qwen2.5-Coder-0.5B):

======================  ==========  ==========  ===========
rows                    1           2           16
======================  ==========  ==========  ===========
``x @ Wᵀ`` (Linear)     0.43 / 43   1.01 / 95   1.93 / 115
``(W @ xᵀ)ᵀ``           0.74 / 46   0.45 / 21   1.31 / 84
======================  ==========  ==========  ===========

(ms, 896→4864 / 896→151936.) The steered engine's batch-1 forward carries two rows (the original and the masked
branch), so in float32 this layout is what keeps the second branch from doubling the cost. One row keeps
``Linear``'s own matrix-vector path, so plain single-sequence decoding is unchanged. The product is the same up to
float rounding (summation order), as ``Linear`` itself already differs between row counts.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _row_friendly_class() -> Any:
    import torch
    import torch.nn.functional as F

    class RowFriendlyLinear(torch.nn.Linear):
        """A ``Linear`` whose product with two or more rows is computed as ``(W @ xᵀ)ᵀ`` (same weights, no copy)."""

        def forward(self, input: torch.Tensor) -> torch.Tensor:
            flat = input.reshape(-1, self.in_features)
            if flat.shape[0] < 2 or input.dtype != torch.float32 or input.device.type != "cpu":
                return F.linear(input, self.weight, self.bias)
            out = (self.weight @ flat.T).T
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*input.shape[:-1], self.out_features)

    return RowFriendlyLinear


def use_row_friendly_linears(model: Any, enabled: bool = True) -> int:
    """Switch ``model``'s plain ``torch.nn.Linear`` layers to the row-friendly product (or back, ``enabled=False``).

    The layers keep their parameters (tied weights stay tied), hooks and state dict; only ``forward`` changes.

    Returns:
        How many layers were switched.
    """
    import torch

    cls = _row_friendly_class()
    source, target = (torch.nn.Linear, cls) if enabled else (cls, torch.nn.Linear)
    switched = 0
    for module in model.modules():
        if type(module) is source:
            module.__class__ = target
            switched += 1
    return switched
