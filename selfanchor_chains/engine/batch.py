"""The batch a decode session runs: left-padded token columns, which are real and which are anchors, the two
branches' inputs derived from them, and the KV cache layout.

Rows are right-aligned: token t of a row of length n sits in column W − n + t. Cache layout: *fused* → one cache of
2B rows (original rows first, then the masked rows); *split* → ``_cache`` (the B original rows) plus ``_mask_cache``
(the masked rows, parked, maybe shorter), used while no row steers.
"""

from __future__ import annotations

from typing import Any

import torch

from .causal_lm import DecoderModel
from .requests import DecodingStats, RowRequest, SamplingConfig
from .rows import RowState


class BatchState:
    """State shared by the session and its parts (:mod:`.masked_branch`, :mod:`.admission`)."""

    _decoder: DecoderModel
    max_new_tokens: int
    sampling: SamplingConfig
    _stop: tuple[str, ...]
    stats: DecodingStats
    _rows: list[RowState]  # every row of the session, by row index
    _prompts: list[list[int]]
    _waiting: list[RowRequest]  # rows added while decoding; they join at the next step
    _active: list[int]  # row indices of the rows in the batch, in batch order
    _ids: torch.Tensor  # (B, W) token ids
    _real: torch.Tensor  # (B, W) not padding
    _hidden: torch.Tensor  # (B, W) anchor columns
    _cache: Any  # fused (2B rows) when ``_fused``, else the original rows
    _mask_cache: Any  # the parked masked rows while split
    _fused: bool
    _cached: int  # columns held by the original rows' cache

    def _setup_batch(self) -> None:
        width = max(r.prompt_len for r in self._rows)
        pad = self._decoder.pad_token_id
        self._active = list(range(len(self._rows)))
        self._ids = torch.full((len(self._rows), width), pad, dtype=torch.long)
        self._real = torch.zeros((len(self._rows), width), dtype=torch.bool)
        self._hidden = torch.zeros_like(self._real)
        for k, (row, prompt) in enumerate(zip(self._rows, self._prompts, strict=True)):
            offset = width - row.prompt_len
            self._ids[k, offset:] = torch.tensor(prompt, dtype=torch.long)
            self._real[k, offset:] = True
            for start, end in row.anchors:
                self._hidden[k, offset + start : offset + end] = True
            row.anchor_history = [list(row.anchors)]
        self._cache = self._decoder.new_cache()
        self._mask_cache = None
        self._fused = False
        self._cached = 0

    def _positions(self) -> torch.Tensor:
        return (self._real.long().cumsum(-1) - 1).clamp(min=0)

    def _replacing(self) -> torch.Tensor:
        """``(B, 1)``: which active rows show a neutral token at anchor columns instead of hiding them."""
        return torch.tensor([[self._rows[i].replace_anchors] for i in self._active], dtype=torch.bool)

    def _masked_attention(self) -> torch.Tensor:
        # Hidden anchors are left out of attention; replaced ones stay visible (as the neutral token).
        return (self._real & ~(self._hidden & ~self._replacing())).long()

    def _masked_ids(self) -> torch.Tensor:
        """The masked rows' input ids: anchor columns of replacing rows hold the neutral token."""
        return torch.where(self._hidden & self._replacing(), self._decoder.neutral_token_id, self._ids)

    def _offset(self, k: int) -> int:
        return self._ids.shape[1] - self._rows[self._active[k]].length

    def _count_prefill(self, per_row: list[int]) -> None:
        self.stats.prefill_tokens += int(sum(per_row))
        for k, n in enumerate(per_row):
            self.stats._add(self.stats.row_prefill_tokens, self._active[k], int(n))
