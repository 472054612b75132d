"""What a decode session does per row whatever runs its forwards (torch or llama.cpp): checking the requests, the
row's state, the caller's controls between steps, choosing each token from the two branches' logits, and recording
it. :class:`~.session.DecodeSession` and :class:`~.llamacpp_session.LlamaCppSession` share these, so both engines
apply one set of rules and the same arithmetic."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from .logits import LOGIT_BOUND, combine_logits, divergence_omegas, steering_effect
from .requests import OMEGA_SCALINGS, DecodingInputError, RowRequest, RowResult, SamplingConfig, TokenEvent
from .rows import RowState, RowText

__all__ = [
    "RowControls",
    "TokenChoice",
    "check_spans",
    "choose_tokens",
    "new_row_state",
    "record_token",
    "validate_rows",
]


def check_spans(row: int, spans: Sequence[tuple[int, int]], length: int) -> None:
    """Every span a ``(start, end)`` pair with ``0 <= start < end <= length``.

    Raises:
        DecodingInputError: Naming the row and the span.
    """
    for span in spans:
        if len(span) != 2:
            raise DecodingInputError(f"row {row}: anchor span {span!r} is not a (start, end) pair")
        start, end = span
        if not (0 <= start < end <= length):
            raise DecodingInputError(f"row {row}: anchor span {span!r} is empty or outside the row's {length} tokens")


def validate_rows(
    rows: Sequence[RowRequest], max_new_tokens: int, stop: Sequence[str], tokenizer: Any, context_length: int | None
) -> None:
    """Check a session's requests before any work.

    Raises:
        DecodingInputError: No rows, a bad budget, stop strings without a tokenizer, or a malformed row (named).
    """
    if not rows:
        raise DecodingInputError("no rows to decode")
    if max_new_tokens < 1:
        raise DecodingInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if stop and tokenizer is None:
        raise DecodingInputError("stop strings need a tokenizer to decode text")
    for i, row in enumerate(rows):
        n = len(row.prompt_ids)
        if n == 0:
            raise DecodingInputError(f"row {i}: empty prompt")
        if context_length is not None and n >= context_length:
            raise DecodingInputError(
                f"row {i}: prompt of {n} tokens does not fit the model's context of {context_length}"
            )
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
        check_spans(i, row.anchor_spans, n)


def new_row_state(request: RowRequest, index: int, tokenizer: Any, stop: Sequence[str]) -> RowState:
    """A row's state at the start of its decode."""
    return RowState(
        request_index=index,
        prompt_len=len(request.prompt_ids),
        omega=float(request.omega),
        anchors=sorted((int(a), int(b)) for a, b in request.anchor_spans),
        text=RowText(tokenizer, stop),
        replace_anchors=request.anchor_masking == "replace",
        steer_below=request.steer_below,
        scale_by_probability=request.omega_scaling == "probability",
        scale_by_divergence=request.omega_scaling == "divergence",
    )


class TokenChoice(NamedTuple):
    """One step's choice for the active rows, in batch order."""

    tokens: list[int]
    confidences: list[float]  # the original branch's probability of its own argmax (Self-Anchor's confidence)
    omegas: list[float]  # the ω applied to each token (1 where the row did not steer)
    flips: list[bool]  # steering changed the argmax
    kls: list[float]  # KL(steered ‖ original)
    originals: list[int]  # the original branch's argmax
    combined: torch.Tensor  # the combined logits


