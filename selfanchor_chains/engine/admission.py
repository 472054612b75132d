"""Continuous batching: rows added to a running session are prefilled as a batch of their own and joined to the
running one at the next step (or replace it when every row has finished)."""

from __future__ import annotations

from typing import Any, cast

import torch

from .batch import BatchState
from .kv import cache_from_tensors, layer_tensors, pad_columns
from .requests import DecodingStats, RowRequest
from .rows import RowState


class ContinuousAdmission(BatchState):
    """Admitting waiting rows, a part of :class:`~selfanchor_chains.engine.session.DecodeSession`."""

    def _batch_of(self, rows: list[RowRequest]) -> Any:
        """A new session of this kind over ``rows``, with this one's settings (not started)."""
        return cast(Any, type(self))(
            self._decoder, rows, max_new_tokens=self.max_new_tokens, sampling=self.sampling, stop=self._stop
        )

    def _renumbered(self, first: int) -> list[RowState]:
        for j, row in enumerate(self._rows):
            row.request_index = first + j
        return self._rows

    # -- continuous batching -----------------------------------------------------------------------------------------

    def _admit(
        self, logits_o: torch.Tensor | None, logits_m: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prefill the waiting rows as a batch of their own, then join them to this one (or replace it if empty).

        Both batches are right-aligned, so joining pads the narrower one on the left; the caches were brought to
        the same layout first (both fused when the batch steers, else both split, the masked rows parked nowhere:
        a later fuse recomputes them, as :meth:`_fuse` does for columns it never computed).
        """
        base = len(self._rows)
        joining = self._batch_of(self._waiting)
        self._waiting = []
        self._rows += joining._renumbered(base)
        self._prompts += joining._prompts
        joining._setup_batch()
        new_o, new_m = joining._prefill()
        if self._fused and self._active and not joining._fused:
            # The joining rows do not steer (yet); the fused batch keeps every row's masked branch current.
            joining._fuse()
            new_m = new_o.clone()
        self._add_stats(joining.stats, base)
        if logits_o is None or not self._active:  # nothing running: the joining rows are the batch
            self._ids, self._real, self._hidden = joining._ids, joining._real, joining._hidden
            self._cache, self._mask_cache = joining._cache, joining._mask_cache
            self._fused, self._cached = joining._fused, joining._cached
            self._active = [base + k for k in joining._active]
            return new_o, new_m
        width = max(self._cached, joining._cached)
        old_rows = len(self._active)

        def pad(t: torch.Tensor, value: Any) -> torch.Tensor:
            n = width - t.shape[1]
            return torch.cat([torch.full((t.shape[0], n), value, dtype=t.dtype), t], dim=1) if n else t

        pad_id = self._decoder.pad_token_id
        self._ids = torch.cat([pad(self._ids, pad_id), pad(joining._ids, pad_id)])
        self._real = torch.cat([pad(self._real, False), pad(joining._real, False)])
        self._hidden = torch.cat([pad(self._hidden, False), pad(joining._hidden, False)])
        old, new = layer_tensors(self._cache), layer_tensors(joining._cache)
        if self._fused:  # original rows first, then the masked rows, for both batches
            self._cache = cache_from_tensors(
                [
                    tuple(  # type: ignore[misc]
                        torch.cat(
                            [
                                pad_columns(a[:old_rows], width),
                                pad_columns(b[: len(joining._active)], width),
                                pad_columns(a[old_rows:], width),
                                pad_columns(b[len(joining._active) :], width),
                            ]
                        )
                        for a, b in ((ko, kn), (vo, vn))
                    )
                    for (ko, vo), (kn, vn) in zip(old, new, strict=True)
                ]
            )
        else:
            self._cache = cache_from_tensors(
                [
                    (
                        torch.cat([pad_columns(ko, width), pad_columns(kn, width)]),
                        torch.cat([pad_columns(vo, width), pad_columns(vn, width)]),
                    )
                    for (ko, vo), (kn, vn) in zip(old, new, strict=True)
                ]
            )
            self._mask_cache = None  # parked masked columns are dropped; a later fuse recomputes what it needs
        self._cached = width
        self._active = self._active + [base + k for k in joining._active]
        if logits_m is None or new_m is None:
            return torch.cat([logits_o, new_o]), None
        return torch.cat([logits_o, new_o]), torch.cat([logits_m, new_m])

    def _add_stats(self, other: DecodingStats, base: int) -> None:
        """Fold a joining batch's work into this session's (its row indices shifted by ``base``)."""
        for name in ("forwards", "steered_forwards", "prefill_tokens", "resync_tokens", "reused_prefix_tokens"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(other, name))
        for name in ("row_prefill_tokens", "row_resync_tokens", "row_reused_prefix_tokens"):
            for row, n in getattr(other, name).items():
                self.stats._add(getattr(self.stats, name), base + row, n)
