"""Keeping the masked branch right as anchors change: per-column anchor-set versions, re-syncing stale columns,
and fusing or splitting the two branches' caches as steering starts and stops.

A masked column's keys and values depend on which earlier columns it could see. Column t computed under anchor
set A is still right under anchor set A' if A and A' hide the same columns up to t. Keeping that record per column
(each row's ``kv_version``) means that when Self-Anchor hides a plan step and later shows it again, the plan's own
columns (computed while it was visible) need no recomputation; hidden columns are never recomputed at all.
"""

from __future__ import annotations

import torch

from .batch import BatchState
from .kv import cache_from_tensors, layer_tensors
from .rows import span_mask


class MaskedBranchSync(BatchState):
    """The masked branch's bookkeeping, a part of :class:`~selfanchor_chains.engine.session.DecodeSession`."""

    def _mark_masked(self, k: int, start_column: int, end_column: int) -> None:
        """Record that batch row ``k``'s masked columns in ``[start, end)`` were computed under its current anchors."""
        row = self._rows[self._active[k]]
        offset = self._offset(k)
        first, end = max(0, start_column - offset), end_column - offset
        if end <= first:
            return  # the columns lie in this row's left padding
        if len(row.kv_version) < end:
            row.kv_version.extend([-1] * (end - len(row.kv_version)))
        row.kv_version[first:end] = [len(row.anchor_history) - 1] * (end - first)

    def _first_stale_column(self, k: int, end_column: int) -> int | None:
        """First visible masked column before ``end_column`` that is missing or was computed under other anchors."""
        row = self._rows[self._active[k]]
        offset = self._offset(k)
        n = end_column - offset
        if n <= 0:
            return None
        hidden_now = span_mask(row.anchors, n)
        versions = torch.tensor(row.kv_version[:n] + [-1] * max(0, n - len(row.kv_version)), dtype=torch.long)
        stale = versions < 0
        positions = torch.arange(n)
        for version in set(versions.tolist()) - {-1}:
            differs = (span_mask(row.anchor_history[version], n) != hidden_now).nonzero()
            if len(differs):
                stale |= (versions == version) & (positions >= int(differs[0]))
        # A hidden column is never read, so its old values may stay; a replaced one is read (as the neutral token).
        first = (stale if row.replace_anchors else stale & ~hidden_now).nonzero()
        return offset + int(first[0]) if len(first) else None

    def _apply_anchor_changes(self) -> list[int]:
        """Take pending anchor changes; returns the batch rows whose masked cache needs recomputing (when fused)."""
        stale = []
        for k, i in enumerate(self._active):
            row = self._rows[i]
            if row.pending_anchors is None:
                continue
            offset = self._offset(k)
            new_hidden = torch.zeros_like(self._hidden[k])
            for start, end in row.pending_anchors:
                new_hidden[offset + start : offset + end] = True
            row.anchors, row.pending_anchors = row.pending_anchors, None
            if torch.equal(new_hidden, self._hidden[k]):
                continue
            self._hidden[k] = new_hidden
            row.anchor_history.append(list(row.anchors))
            if self._fused and self._first_stale_column(k, self._cached) is not None:
                stale.append(k)
        return stale

    def _resync(self, rows: list[int]) -> None:
        """Recompute the stale masked columns of batch rows ``rows`` in one forward, in place in the fused cache.

        Only visible columns are fed (a hidden column is never read, so its old values are kept for the time it
        is shown again); the rows share the first stale column, each feeding its own visible columns from there,
        right-padded to the longest.
        """
        b, end = len(self._active), self._cached
        firsts = [self._first_stale_column(k, end) for k in rows]
        rows = [k for k, f in zip(rows, firsts, strict=True) if f is not None]
        if not rows:
            return
        start = min(f for f in firsts if f is not None)
        visible = self._masked_attention()
        masked_ids = self._masked_ids()
        feeds = [start + visible[k, start:end].nonzero().squeeze(-1) for k in rows]
        width = max(len(f) for f in feeds)
        ids = torch.full((len(rows), width), self._decoder.pad_token_id, dtype=torch.long)
        fed = torch.zeros((len(rows), width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        all_positions = self._positions()
        for j, (k, columns) in enumerate(zip(rows, feeds, strict=True)):
            ids[j, : len(columns)] = masked_ids[k, columns]
            fed[j, : len(columns)] = 1
            positions[j, : len(columns)] = all_positions[k, columns]
        layers = layer_tensors(self._cache)
        index = torch.tensor([b + k for k in rows], device=layers[0][0].device)
        scratch = (
            cache_from_tensors([(keys[index, :, :start], values[index, :, :start]) for keys, values in layers])
            if start > 0
            else self._decoder.new_cache()
        )
        self._decoder.forward(ids, torch.cat([visible[rows, :start], fed], dim=1), positions, scratch)
        self.stats.forwards += 1
        for (keys, values), (new_keys, new_values) in zip(layers, layer_tensors(scratch), strict=True):
            for j, (k, columns) in enumerate(zip(rows, feeds, strict=True)):
                at = columns.to(keys.device)
                keys[b + k, :, at] = new_keys[j, :, start : start + len(columns)]
                values[b + k, :, at] = new_values[j, :, start : start + len(columns)]
        for k, columns in zip(rows, feeds, strict=True):
            self._mark_columns(k, columns)
            self.stats.resync_tokens += len(columns)
            self.stats._add(self.stats.row_resync_tokens, self._active[k], len(columns))

    def _prefill_masked(self) -> torch.Tensor:
        """Prefill the masked rows, computing only the columns that differ from the original rows'; their logits.

        Up to its own first hidden column a masked row sees what its original row sees, so those keys and values are
        the original cache's, read in place. After it, a hidden column is never read by the masked row, so only the
        visible columns are computed, each at its own position (the attention over the visible keys is the same with
        the hidden ones absent): an anchored passage or question costs the masked branch nothing to prefill. The
        last column is always fed, for its logits. The rows' feeds are left-padded to the longest so the last column
        comes last; hidden columns keep the original branch's values, recorded as not computed for the masked row
        (never read while hidden; a later re-sync recomputes them if they are shown again).
        """
        width, b = self._ids.shape[1], len(self._active)
        visible = self._masked_attention()
        masked_ids, all_positions = self._masked_ids(), self._positions()
        same = torch.zeros_like(visible)  # the columns a masked row reads from the original cache
        feeds, firsts = [], []
        for k in range(b):
            hidden = self._hidden[k].nonzero()
            first = min(int(hidden[0]) if len(hidden) else width, width - 1)
            same[k, :first] = self._real[k, :first]
            columns = first + visible[k, first:width].nonzero().squeeze(-1)
            if not len(columns) or int(columns[-1]) != width - 1:
                columns = torch.cat([columns, torch.tensor([width - 1])])
            feeds.append(columns)
            firsts.append(first)
        n = max(len(c) for c in feeds)
        ids = torch.full((b, n), self._decoder.pad_token_id, dtype=torch.long)
        fed = torch.zeros((b, n), dtype=torch.long)
        positions = torch.zeros((b, n), dtype=torch.long)
        for k, columns in enumerate(feeds):
            ids[k, n - len(columns) :] = masked_ids[k, columns]
            fed[k, n - len(columns) :] = visible[k, columns]
            positions[k, n - len(columns) :] = all_positions[k, columns]
        original = layer_tensors(self._cache)
        scratch = cache_from_tensors(list(original))  # appending makes new tensors: the original cache is unchanged
        logits_m = self._decoder.forward(ids, torch.cat([same, fed], dim=1), positions, scratch)
        self.stats.forwards += 1
        self.stats.steered_forwards += 1
        self._count_prefill([len(c) for c in feeds])
        layers = []
        for (keys, values), (new_keys, new_values) in zip(original, layer_tensors(scratch), strict=True):
            masked_k, masked_v = keys.clone(), values.clone()
            for k, columns in enumerate(feeds):
                at = columns.to(keys.device)
                masked_k[k, :, at] = new_keys[k, :, width + n - len(columns) :]
                masked_v[k, :, at] = new_values[k, :, width + n - len(columns) :]
            layers.append((masked_k, masked_v))
        self._mask_cache = cache_from_tensors(layers)
        for k, (first, columns) in enumerate(zip(firsts, feeds, strict=True)):
            self._mark_masked(k, 0, first)
            self._mark_columns(k, columns)
        return logits_m

    def _mark_columns(self, k: int, columns: torch.Tensor) -> None:
        """Record that batch row ``k``'s masked ``columns`` (ascending) were computed under its current anchors."""
        row = self._rows[self._active[k]]
        version, tokens = len(row.anchor_history) - 1, (columns - self._offset(k)).tolist()
        row.kv_version.extend([-1] * (tokens[-1] + 1 - len(row.kv_version)))
        for token in tokens:
            row.kv_version[token] = version

    def _fuse(self) -> None:
        """Bring the parked masked rows up to the original rows' cache and join both into one 2B-row cache."""
        if self._fused:
            return
        end = self._cached
        original = layer_tensors(self._cache)
        first_hidden = self._hidden[:, :end].any(dim=0).nonzero()
        shared = int(first_hidden[0]) if len(first_hidden) else end
        parked = layer_tensors(self._mask_cache) if self._mask_cache is not None else None
        parked_width = parked[0][0].shape[2] if parked else 0
        layers = []
        for layer, (keys, values) in enumerate(original):
            # Before the first hidden column a masked row equals its original row; after it, the parked columns
            # are kept and the ones never computed are zero placeholders that the re-sync below fills.
            parts_k, parts_v = [keys[:, :, :shared]], [values[:, :, :shared]]
            if parked is not None and parked_width > shared:
                parts_k.append(parked[layer][0][:, :, shared:parked_width])
                parts_v.append(parked[layer][1][:, :, shared:parked_width])
            missing = end - max(shared, parked_width)
            if missing > 0:
                parts_k.append(keys.new_zeros((*keys.shape[:2], missing, keys.shape[3])))
                parts_v.append(values.new_zeros((*values.shape[:2], missing, values.shape[3])))
            layers.append((torch.cat(parts_k, dim=2), torch.cat(parts_v, dim=2)))
        self._mask_cache = cache_from_tensors(layers)
        for k in range(len(self._active)):
            self._mark_masked(k, 0, shared)
            row = self._rows[self._active[k]]
            offset = self._offset(k)
            del row.kv_version[max(0, max(shared, parked_width) - offset) :]  # placeholders are not computed
        self._join_caches()
        self._resync(list(range(len(self._active))))

    def _join_caches(self) -> None:
        joined = [
            (torch.cat([ko, km]), torch.cat([vo, vm]))
            for (ko, vo), (km, vm) in zip(layer_tensors(self._cache), layer_tensors(self._mask_cache), strict=True)
        ]
        self._cache = cache_from_tensors(joined)
        self._mask_cache = None
        self._fused = True

    def _split(self) -> None:
        """Stop steering: keep the original rows' cache and park the masked rows (views, no copy)."""
        b = len(self._active)
        layers = layer_tensors(self._cache)
        self._cache = cache_from_tensors([(k[:b], v[:b]) for k, v in layers])
        self._mask_cache = cache_from_tensors([(k[b:], v[b:]) for k, v in layers])
        self._fused = False