def choose_tokens(
    logits_o: torch.Tensor,
    logits_m: torch.Tensor | None,
    rows: Sequence[RowState],
    sampling: SamplingConfig,
    processors: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    generator: torch.Generator | None,
    input_ids: torch.Tensor,
) -> TokenChoice:
    """Combine the two branches of each active row and pick its token.

    Args:
        logits_o: The original branch's next-token logits, one row per active row.
        logits_m: The masked branch's (None: no row steers this step).
        rows: The active rows' states, in the same order.
        sampling: Greedy or sampled; ``processors`` and ``generator`` serve sampling.
        processors: The sampling warpers (:func:`~.logits.sampling_processors`).
        generator: The seeded generator on the CPU (sampling only).
        input_ids: What the warpers are given as the input ids (they ignore them).
    """
    device = logits_o.device
    # One log-softmax of the original branch serves the confidence, its argmax and the steering's KL.
    log_o = torch.log_softmax(
        torch.nan_to_num(logits_o.float(), nan=-LOGIT_BOUND).clamp(-LOGIT_BOUND, LOGIT_BOUND), dim=-1
    )
    top, originals = log_o.max(dim=-1)
    confidences = top.exp().tolist()
    omegas = [r.omega if r.steered else 1.0 for r in rows]
    if logits_m is not None:  # steering only when unsure: a gated row leaves its confident tokens unsteered
        omegas = [1.0 if r.steer_below is not None and c >= r.steer_below else w
                  for r, c, w in zip(rows, confidences, omegas, strict=True)]  # fmt: skip
    if logits_m is None or all(w == 1.0 for w in omegas):
        combined = combine_logits(logits_o, logits_o, torch.ones(len(omegas), device=device))
        flips, kls = [False] * len(omegas), [0.0] * len(omegas)
    else:
        omega = torch.tensor(omegas, dtype=torch.float32, device=device)
        adaptive = [r.scale_by_divergence and w != 1.0 for r, w in zip(rows, omegas, strict=True)]
        if any(adaptive):  # AdaCAD: each token's ω from how much the two branches disagree
            chosen = torch.tensor(adaptive, device=device)
            omega = torch.where(chosen, divergence_omegas(omega, log_o, logits_m), omega)
            omegas = omega.tolist()
        scaled = [r.scale_by_probability for r in rows]
        by_probability = torch.tensor(scaled, device=device) if any(scaled) else None
        combined = combine_logits(logits_o, logits_m, omega, by_probability)
        flips, kls = steering_effect(combined, log_o, originals)
    if sampling.do_sample:
        scores = processors(input_ids, combined.cpu())  # the seeded generator lives on the CPU
        tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).squeeze(-1)
    else:
        tokens = combined.argmax(dim=-1)
    return TokenChoice(tokens.tolist(), confidences, omegas, flips, kls, originals.tolist(), combined)


def record_token(
    row: RowState,
    index: int,
    token: int,
    signals: tuple[float, float, bool, float, int],
    *,
    eos_token_ids: frozenset[int],
    max_new_tokens: int,
    context_length: int | None,
) -> TokenEvent | None:
    """Append a chosen token to its row: detokenise, check EOS, stop strings and length, keep the signals.

    Args:
        row: The row's state (changed in place).
        index: Its row index (for the event).
        token: The chosen token.
        signals: ``(confidence, omega, flip, kl, original)`` of the token.

    Returns:
        The token's event, or None when the row was cancelled between steps (its token is discarded).
    """
    if row.finish_reason is not None:
        return None
    confidence, omega, flip, kl, original = signals
    finish: str | None = None
    if token in eos_token_ids:
        finish, text = "eos", row.text.flush()
    else:
        row.generated.append(token)
        text, hit_stop = row.text.push(row.generated)
        if hit_stop:
            finish = "stop"
        elif len(row.generated) >= max_new_tokens or (context_length is not None and row.length >= context_length):
            finish = "length"
            text += row.text.flush()
    row.confidences.append(confidence)
    row.omegas.append(omega)
    row.flips.append(flip)
    row.kls.append(kl)
    row.original_tokens.append(original)
    row.finish_reason = finish
    step = len(row.confidences) - 1
    return TokenEvent(index, token, step, text, confidence, omega, finish, flip, kl, original)


class RowControls:
    """The caller's controls between steps, the rows' results, and recording each step's tokens, over a session's
    row states (``self._rows``) and its active rows in batch order (``self._active``)."""

    _rows: list[RowState]
    _active: list[int]
    _decoder: Any  # its ``tokenizer`` (None: no text), ``eos_token_ids`` and ``context_length``
    max_new_tokens: int

    def _record_step(self, choice: TokenChoice) -> list[TokenEvent]:
        """Append each active row's chosen token (:func:`record_token`); the events of the rows still decoding."""
        events = []
        signals = zip(choice.confidences, choice.omegas, choice.flips, choice.kls, choice.originals, strict=True)
        for i, token, signal in zip(self._active, choice.tokens, signals, strict=True):
            event = record_token(
                self._rows[i],
                i,
                token,
                signal,
                eos_token_ids=self._decoder.eos_token_ids,
                max_new_tokens=self.max_new_tokens,
                context_length=self._decoder.context_length,
            )
            if event is not None:
                events.append(event)
        return events

    def set_anchors(self, row: int, spans: Sequence[tuple[int, int]]) -> None:
        """Replace a row's anchor spans (token indices over prompt + generated tokens) from the next step on."""
        state = self._rows[row]
        check_spans(row, spans, state.length)
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
        """A row's anchor spans as the next step will see them."""
        state = self._rows[row]
        return list(state.pending_anchors if state.pending_anchors is not None else state.anchors)

    def generated_ids(self, row: int) -> list[int]:
        """The tokens a row generated so far."""
        return list(self._rows[row].generated)

    def results(self) -> list[RowResult]:
        """Every row's result, in row order."""
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
