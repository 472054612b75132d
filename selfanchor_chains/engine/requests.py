"""What the engine is asked and what it answers: rows to decode, sampling settings, token events, results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

OMEGA_SCALINGS = ("constant", "probability", "divergence")
"""How ω reaches each token's logit (:attr:`RowRequest.omega_scaling`)."""


class DecodingInputError(ValueError):
    """A request to the engine is malformed; raised before any forward pass."""


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen from the combined logits.

    Args:
        do_sample: Sample instead of taking the argmax.
        temperature: Softmax temperature (> 0), used when sampling.
        top_p: Nucleus mass in (0, 1]; 1 disables it.
        top_k: Keep the k most likely tokens; 0 disables it.
        seed: Seed of the sampling generator, for reproducible samples.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise DecodingInputError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if not (0 < self.top_p <= 1):
            raise DecodingInputError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k < 0:
            raise DecodingInputError(f"top_k must be >= 0, got {self.top_k!r}")


@dataclass
class RowRequest:
    """One prompt to decode.

    Args:
        prompt_ids: The prompt's token ids (no padding).
        anchor_spans: Token index spans ``[start, end)`` into the prompt to hide from the masked branch.
        omega: Steering strength; 1 is plain decoding, > 1 amplifies the anchors.
        anchor_masking: How the masked branch loses the anchors: ``"attention"`` hides their columns from
            attention (positions kept); ``"replace"`` shows the decoder's neutral token at the same positions
            instead (SPA's paper setting, without its position shift).
        steer_below: Steer a token only when the original branch's top probability is below this; None steers
            every token.
        omega_scaling: ``"constant"``: every token's logit moves by ``(ω−1)·(l_orig − l_masked)``;
            ``"probability"``: SPA's ``modulated_by_prob`` (Tian & Zhang's ``anchoring`` package), each token's
            move scaled by its original probability over the top one, ``(ω−1)·p/p_max``, so only tokens the
            original branch finds plausible are re-ranked; ``"divergence"``: AdaCAD's adaptive strength (Wang et al.
            2024), ``ω_t = 1 + (ω−1)·JSD(p_orig ‖ p_masked)/ln 2``: a token steers only as far as the two branches
            disagree, up to ω where they disagree completely (``ω = 1 + ln 2`` is AdaCAD's own weight).
    """

    prompt_ids: Sequence[int]
    anchor_spans: Sequence[tuple[int, int]] = ()
    omega: float = 1.0
    anchor_masking: str = "attention"
    steer_below: float | None = None
    omega_scaling: str = "constant"


@dataclass(frozen=True)
class TokenEvent:
    """One decoded token of one row.

    ``text`` is the new text that is safe to show: it never contains (a prefix of) a stop string nor half of a
    multi-byte character; the final event of a row flushes whatever was held back.
    """

    row: int
    token_id: int
    index: int
    text: str
    confidence: float
    omega: float
    finish_reason: str | None = None
    flipped: bool = False
    """Steering changed the most likely token (argmax of the combined logits ≠ argmax of the original ones)."""
    kl: float = 0.0
    """KL(steered ‖ original) of the next-token distributions, in nats (0 for an unsteered token)."""
    original_token: int = -1
    """The original branch's most likely token (differs from ``token_id`` when ``flipped`` under greedy decoding)."""


@dataclass
class RowResult:
    """What one row produced."""

    token_ids: list[int]
    text: str
    finish_reason: str
    confidences: list[float]
    omegas: list[float]
    prompt_tokens: int
    flips: list[bool] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    original_tokens: list[int] = field(default_factory=list)

    @property
    def mean_confidence(self) -> float:
        """Harmonic mean of the per-token max probabilities of the original branch (Self-Anchor's signal)."""
        return harmonic_mean(self.confidences)


@dataclass
class DecodingStats:
    """Work done by a session, for tests and benchmarks."""

    forwards: int = 0
    steered_forwards: int = 0
    prefill_tokens: int = 0  # tokens pushed through the model outside single-token decode steps
    resync_tokens: int = 0  # masked-branch tokens recomputed after an anchor change or a catch-up
    reused_prefix_tokens: int = 0  # prompt tokens taken from the decoder's cache of shared prompt prefixes
    decode_steps: int = 0
    row_prefill_tokens: dict[int, int] = field(default_factory=dict)  # by request index, both branches counted
    row_resync_tokens: dict[int, int] = field(default_factory=dict)
    row_reused_prefix_tokens: dict[int, int] = field(default_factory=dict)

    def _add(self, table: dict[int, int], row: int, n: int) -> None:
        table[row] = table.get(row, 0) + n


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean ``n / Σ 1/p``; 0 for an empty sequence or any zero value."""
    if not values or min(values) <= 0:
        return 0.0
    return len(values) / sum(1.0 / v for v in values)
