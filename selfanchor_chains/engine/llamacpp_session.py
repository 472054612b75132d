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

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .llamacpp_branches import RowBranches, StepFeed
from .llamacpp_model import INSTALL_HINT, BatchEntry, LlamaCppModel, LlamaCppUnavailableError, gaps_supported
from .logits import sampling_processors
from .requests import DecodingStats, RowRequest, RowResult, SamplingConfig, TokenEvent
from .row_controls import RowControls, TokenChoice, choose_tokens, new_row_state, validate_rows
from .rows import RowState

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


class LlamaCppSession(RowControls):
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
        validate_rows(rows, max_new_tokens, stop, self._decoder.tokenizer, self._decoder.context_length)
        hides = any(r.anchor_masking == "attention" and r.omega != 1 and r.anchor_spans for r in rows)
        if hides and not gaps_supported():
            raise LlamaCppUnavailableError(
                "hiding anchors at their positions needs llama-cpp-python's position-gap build (this one requires "
                f"consecutive positions per sequence): {INSTALL_HINT}; or use anchor_masking='replace'"
            )

    # -- public controls ------------------------------------------------------------------------------------------

    def _add(self, rows: Sequence[RowRequest]) -> list[int]:
        first = len(self._rows)
        for k, request in enumerate(rows):
            self._rows.append(new_row_state(request, first + k, self._decoder.tokenizer, self._stop))
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
                yield self._append(self._choose(logits_o, logits_m))
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

    def _choose(self, logits_o: torch.Tensor, logits_m: torch.Tensor | None) -> TokenChoice:
        """Combine the branches and pick each active row's token (:func:`~.row_controls.choose_tokens`)."""
        rows = [self._rows[i] for i in self._active]
        no_ids = torch.empty(0, dtype=torch.long)  # the warpers ignore the input ids
        choice = choose_tokens(logits_o, logits_m, rows, self.sampling, self._processors, self._generator, no_ids)
        self.last_logits, self.last_rows = choice.combined, list(self._active)
        return choice

    def _append(self, choice: TokenChoice) -> list[TokenEvent]:
        self.stats.decode_steps += 1
        events = self._record_step(choice)
        for event in events:
            if event.finish_reason != "eos":  # the token joined its row: both sequences decode it next step
                self._branches[event.row].push(event.token_id)
        return events
