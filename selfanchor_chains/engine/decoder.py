"""The decoder: batched two-branch decoding over a Hugging Face causal LM; opens decode sessions over the model
side (:class:`~selfanchor_chains.engine.causal_lm.DecoderModel`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .causal_lm import DecoderModel
from .requests import RowRequest, RowResult, SamplingConfig
from .session import DecodeSession

__all__ = ["SteeredDecoder"]


class SteeredDecoder(DecoderModel):
    """Batched two-branch decoding over a Hugging Face causal LM: :meth:`start` opens a session, :meth:`generate`
    runs one to the end. The constructor is :class:`~selfanchor_chains.engine.causal_lm.DecoderModel`'s."""

    def start(
        self,
        rows: Sequence[RowRequest],
        *,
        max_new_tokens: int,
        sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (),
    ) -> DecodeSession:
        """Validate the requests and open a decode session (nothing runs until it is iterated)."""
        return DecodeSession(
            self, rows, max_new_tokens=max_new_tokens, sampling=sampling or SamplingConfig(), stop=stop
        )

    def generate(self, rows: Sequence[RowRequest], **options: Any) -> list[RowResult]:
        """Decode every row to the end and return the results in request order (``options``: those of
        :meth:`start`)."""
        session = self.start(rows, **options)
        for _ in session:
            pass
        return session.results()
