"""The two-branch steered decoding engine.

Every decode step runs ONE forward over ``2B`` rows that share one KV cache: rows ``0..B-1`` see the prompt as it
is (the *original* branch), rows ``B..2B-1`` see it with the anchor tokens hidden by the attention mask (the
*masked* branch). Their last-position logits are combined in float32 as ``ω·l_orig + (1−ω)·l_masked``
(Selective Prompt Anchoring); ``ω > 1`` amplifies what the anchors contribute.

Unlike SPA's reference ``LogitsProcessor`` the anchors stay hidden at every step (not only during the masked
prefill), positions never shift (explicit ``position_ids``; anchors are hidden, not replaced), prompts are batched,
and both branches share one forward, which on a CPU in bfloat16 costs about the same as one branch.

Prefill work is cut three ways: a masked row equals its original row up to the first hidden token, so it is only
prefilled from there; the keys and values of a prompt prefix shared by all rows (a system prompt, instructions) are
kept by the decoder and reused by later sessions; and prefix lengths are per column, so left padding is no obstacle.

When no active row needs steering (``ω == 1`` or no anchors) only the original rows run; the masked rows fall
behind and are brought up to date when steering is next needed. A row's anchors may change mid-generation
(:meth:`DecodeSession.set_anchors`). Each masked column remembers the anchor set it was computed under, so only
visible columns whose view of earlier columns changed are recomputed, for all rows that need it in one forward:
when Self-Anchor hides a plan step for its reasoning step and shows it again for the next plan, neither the hidden
plan nor (later) its own columns are recomputed, only the tokens after it.
"""

from .decoder import SteeredDecoder
from .logits import combine_logits
from .requests import (
    DecodingInputError,
    DecodingStats,
    RowRequest,
    RowResult,
    SamplingConfig,
    TokenEvent,
    harmonic_mean,
)
from .session import DecodeSession

__all__ = [
    "DecodeSession",
    "DecodingInputError",
    "DecodingStats",
    "RowRequest",
    "RowResult",
    "SamplingConfig",
    "SteeredDecoder",
    "TokenEvent",
    "combine_logits",
    "harmonic_mean",
]
