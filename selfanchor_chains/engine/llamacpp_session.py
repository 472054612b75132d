"""Steered decoding on llama.cpp: a decode session with the torch engine's interface, over a GGUF model.

:class:`LlamaCppDecoder` opens :class:`LlamaCppSession`\\ s the way
:class:`~selfanchor_chains.engine.decoder.SteeredDecoder` opens
:class:`~selfanchor_chains.engine.session.DecodeSession`\\ s: the same :class:`RowRequest` rows (anchor spans, ω,
``anchor_masking``, ``steer_below``, ``omega_scaling``), the same :class:`TokenEvent` per token, ``set_anchors`` /
``set_omega`` / ``cancel`` / ``add_rows`` between steps, stop strings, and :class:`RowResult` at the end, so the
LangChain runtime and the reasoning chains run on it unchanged.

Each step is ONE ``llama_decode`` over every active row: its newest token for the original sequence and, when the
row steers, for the masked sequence (plus whatever the masked one must catch up, see :mod:`.llamacpp_branches`).
Rows that wait for a slot (added mid-decode, or more rows than slots) are prefilled in the batch of the step they
join: continuous batching. The logit arithmetic is the torch engine's (:mod:`.logits`), in float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np
import torch

from .llamacpp_branches import RowBranches, StepFeed
from .llamacpp_model import INSTALL_HINT, BatchEntry, LlamaCppModel, LlamaCppUnavailableError, gaps_supported
from .logits import LOGIT_BOUND, combine_logits, divergence_omegas, sampling_processors, steering_effect
from .requests import DecodingInputError, DecodingStats, RowRequest, RowResult, SamplingConfig, TokenEvent
from .rows import RowState, RowText
from .session import DecodeSession

__all__ = ["LlamaCppDecoder", "LlamaCppSession"]


class LlamaCppDecoder:
    """Batched two-branch decoding over a GGUF model in llama.cpp; :meth:`start` opens a session.

    Args:
        model: The loaded GGUF model (its context is shared by every session).
        tokenizer: A Hugging Face tokenizer of the same vocabulary (for prompts, stop strings and streaming text).
        eos_token_ids: Tokens that end a row; default: the GGUF's end-of-sequence / end-of-turn tokens and the
            tokenizer's EOS.
        neutral_token_id: What the masked branch sees at anchors for ``anchor_masking="replace"`` rows; default the
            tokenizer's unknown token, else its pad token, else the first EOS.
    """

    def __init__(
        self,
        model: LlamaCppModel,
        tokenizer: Any = None,
        *,
        eos_token_ids: Sequence[int] | None = None,
        neutral_token_id: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        if eos_token_ids is None:
            eos = model.special_eos_ids()
            tokenizer_eos = getattr(tokenizer, "eos_token_id", None)
            if isinstance(tokenizer_eos, int):
                eos.add(tokenizer_eos)
            eos_token_ids = sorted(eos)
        self.eos_token_ids = frozenset(int(i) for i in eos_token_ids)
        if neutral_token_id is None:
            for name in ("unk_token_id", "pad_token_id"):
                value = getattr(tokenizer, name, None)
                if isinstance(value, int):
                    neutral_token_id = value
                    break
        if neutral_token_id is None:
            neutral_token_id = min(self.eos_token_ids) if self.eos_token_ids else 0
        self.neutral_token_id = int(neutral_token_id)
        self.context_length: int | None = min(model.n_ctx_train or model.n_ctx, model.n_ctx)

    def start(
        self,
        rows: Sequence[RowRequest],
        *,
        max_new_tokens: int,
        sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (),
    ) -> LlamaCppSession:
        """Validate the requests and open a decode session (nothing runs until it is iterated)."""
        return LlamaCppSession(
            self, rows, max_new_tokens=max_new_tokens, sampling=sampling or SamplingConfig(), stop=stop
        )

    def generate(self, rows: Sequence[RowRequest], **options: Any) -> list[RowResult]:
        """Decode every row to the end; results in request order (``options``: those of :meth:`start`)."""
        session = self.start(rows, **options)
        for _ in session:
            pass
        return session.results()


class LlamaCppSession:
    """One batched decode on llama.cpp; iterate it to get a list of :class:`TokenEvent` per step.

    Between steps a caller may change a row's anchors (:meth:`set_anchors`) or ω (:meth:`set_omega`), cancel a row
    (:meth:`cancel`) or add rows (:meth:`add_rows`). Closing the iterator early stops decoding and frees the rows'
    sequences.
    """

    def __init__(
        self,
        decoder: LlamaCppDecoder,
        rows: Sequence[RowRequest],
        *,
        max_new_tokens: int,
        sampling: SamplingConfig,
        stop: Sequence[str],
    ) -> None:
        self._decoder = decoder
        self._model = decoder.model
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self._stop = tuple(stop)
        self._validate(rows, max_new_tokens, stop)
        self.stats = DecodingStats()
        self._rows: list[RowState] = []
        self._requests: list[RowRequest] = []
        self._branches: dict[int, RowBranches] = {}  # by row index, while the row holds a slot
        self._queue: list[int] = []  # rows waiting for a slot, in order
        self._active: list[int] = []
        self._processors = sampling_processors(sampling)
        self._generator: torch.Generator | None = None
        if sampling.do_sample:
            self._generator = torch.Generator()
            if sampling.seed is not None:
                self._generator.manual_seed(sampling.seed)
        self._started = False
        self.finished = False
        self.last_logits: torch.Tensor | None = None  # combined logits of the latest step, rows in batch order
        self.last_rows: list[int] = []  # their row indices
        self._add(rows)

    # -- validation (the torch engine's rules and messages) -------------------------------------------------------

    def _validate(self, rows: Sequence[RowRequest], max_new_tokens: int, stop: Sequence[str]) -> None:
        # DecodeSession._validate reads only ``_decoder.tokenizer`` and ``_decoder.context_length``, which this
        # session's decoder has too: one set of rules and messages for both engines.
        DecodeSession._validate(cast(DecodeSession, self), rows, max_new_tokens, stop)
        hides = any(r.anchor_masking == "attention" and r.omega != 1 and r.anchor_spans for r in rows)
        if hides and not gaps_supported():
            raise LlamaCppUnavailableError(
                "hiding anchors at their positions needs llama-cpp-python's position-gap build (this one requires "
                f"consecutive positions per sequence): {INSTALL_HINT}; or use anchor_masking='replace'"
            )

    _check_spans = staticmethod(DecodeSession._check_spans)

    # -- public controls ------------------------------------------------------------------------------------------

    def _add(self, rows: Sequence[RowRequest]) -> list[int]:
        first = len(self._rows)
        for k, request in enumerate(rows):
            self._rows.append(
                RowState(
                    request_index=first + k,
                    prompt_len=len(request.prompt_ids),
                    omega=float(request.omega),
                    anchors=sorted((int(a), int(b)) for a, b in request.anchor_spans),
                    text=RowText(self._decoder.tokenizer, self._stop),
                    replace_anchors=request.anchor_masking == "replace",
                    steer_below=request.steer_below,
                    scale_by_probability=request.omega_scaling == "probability",
                    scale_by_divergence=request.omega_scaling == "divergence",
                )
            )
            self._requests.append(request)
            self._queue.append(first + k)
        return list(range(first, first + len(rows)))

    def add_rows(self, rows: Sequence[RowRequest]) -> list[int]:
        """Add rows; they join the running decode at the next step that has a free slot.

        Returns:
            Their row indices, after the existing rows.

        Raises:
            DecodingInputError: A malformed row (checked now, before any work).
            RuntimeError: The session has ended.
        """
        if not rows:
            return []
        if self.finished:
            raise RuntimeError("the session has ended: rows can no longer join it")
        self._validate(rows, self.max_new_tokens, self._stop)
        return self._add(rows)

    @property
    def waiting(self) -> int:
        """Rows added and not yet decoding."""
        return len(self._queue)

    @property
    def row_count(self) -> int:
        """Rows of the session so far: the index the next added row will get."""
        return len(self._rows)

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

    # -- the loop ---------------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[list[TokenEvent]]:
        if self._started:
            raise RuntimeError("a LlamaCppSession can be iterated only once")
        self._started = True
        try:
            while True:
                # 1. Free the slots of rows that ended (or were cancelled while the caller held the events).
                self._release_finished()
                if not self._active and not self._queue:
                    self.finished = True
                    return
                # 2. Anchor changes made between steps, then waiting rows into free slots.
                self._apply_anchor_changes()
                self._admit()
                if not self._active:  # every slot is held by other sessions: let them step and free some
                    yield []
                    continue
                # 3. One llama_decode: every active row's new tokens, both branches.
                logits_o, logits_m = self._step()
                # 4. Combine, choose, append: the torch engine's arithmetic.
                yield self._append(*self._choose(logits_o, logits_m))
        finally:
            self._release_all()

    def _release_finished(self) -> None:
        for i in [i for i in self._active if self._rows[i].finish_reason is not None]:
            self._active.remove(i)
            self._model.release_slot(self._branches.pop(i).slot)
        # A row cancelled while it waited never takes a slot.
        self._queue = [i for i in self._queue if self._rows[i].finish_reason is None]

    def _release_all(self) -> None:
        for i in list(self._branches):
            self._model.release_slot(self._branches.pop(i).slot)
        self._active = []

    def _apply_anchor_changes(self) -> None:
        for i in self._active:
            row = self._rows[i]
            if row.pending_anchors is None:
                continue
            row.anchors, row.pending_anchors = row.pending_anchors, None
            row.anchor_history.append(list(row.anchors))
            self._branches[i].set_hidden(row.anchors, self._model)

    def _admit(self) -> None:
        while self._queue:
            slot = self._model.acquire_slot()
            if slot is None:
                return
            i = self._queue.pop(0)
            row = self._rows[i]
            prompt = [int(t) for t in self._requests[i].prompt_ids]
            branches = RowBranches(
                slot, prompt, [False] * len(prompt), row.replace_anchors, self._decoder.neutral_token_id
            )
            branches.set_hidden(row.anchors, self._model)
            row.anchor_history = [list(row.anchors)]
            self._branches[i] = branches
            self._active.append(i)

    def _step(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        feeds: list[StepFeed] = []
        entries: list[BatchEntry] = []
        steering = False
        for i in self._active:
            branches, row = self._branches[i], self._rows[i]
            feed = branches.plan(row.steered, self._model)
            steering |= feed.masked_logits is not None
            feeds.append(feed)
            entries.extend(feed.entries)
            fed = len(feed.entries)
            if branches.orig_done == 0:
                self.stats.prefill_tokens += fed
                self.stats._add(self.stats.row_prefill_tokens, i, fed)
            elif branches.resync:
                self.stats.resync_tokens += branches.resync
                self.stats._add(self.stats.row_resync_tokens, i, branches.resync)
        logits = self._model.decode(entries)
        self.stats.forwards += 1
        self.stats.steered_forwards += int(steering)
        originals, maskeds, at = [], [], 0
        for i, feed in zip(self._active, feeds, strict=True):
            originals.append(logits[at + feed.original_logits])
            masked = logits[at + feed.masked_logits] if feed.masked_logits is not None else originals[-1]
            maskeds.append(masked)
            at += 1 + (feed.masked_logits is not None)
            self._branches[i].commit(feed, self._model)
        logits_o = torch.from_numpy(np.stack(originals))
        return logits_o, (torch.from_numpy(np.stack(maskeds)) if steering else None)

    def _choose(
        self, logits_o: torch.Tensor, logits_m: torch.Tensor | None
    ) -> tuple[list[int], list[float], list[float], list[bool], list[float], list[int]]:
        """Combine the branches and pick each active row's token (as :meth:`DecodeSession._choose` does)."""
        log_o = torch.log_softmax(torch.nan_to_num(logits_o, nan=-LOGIT_BOUND).clamp(-LOGIT_BOUND, LOGIT_BOUND), -1)
        top, originals = log_o.max(dim=-1)
        confidences = top.exp()
        rows = [self._rows[i] for i in self._active]
        omegas = [r.omega if r.steered else 1.0 for r in rows]
        if logits_m is not None:  # steering only when unsure: a gated row leaves its confident tokens unsteered
            conf = confidences.tolist()
            omegas = [
                1.0 if r.steer_below is not None and conf[k] >= r.steer_below else omegas[k] for k, r in enumerate(rows)
            ]
        if logits_m is None or all(w == 1.0 for w in omegas):
            combined = combine_logits(logits_o, logits_o, torch.ones(len(omegas)))
            flips, kls = [False] * len(omegas), [0.0] * len(omegas)
        else:
            omega = torch.tensor(omegas, dtype=torch.float32)
            adaptive = [r.scale_by_divergence and w != 1.0 for r, w in zip(rows, omegas, strict=True)]
            if any(adaptive):  # AdaCAD: each token's ω from how much the two branches disagree
                omega = torch.where(torch.tensor(adaptive), divergence_omegas(omega, log_o, logits_m), omega)
                omegas = omega.tolist()
            scaled = [r.scale_by_probability for r in rows]
            combined = combine_logits(logits_o, logits_m, omega, torch.tensor(scaled) if any(scaled) else None)
            flips, kls = steering_effect(combined, log_o, originals)
        self.last_logits, self.last_rows = combined, list(self._active)
        if self.sampling.do_sample:
            scores = self._processors(torch.empty(0, dtype=torch.long), combined)
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self._generator).squeeze(-1)
        else:
            tokens = combined.argmax(dim=-1)
        return tokens.tolist(), confidences.tolist(), omegas, flips, kls, originals.tolist()

    def _append(
        self,
        tokens: list[int],
        confidences: list[float],
        omegas: list[float],
        flips: list[bool],
        kls: list[float],
        originals: list[int],
    ) -> list[TokenEvent]:
        self.stats.decode_steps += 1
        ctx = self._decoder.context_length
        events = []
        steps = zip(self._active, tokens, confidences, omegas, flips, kls, originals, strict=True)
        for i, token, conf, omega, flip, kl, original in steps:
            row = self._rows[i]
            if row.finish_reason is not None:  # cancelled between steps: its token is discarded
                continue
            finish: str | None = None
            if token in self._decoder.eos_token_ids:
                finish, text = "eos", row.text.flush()
            else:
                row.generated.append(token)
                self._branches[i].push(token)
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
