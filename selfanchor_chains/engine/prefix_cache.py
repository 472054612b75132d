"""Shared prompt prefixes: the keys and values of a prefix every row of a batch shares (a system prompt, the
instructions, a chat's earlier turns), kept across sessions so that later prompts starting the same way skip them.

One place holds all of it: what is stored (least recently used first out, within a token budget), how a batch
finds the longest stored prefix it shares, how that prefix is laid out over the batch's left-padded rows, and what
a batch stores after its prefill.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""Per-layer (keys, values), each ``(rows, heads, columns, head_dim)``."""

MIN_SHARED_PREFIX = 16  # shorter shared prompt prefixes are not worth storing or looking up


def agreement(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def common_prefix(prompts: Sequence[Sequence[int]], width: int) -> int:
    """Length of the token prefix all prompts share, short of the batch's last column (its logits are needed)."""
    first = prompts[0]
    common = min(len(first), width - 1)
    for prompt in prompts[1:]:
        common = min(common, agreement(first, prompt))
    return common


class PrefixCache:
    """Keys and values of prompt prefixes, one row each with positions from 0, under a budget of ``max_tokens``.

    Args:
        max_tokens: How many prefix tokens (over all stored prefixes) to keep; 0 turns the cache off.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.entries: OrderedDict[tuple[int, ...], Layers] = OrderedDict()
        self._lock = threading.Lock()  # sessions of several threads share one decoder

    def lookup(
        self, tokens: Sequence[int], device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[int, Layers | None]:
        """The stored prefix agreeing longest with ``tokens``: (tokens agreed, its per-layer keys and values).

        The stored tensors may be longer than the agreement; only their first ``agreed`` columns apply. Prefixes
        stored for another device or dtype than the given ones (the model moved since) are passed over.
        """
        best, layers, best_key = 0, None, None
        with self._lock:
            for key, value in self.entries.items():
                keys = value[0][0]
                if device is not None and (keys.device, keys.dtype) != (device, dtype):
                    continue
                agreed = min(agreement(key, tokens), len(tokens))
                if agreed > best:
                    best, layers, best_key = agreed, value, key
            if best_key is not None:
                self.entries.move_to_end(best_key)
        return best, layers

    def store(self, tokens: Sequence[int], layers: Layers) -> None:
        """Keep a prefix's keys and values, evicting the least recently used while over the budget."""
        key = tuple(int(t) for t in tokens)
        if len(key) > self.max_tokens:
            return
        with self._lock:
            self.entries[key] = layers
            self.entries.move_to_end(key)
            while sum(len(k) for k in self.entries) > self.max_tokens:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def fill_batch(
        self, prompts: Sequence[Sequence[int]], offsets: Sequence[int], common: int, weights: torch.Tensor | None
    ) -> tuple[int, Layers | None]:
        """The batch's cache over the longest stored prefix its rows share, laid out over their left padding.

        Args:
            prompts: The rows' prompts.
            offsets: Each row's left padding (columns before its first token).
            common: Tokens all prompts share (:func:`common_prefix`).
            weights: A weight of the model, for its device and dtype.

        Returns:
            (columns covered, the per-layer keys and values for every row), or ``(0, None)`` when nothing useful
            is stored.
        """
        device, dtype = (weights.device, weights.dtype) if weights is not None else (None, None)
        agreed, stored = self.lookup(prompts[0][:common], device, dtype)
        if stored is None or agreed < MIN_SHARED_PREFIX:
            return 0, None
        layers = []
        for keys, values in stored:
            new_keys = keys.new_zeros((len(prompts), keys.shape[1], agreed, keys.shape[3]))
            new_values = values.new_zeros((len(prompts), values.shape[1], agreed, values.shape[3]))
            for k, offset in enumerate(offsets):
                if offset < agreed:
                    new_keys[k, :, offset:] = keys[0, :, : agreed - offset]
                    new_values[k, :, offset:] = values[0, :, : agreed - offset]
            layers.append((new_keys, new_values))
        return agreed, layers

    def keep_batch_prefix(
        self, prompts: Sequence[Sequence[int]], common: int, batch_layers: Layers, weights: torch.Tensor | None
    ) -> None:
        """After a prefill, store the batch's shared prefix unless a prefix about as long is stored already.

        Args:
            prompts: The rows' prompts.
            common: Tokens all prompts share.
            batch_layers: The batch's prefilled keys and values (rows right-aligned over left padding).
            weights: A weight of the model, for its device and dtype.
        """
        if common < MIN_SHARED_PREFIX:
            return
        device, dtype = (weights.device, weights.dtype) if weights is not None else (None, None)
        agreed, _ = self.lookup(prompts[0][:common], device, dtype)
        if common - agreed < MIN_SHARED_PREFIX:
            return  # an entry at least this useful is already stored
        longest = max(range(len(prompts)), key=lambda k: (len(prompts[k]), -k))  # no left padding
        self.store(
            prompts[0][:common],
            [
                (k[longest : longest + 1, :, :common].clone(), v[longest : longest + 1, :, :common].clone())
                for k, v in batch_layers
            ],
        )
