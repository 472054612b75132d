"""The SPA logit arithmetic, what it did to a step (argmax flips, KL), and the sampling processors."""

from __future__ import annotations

import math
from typing import Any

import torch

from .requests import SamplingConfig

LOGIT_BOUND = 1e4  # real logits are far inside this; it keeps ω-scaled infinities from becoming NaN


def combine_logits(
    original: torch.Tensor,
    masked: torch.Tensor,
    omega: torch.Tensor,
    by_probability: torch.Tensor | None = None,
) -> torch.Tensor:
    """SPA's combination ``ω·l_o + (1−ω)·l_m`` in float32, guarded against NaN and infinities.

    Args:
        original: ``(B, V)`` logits of the original branch.
        masked: ``(B, V)`` logits of the anchor-masked branch.
        omega: ``(B,)`` steering strengths.
        by_probability: ``(B,)`` booleans: rows whose move is SPA's probability-modulated one,
            ``l_o + (ω−1)·(p_o / max p_o)·(l_o − l_m)`` with ``p_o = softmax(l_o)`` (the ``anchoring`` package's
            ``modulated_by_prob``, which applies it only for ω > 1); None: no such row.

    Returns:
        ``(B, V)`` float32 logits; rows with ``ω == 1`` are exactly the original logits.
    """
    orig = torch.nan_to_num(original.float(), nan=-LOGIT_BOUND).clamp(-LOGIT_BOUND, LOGIT_BOUND)
    mask = torch.nan_to_num(masked.float(), nan=-LOGIT_BOUND).clamp(-LOGIT_BOUND, LOGIT_BOUND)
    w = omega.float().unsqueeze(-1)
    combined = w * orig + (1.0 - w) * mask
    if by_probability is not None and bool(by_probability.any()):
        relative = torch.exp(orig - orig.max(dim=-1, keepdim=True).values)  # p / p_max, 1 at the top token
        modulated = orig + (w - 1.0) * relative * (orig - mask)
        rows = by_probability.to(orig.device).unsqueeze(-1) & (w > 1.0)
        combined = torch.where(rows, modulated, combined)
    return torch.where(w == 1.0, orig, combined)


def jensen_shannon(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``(B,)`` Jensen–Shannon divergences (nats, in ``[0, ln 2]``) between rows of two log-distributions."""
    p, q = log_p.exp(), log_q.exp()
    log_m = torch.log((p + q) / 2).clamp(min=-LOGIT_BOUND)
    kl_pm = (p * (log_p - log_m)).sum(dim=-1)
    kl_qm = (q * (log_q - log_m)).sum(dim=-1)
    return (0.5 * (kl_pm + kl_qm)).clamp(min=0.0, max=math.log(2.0))


def divergence_omegas(omegas: torch.Tensor, log_original: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """AdaCAD's per-token strength ``1 + (ω−1)·JSD(p_orig ‖ p_masked)/ln 2`` for each row's ω (its cap)."""
    log_m = torch.log_softmax(torch.nan_to_num(masked.float(), nan=-LOGIT_BOUND).clamp(-LOGIT_BOUND, LOGIT_BOUND), -1)
    return 1.0 + (omegas - 1.0) * jensen_shannon(log_original, log_m) / math.log(2.0)


def steering_effect(
    combined: torch.Tensor, log_original: torch.Tensor, original_top: torch.Tensor
) -> tuple[list[bool], list[float]]:
    """Per row: did steering change the argmax, and KL(steered ‖ original) of the next-token distributions (nats).

    Args:
        combined: ``(B, V)`` steered logits.
        log_original: ``(B, V)`` log-softmax of the original branch.
        original_top: ``(B,)`` its argmax.
    """
    flipped = combined.argmax(dim=-1) != original_top
    log_s = torch.log_softmax(combined, dim=-1)
    kl = (log_s.exp() * (log_s - log_original)).sum(dim=-1).clamp(min=0.0)
    return flipped.tolist(), kl.tolist()


def sampling_processors(sampling: SamplingConfig) -> Any:
    """transformers' warpers for temperature, top-k and top-p, built once per session (empty when greedy)."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    processors = LogitsProcessorList()
    if sampling.do_sample and sampling.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(sampling.temperature))
    if sampling.do_sample and sampling.top_k > 0:
        processors.append(TopKLogitsWarper(top_k=sampling.top_k))
    if sampling.do_sample and sampling.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=sampling.top_p))
    return processors
