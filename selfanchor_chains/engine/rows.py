"""Per-row state of a decode session: the row's tokens and signals, its anchors, and its text with stop strings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


class RowText:
    """Incremental detokenisation with text-level stop strings for one row."""

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self._tokenizer = tokenizer
        self._stop = [s for s in stop if s]
        self._max_stop = max((len(s) for s in self._stop), default=0)
        self.emitted = ""
        self.text = ""

    def push(self, token_ids: list[int]) -> tuple[str, bool]:
        """Decode the row so far; returns (new safe text, hit a stop string)."""
        if self._tokenizer is None:
            return "", False
        text = self._tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        search_from = max(0, len(self.text) - self._max_stop)
        self.text = text
        cut = min((i for s in self._stop if (i := text.find(s, search_from)) >= 0), default=-1)
        if cut >= 0:
            self.text = text[:cut]
            return self._advance(self.text), True
        safe = text.rstrip("\ufffd")  # an incomplete multi-byte character decodes to U+FFFD until it completes
        safe = safe[: len(safe) - self._held_back(safe)]
        return self._advance(safe), False

    def flush(self) -> str:
        return self._advance(self.text)

    def _held_back(self, text: str) -> int:
        # Keep back the longest tail that could still grow into a stop string, so none of it leaks to a stream.
        for n in range(min(self._max_stop, len(text)), 0, -1):
            if any(s.startswith(text[-n:]) for s in self._stop):
                return n
        return 0

    def _advance(self, safe: str) -> str:
        if not safe.startswith(self.emitted):
            return ""  # never rewrite what a stream consumer already has
        delta = safe[len(self.emitted) :]
        self.emitted = safe
        return delta


@dataclass
class RowState:
    request_index: int
    prompt_len: int
    omega: float
    anchors: list[tuple[int, int]]
    text: RowText
    generated: list[int] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    omegas: list[float] = field(default_factory=list)
    flips: list[bool] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    original_tokens: list[int] = field(default_factory=list)
    replace_anchors: bool = False  # the masked branch sees a neutral token at anchor columns (not hidden)
    steer_below: float | None = None
    scale_by_probability: bool = False  # SPA's modulated_by_prob: a token's move scaled by p / p_max
    scale_by_divergence: bool = False  # AdaCAD: ω_t = 1 + (ω−1)·JSD(orig ‖ masked)/ln 2
    finish_reason: str | None = None
    pending_anchors: list[tuple[int, int]] | None = None
    anchor_history: list[list[tuple[int, int]]] = field(default_factory=list)  # every anchor set, in order
    kv_version: list[int] = field(default_factory=list)  # by token: its masked column's anchor set; -1 = none

    @property
    def length(self) -> int:
        return self.prompt_len + len(self.generated)

    @property
    def steered(self) -> bool:
        return self.omega != 1.0 and bool(self.anchors)


def span_mask(spans: Sequence[tuple[int, int]], length: int) -> torch.Tensor:
    """A boolean mask of ``length`` columns, true inside the spans."""
    mask = torch.zeros(length, dtype=torch.bool)
    for start, end in spans:
        mask[start:end] = True
    return mask
