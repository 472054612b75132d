"""A decode session: the loop of the two-branch steered engine, and the controls a caller has between steps.

Every decode step runs ONE forward over ``2B`` rows that share one KV cache: rows ``0..B-1`` see the prompt as it
is (the *original* branch), rows ``B..2B-1`` see it with the anchor tokens hidden by the attention mask (the
*masked* branch). The loop is short; its parts live beside it: the batch layout (:mod:`.batch`), the masked
branch's re-sync as anchors change (:mod:`.masked_branch`), rows joining a running decode (:mod:`.admission`),
shared prompt prefixes (:mod:`.prefix_cache`) and the logit arithmetic (:mod:`.logits`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .admission import ContinuousAdmission
from .causal_lm import DecoderModel
from .kv import cache_from_tensors, layer_tensors
from .logits import LOGIT_BOUND, combine_logits, divergence_omegas, sampling_processors, steering_effect
from .masked_branch import MaskedBranchSync
from .prefix_cache import common_prefix
from .requests import (
    OMEGA_SCALINGS,
    DecodingInputError,
    DecodingStats,
    RowRequest,
    RowResult,
    SamplingConfig,
    TokenEvent,
)
from .rows import RowState, RowText


class DecodeSession(MaskedBranchSync, ContinuousAdmission):
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
        self._rows = [
            RowState(
                request_index=i,
                prompt_len=len(r.prompt_ids),
                omega=float(r.omega),
                anchors=sorted((int(a), int(b)) for a, b in r.anchor_spans),
                text=RowText(decoder.tokenizer, stop),
                replace_anchors=r.anchor_masking == "replace",
                steer_below=r.steer_below,
                scale_by_probability=r.omega_scaling == "probability",
                scale_by_divergence=r.omega_scaling == "divergence",
            )
            for i, r in enumerate(rows)
        ]
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
        self._originals: list[int] = []  # the original branch's argmax per active row, latest step
        self.last_logits: torch.Tensor | None = None  # combined logits of the latest step, rows in batch order
        self.last_rows: list[int] = []  # request indices of those rows

    # -- validation ------------------------------------------------------------------------------------------------

    def _validate(self, rows: Sequence[RowRequest], max_new_tokens: int, stop: Sequence[str]) -> None:
        if not rows:
            raise DecodingInputError("no rows to decode")
        if max_new_tokens < 1:
            raise DecodingInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if stop and self._decoder.tokenizer is None:
            raise DecodingInputError("stop strings need a tokenizer to decode text")
        ctx = self._decoder.context_length
        for i, row in enumerate(rows):
            n = len(row.prompt_ids)
            if n == 0:
                raise DecodingInputError(f"row {i}: empty prompt")
            if ctx is not None and n >= ctx:
                raise DecodingInputError(f"row {i}: prompt of {n} tokens does not fit the model's context of {ctx}")
            if not (isinstance(row.omega, (int, float)) and math.isfinite(row.omega) and row.omega >= 0):
                raise DecodingInputError(f"row {i}: omega must be a finite number >= 0, got {row.omega!r}")
            if row.anchor_masking not in ("attention", "replace"):
                raise DecodingInputError(
                    f"row {i}: anchor_masking must be 'attention' or 'replace', got {row.anchor_masking!r}"
                )
            if row.omega_scaling not in OMEGA_SCALINGS:
                raise DecodingInputError(
                    f"row {i}: omega_scaling must be one of {', '.join(OMEGA_SCALINGS)}, got {row.omega_scaling!r}"
                )
            gate = row.steer_below
            if gate is not None and not (isinstance(gate, (int, float)) and 0 < gate <= 1):
                raise DecodingInputError(f"row {i}: steer_below must be in (0, 1] or None, got {gate!r}")
            self._check_spans(i, row.anchor_spans, n)

    @staticmethod
    def _check_spans(row: int, spans: Sequence[tuple[int, int]], length: int) -> None:
        for span in spans:
            if len(span) != 2:
                raise DecodingInputError(f"row {row}: anchor span {span!r} is not a (start, end) pair")
            start, end = span
            if not (0 <= start < end <= length):
                raise DecodingInputError(
                    f"row {row}: anchor span {span!r} is empty or outside the row's {length} tokens"
                )

    # -- public controls -----------------------------------------------------------------------------------------

    def set_anchors(self, row: int, spans: Sequence[tuple[int, int]]) -> None:
        """Replace a row's anchor spans (token indices over prompt + generated tokens) from the next step on."""
        state = self._rows[row]
        self._check_spans(row, spans, state.length)
        state.pending_anchors = sorted((int(a), int(b)) for a, b in spans)

    def set_omega(self, row: int, omega: float) -> None:
        """Change a row's steering strength from the next step on."""
        if not (math.isfinite(omega) and omega >= 0):
            raise DecodingInputError(f"row {row}: omega must be a finite number >= 0, got {omega!r}")
        self._rows[row].omega = float(omega)

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

    def cancel(self, row: int) -> None:
        """Stop decoding one row; the others go on."""
        if self._rows[row].finish_reason is None:
            self._rows[row].finish_reason = "cancelled"

    def anchors(self, row: int) -> list[tuple[int, int]]:
        state = self._rows[row]
        return list(state.pending_anchors if state.pending_anchors is not None else state.anchors)

    def generated_ids(self, row: int) -> list[int]:
        return list(self._rows[row].generated)

    def results(self) -> list[RowResult]:
        return [self.result(i) for i in range(len(self._rows))]

    def result(self, row: int) -> RowResult:
        """What one row produced so far (final once its ``finish_reason`` is set)."""
        r = self._rows[row]
        return RowResult(
            token_ids=list(r.generated),
            text=r.text.text if self._decoder.tokenizer is not None else "",
            finish_reason=r.finish_reason or "cancelled",
            confidences=list(r.confidences),
            omegas=list(r.omegas),
            prompt_tokens=r.prompt_len,
            flips=list(r.flips),
            kls=list(r.kls),
            original_tokens=list(r.original_tokens),
        )

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
            tokens, confidences, omegas, flips, kls = self._choose(logits_o, logits_m)
            # 3. Append the tokens; detokenise, check EOS, stop strings and length.
            events = self._append(tokens, confidences, omegas, flips, kls)
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

    def _choose(
        self, logits_o: torch.Tensor, logits_m: torch.Tensor | None
    ) -> tuple[list[int], list[float], list[float], list[bool], list[float]]:
        """Combine the branches and pick each active row's token.

        Returns tokens, confidences, the ω applied to each token, whether steering changed the argmax, and
        KL(steered ‖ original).
        """
        # Self-Anchor's confidence is the original branch's own certainty, not the steered one's.
        # One log-softmax of the original branch serves the confidence, its argmax and the steering's KL.
        log_o = torch.log_softmax(
            torch.nan_to_num(logits_o.float(), nan=-LOGIT_BOUND).clamp(-LOGIT_BOUND, LOGIT_BOUND), dim=-1
        )
        top, originals = log_o.max(dim=-1)
        confidences = top.exp()
        omegas = [self._rows[i].omega if self._rows[i].steered else 1.0 for i in self._active]
        if logits_m is not None:
            # Steering only when unsure: a row with a gate leaves its confident tokens unsteered.
            for k, i in enumerate(self._active):
                gate = self._rows[i].steer_below
                if gate is not None and float(confidences[k]) >= gate:
                    omegas[k] = 1.0
        if logits_m is None or all(w == 1.0 for w in omegas):
            combined = combine_logits(logits_o, logits_o, torch.ones(len(omegas), device=logits_o.device))
            flips, kls = [False] * len(omegas), [0.0] * len(omegas)
        else:
            omega = torch.tensor(omegas, dtype=torch.float32, device=logits_o.device)
            adaptive = [self._rows[i].scale_by_divergence and omegas[k] != 1.0 for k, i in enumerate(self._active)]
            if any(adaptive):  # AdaCAD: each token's ω from how much the two branches disagree
                rows = torch.tensor(adaptive, device=logits_o.device)
                omega = torch.where(rows, divergence_omegas(omega, log_o, logits_m), omega)
                omegas = omega.tolist()
            scaled = [self._rows[i].scale_by_probability for i in self._active]
            by_probability = torch.tensor(scaled, device=logits_o.device) if any(scaled) else None
            combined = combine_logits(logits_o, logits_m, omega, by_probability)
            flips, kls = steering_effect(combined, log_o, originals)
        self.last_logits, self.last_rows = combined, list(self._active)
        if self.sampling.do_sample:
            scores = self._processors(self._ids, combined.cpu())  # the seeded generator lives on the CPU
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self._generator).squeeze(-1)
        else:
            tokens = combined.argmax(dim=-1)
        self._originals = originals.tolist()
        return tokens.tolist(), confidences.tolist(), omegas, flips, kls

    def _append(
        self,
        tokens: list[int],
        confidences: list[float],
        omegas: list[float],
        flips: list[bool],
        kls: list[float],
    ) -> list[TokenEvent]:
        self.stats.decode_steps += 1
        column = torch.tensor(tokens, dtype=torch.long).unsqueeze(-1)
        self._ids = torch.cat([self._ids, column], dim=1)
        self._real = torch.cat([self._real, torch.ones_like(column, dtype=torch.bool)], dim=1)
        self._hidden = torch.cat([self._hidden, torch.zeros_like(column, dtype=torch.bool)], dim=1)
        ctx = self._decoder.context_length
        events = []
        steps = zip(self._active, tokens, confidences, omegas, flips, kls, self._originals, strict=True)
        for i, token, conf, omega, flip, kl, original in steps:
            row = self._rows[i]
            if row.finish_reason is not None:  # cancelled between steps: its token is discarded
                continue
            finish: str | None = None
            if token in self._decoder.eos_token_ids:
                finish, text = "eos", row.text.flush()
            else:
                row.generated.append(token)
                text, hit_stop = row.text.push(row.generated)
                if hit_stop:
                    finish = "stop"
                elif len(row.generated) >= self.max_new_tokens or (ctx is not None and row.length >= ctx):
                    finish = "length"
                    text += row.text.flush()
            row.confidences.append(conf)
            row.omegas.append(omega)
            row.flips.append(flip)
            row.kls.append(kl)
            row.original_tokens.append(original)
            row.finish_reason = finish
            events.append(TokenEvent(i, token, len(row.confidences) - 1, text, conf, omega, finish, flip, kl, original))
        return events

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
