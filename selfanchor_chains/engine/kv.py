"""Plain per-layer key/value tensors in and out of transformers' ``DynamicCache``."""

from __future__ import annotations

from typing import Any

import torch


def cache_from_tensors(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)


def layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    for layer in cache.layers:
        if type(layer).__name__ != "DynamicLayer":
            raise NotImplementedError(f"steered decoding needs full-attention cache layers, got {type(layer).__name__}")
    return [(layer.keys, layer.values) for layer in cache.layers]


def pad_columns(t: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad a ``(rows, heads, columns, dim)`` key or value tensor with zero columns up to ``width``."""
    n = width - t.shape[2]
    return torch.cat([t.new_zeros((*t.shape[:2], n, t.shape[3])), t], dim=2) if n > 0 else t
