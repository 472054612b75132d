"""transformers' own classifier-free guidance with the anchors masked out of the negative prompt: the reference our
steered greedy decoding must reproduce token for token (shared by the CPU and the device exactness tests)."""

from __future__ import annotations

from typing import Any

import torch


def cfg_greedy_tokens(
    model: Any, ids: list[int], span: tuple[int, int], scale: float, max_new_tokens: int, pad_token_id: Any = None
) -> list[int]:
    """``model.generate`` with ``guidance_scale`` and a negative prompt that is the prompt with ``span`` masked."""
    input_ids = torch.tensor([ids], device=model.device)
    negative_mask = torch.ones_like(input_ids)
    negative_mask[0, span[0] : span[1]] = 0
    out = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        guidance_scale=scale,
        negative_prompt_ids=input_ids,
        negative_prompt_attention_mask=negative_mask,
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        do_sample=False,
        **({"pad_token_id": pad_token_id} if pad_token_id is not None else {}),
    )
    return out[0, len(ids) :].tolist()


def reference_steered_logits(model: Any, seq: list[int], spans: Any, omega: float) -> torch.Tensor:
    """``ω·l_o + (1−ω)·l_m`` from two full forwards without any cache, the anchors hidden by the attention mask."""
    ids = torch.tensor([seq], device=model.device)
    hidden = torch.ones_like(ids)
    for start, end in spans:
        hidden[0, start:end] = 0
    with torch.no_grad():
        l_o = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float()
        l_m = model(input_ids=ids, attention_mask=hidden).logits[0, -1].float()
    return omega * l_o + (1 - omega) * l_m
