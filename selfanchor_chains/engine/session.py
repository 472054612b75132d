"""A decode session: the loop of the two-branch steered engine, and the controls a caller has between steps.

Every decode step runs ONE forward over ``2B`` rows that share one KV cache: rows ``0..B-1`` see the prompt as it
is (the *original* branch), rows ``B..2B-1`` see it with the anchor tokens hidden by the attention mask (the
*masked* branch). The loop is short; its parts live beside it: the batch layout (:mod:`.batch`), the masked
branch's re-sync as anchors change (:mod:`.masked_branch`), rows joining a running decode (:mod:`.admission`),
shared prompt prefixes (:mod:`.prefix_cache`) and the logit arithmetic (:mod:`.logits`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .admission import ContinuousAdmission
from .causal_lm import DecoderModel
from .kv import cache_from_tensors, layer_tensors
from .logits import sampling_processors
from .masked_branch import MaskedBranchSync
from .prefix_cache import common_prefix
from .requests import DecodingStats, RowRequest, SamplingConfig, TokenEvent
from .row_controls import RowControls, TokenChoice, choose_tokens, new_row_state, validate_rows


class DecodeSession(RowControls, MaskedBranchSync, ContinuousAdmission):
    """One batched decode; iterate it to get a list of :class:`TokenEvent` per step.

    Between steps a caller may change a row's anchors (:meth:`set_anchors`) or steering strength
    (:meth:`set_omega`), cancel a row (:meth:`cancel`), or add rows (:meth:`add_rows`: continuous batching, new
    rows join the running decode at the next step). Closing the iterator early stops decoding.
    """

    def __init__(
        self,
        decoder: DecoderModel,
        rows: Sequence[RowRequest],
        *,
        max_new_tokens: int,
        sampling: SamplingConfig,
        stop: Sequence[str],
    ) -> None:
        self._decoder = decoder
        self._validate(rows, max_new_tokens, stop)
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self._stop = tuple(stop)
        self._waiting: list[RowRequest] = []  # rows added while decoding; they join at the next step
        self.stats = DecodingStats()
        self._rows = [new_row_state(r, i, decoder.tokenizer, stop) for i, r in enumerate(rows)]
        self._prompts = [list(map(int, r.prompt_ids)) for r in rows]
        self._processors = sampling_processors(sampling)  # the warpers ignore the input ids they are given
        self._generator: torch.Generator | None = None
        if sampling.do_sample:
            self._generator = torch.Generator()
            if sampling.seed is not None:
                self._generator.manual_seed(sampling.seed)
        self._started = False
        self.finished = False  # the loop has ended (every row done, none waiting)
        self._active: list[int] = []  # request indices of the rows in the batch, in batch order
        self._ids = self._real = self._hidden = torch.empty(0)  # see _setup_batch
        self._cache: Any = None  # fused (2B) when ``_fused``, else the original rows
        self._mask_cache: Any = None
        self._fused = False
        self._cached = 0  # columns held by the original rows' cache
        self.last_logits: torch.Tensor | None = None  # combined logits of the latest step, rows in batch order
        self.last_rows: list[int] = []  # request indices of those rows

    # -- validation ------------------------------------------------------------------------------------------------

    def _validate(self, rows: Sequence[RowRequest], max_new_tokens: int, stop: Sequence[str]) -> None:
        validate_rows(rows, max_new_tokens, stop, self._decoder.tokenizer, self._decoder.context_length)

    # -- public controls -----------------------------------------------------------------------------------------

    def add_rows(self, rows: Sequence[RowRequest]) -> list[int]:
        """Add rows to a running session; they are prefilled and join the batch at the next step.

        Returns:
            Their row indices (``TokenEvent.row`` and :meth:`results` use them), after the existing rows.

        Raises:
            DecodingInputError: A malformed row (checked now, before any work).
        """
        if not rows:
            return []
        if self.finished:
            raise RuntimeError("the session has ended: rows can no longer join it")
        self._validate(rows, self.max_new_tokens, self._stop)
        first = len(self._rows) + len(self._waiting)
        if not self._started:  # not decoding yet: they simply belong to the first batch
            self._rows += self._batch_of(list(rows))._renumbered(first)
            self._prompts += [list(map(int, r.prompt_ids)) for r in rows]
        else:
            self._waiting.extend(rows)
        return list(range(first, first + len(rows)))

    @property
    def waiting(self) -> int:
        """Rows added and not yet decoding."""
        return len(self._waiting)

    @property
    def row_count(self) -> int:
        """Rows of the session so far, waiting ones included: the index the next added row will get."""
        return len(self._rows) + len(self._waiting)

    # -- the loop --------------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[list[TokenEvent]]:
        if self._started:
            raise RuntimeError("a DecodeSession can be iterated only once")
        self._started = True
        self._setup_batch()
        # 1. Prefill the prompts: the original rows (after any cached shared prefix), then, if a row steers, the
        #    masked rows from their first hidden column on; before it they equal the original rows.
        logits_o, logits_m = self._prefill()
        while True:
            # 2. Combine the branches and choose each active row's next token.
            choice = self._choose(logits_o, logits_m)
            # 3. Append the tokens; detokenise, check EOS, stop strings and length.
            events = self._append(choice)
            yield events
            # 4. Drop rows that finished (or were cancelled while the caller held the events).
            self._compact()
            if not self._active:
                if not self._waiting:
                    self.finished = True  # rows added from now on would never run
                    return
                # Every row finished: the rows added meanwhile start a batch of their own.
                logits_o, logits_m = self._admit(None, None)
                continue
            # 5. Apply anchor changes made between steps, then bring the masked rows up to date if steering
            #    (also when a row about to join steers: the joined batch keeps both branches).
            stale = self._apply_anchor_changes()
            joining_steers = any(r.omega != 1.0 and len(r.anchor_spans) > 0 for r in self._waiting)
            if joining_steers or any(self._rows[i].steered for i in self._active):
                if self._fused:
                    if stale:
                        self._resync(stale)
                else:
                    self._fuse()
            elif self._fused:
                self._split()
            # 6. One forward over the newest token of every row (2B rows when steering).
            logits_o, logits_m = self._step_forward(self._ids[:, -1:])
            # 7. Rows added since the last step are prefilled and join the batch (continuous batching).
            if self._waiting:
                logits_o, logits_m = self._admit(logits_o, logits_m)

    def _prefill(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        width = self._ids.shape[1]
        prefixes = self._decoder.prefix_cache
        common = common_prefix(self._prompts, width)
        start = self._reuse_shared_prefix(common)
        logits_o = self._decoder.forward(
            self._ids[:, start:], self._real.long(), self._positions()[:, start:], self._cache
        )
        self.stats.forwards += 1
        self._count_prefill(self._real[:, start:].sum(dim=1).tolist())
        self._cached = width
        prefixes.keep_batch_prefix(self._prompts, common, layer_tensors(self._cache), self._decoder.weights)
        if not any(r.steered for r in self._rows):
            return logits_o, None
        if self._hidden.any():
            logits_m = self._prefill_masked()
        else:  # nothing hidden yet: the masked rows are the original rows
            self._mask_cache = cache_from_tensors(layer_tensors(self._cache))
            logits_m = logits_o.clone()
            for k in range(len(self._active)):
                self._mark_masked(k, 0, width)
        self._join_caches()
        return logits_o, logits_m

    def _reuse_shared_prefix(self, common: int) -> int:
        """Start the original cache from a stored shared prefix; returns the first column left to run."""
        offsets = [self._offset(k) for k in range(len(self._rows))]
        agreed, layers = self._decoder.prefix_cache.fill_batch(self._prompts, offsets, common, self._decoder.weights)
        if layers is None:
            return 0
        self._cache = cache_from_tensors(layers)
        for k, offset in enumerate(offsets):
            reused = max(0, agreed - offset)
            self.stats.reused_prefix_tokens += reused
            self.stats._add(self.stats.row_reused_prefix_tokens, self._active[k], reused)
        return agreed

    def _step_forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        width = self._ids.shape[1]
        start = width - input_ids.shape[1]
        positions = self._positions()[:, start:]
        self.stats.forwards += 1
        if self._fused:
            self.stats.steered_forwards += 1
            logits = self._decoder.forward(
                # A replacing row's masked branch reads the neutral token where the newest token is an anchor.
                torch.cat([input_ids, self._masked_ids()[:, start:]]),
                torch.cat([self._real.long(), self._masked_attention()]),
                torch.cat([positions, positions]),
                self._cache,
            )
            b = len(self._active)
            for k in range(b):
                self._mark_masked(k, start, width)
            self._cached = width
            return logits[:b], logits[b:]
        logits = self._decoder.forward(input_ids, self._real.long(), positions, self._cache)
        self._cached = width
        return logits, None

    def _choose(self, logits_o: torch.Tensor, logits_m: torch.Tensor | None) -> TokenChoice:
        """Combine the branches and pick each active row's token (:func:`~.row_controls.choose_tokens`)."""
        rows = [self._rows[i] for i in self._active]
        choice = choose_tokens(logits_o, logits_m, rows, self.sampling, self._processors, self._generator, self._ids)
        self.last_logits, self.last_rows = choice.combined, list(self._active)
        return choice

    def _append(self, choice: TokenChoice) -> list[TokenEvent]:
        self.stats.decode_steps += 1
        column = torch.tensor(choice.tokens, dtype=torch.long).unsqueeze(-1)
        self._ids = torch.cat([self._ids, column], dim=1)
        self._real = torch.cat([self._real, torch.ones_like(column, dtype=torch.bool)], dim=1)
        self._hidden = torch.cat([self._hidden, torch.zeros_like(column, dtype=torch.bool)], dim=1)
        return self._record_step(choice)

    def _compact(self) -> None:
        keep = [k for k, i in enumerate(self._active) if self._rows[i].finish_reason is None]
        if len(keep) == len(self._active):
            return
        self._active = [self._active[k] for k in keep]
        if not keep:
            return
        index = torch.tensor(keep, dtype=torch.long)
        self._ids, self._real, self._hidden = self._ids[index], self._real[index], self._hidden[index]
        device = self._cache.layers[0].keys.device
        if self._fused:
            rows_before = self._cache.layers[0].keys.shape[0] // 2
            self._cache.batch_select_indices(torch.tensor(keep + [rows_before + k for k in keep], device=device))
        else:
            self._cache.batch_select_indices(index.to(device))
            if self._mask_cache is not None:
                self._mask_cache.batch_select_indices(index.to(device))
        # Columns where every remaining row is padding carry no information; trimming them keeps masks short.
        first_real = int(self._real.any(dim=0).long().argmax())
        if first_real > 0:
            self._trim_columns(first_real)

    def _trim_columns(self, n: int) -> None:
        self._ids, self._real, self._hidden = self._ids[:, n:], self._real[:, n:], self._hidden[:, n:]
        self._cached -= n
        caches = [self._cache] + ([self._mask_cache] if self._mask_cache is not None else [])
        for cache in caches:
            for layer in cache.layers:
                layer.keys = layer.keys[:, :, n:, :]
                layer.values = layer.values[:, :, n:, :]
