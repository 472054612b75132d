"""The model side of decoding: a Hugging Face causal LM with what every decode session over it needs (EOS, padding,
the neutral token, the cache keyword of this transformers release, the shared-prefix cache) and one cached forward.

Sessions (:mod:`.session`) build on this; :class:`~selfanchor_chains.engine.decoder.SteeredDecoder` adds the entry
points that open them, above both."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from .prefix_cache import PrefixCache
from .requests import DecodingInputError


class DecoderModel:
    """A Hugging Face causal LM prepared for batched two-branch decoding (what a decode session runs on).

    Args:
        model: A ``transformers`` causal LM whose cache is a plain ``DynamicCache`` (full attention layers).
        tokenizer: Used to decode text for stop strings and streaming; optional for id-only use.
        eos_token_ids: Tokens that end a row; defaults to the model's and tokenizer's EOS ids.
        pad_token_id: Id used for left padding; defaults to the tokenizer's pad, else the first EOS id.
        neutral_token_id: The token the masked branch sees in place of each anchor token when a row asks for
            ``anchor_masking="replace"``; defaults to the tokenizer's unknown token, else the pad token.
        prefix_cache_tokens: How many prompt-prefix tokens (over all stored prefixes) to keep the keys and values
            of, so that later sessions starting with the same tokens (a system prompt and instructions; the
            earlier turns of a chat) skip recomputing them. Least recently used prefixes are dropped first; 0
            turns it off. Call :meth:`clear_prefix_cache` if the model's weights change.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        eos_token_ids: Sequence[int] | None = None,
        pad_token_id: int | None = None,
        neutral_token_id: int | None = None,
        prefix_cache_tokens: int = 4096,
    ) -> None:
        if prefix_cache_tokens < 0:
            raise DecodingInputError(f"prefix_cache_tokens must be >= 0, got {prefix_cache_tokens}")
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = frozenset(eos_token_ids if eos_token_ids is not None else self._default_eos())
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = min(self.eos_token_ids) if self.eos_token_ids else 0
        self.pad_token_id = int(pad_token_id)
        if neutral_token_id is None:
            neutral_token_id = getattr(tokenizer, "unk_token_id", None)
        self.neutral_token_id = int(neutral_token_id) if neutral_token_id is not None else self.pad_token_id
        params = inspect.signature(model.forward).parameters
        # transformers 5.24 renamed the cache keyword; older 5.x releases only know the old one.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        self.context_length: int | None = getattr(model.config, "max_position_embeddings", None)
        self.prefix_cache = PrefixCache(prefix_cache_tokens)

    def _default_eos(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config, self.tokenizer):
            value = getattr(source, "eos_token_id", None) if source is not None else None
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    def clear_prefix_cache(self) -> None:
        """Forget every stored prompt prefix (needed after the model's weights change)."""
        self.prefix_cache.clear()

    # -- model plumbing ------------------------------------------------------------------------------------------

    @property
    def weights(self) -> torch.Tensor | None:
        """One of the model's weights: where and in which dtype the model computes."""
        return next(self.model.parameters(), None)

    @property
    def device(self) -> torch.device:
        """Where the inputs go: the device of the input embeddings (the first one of a model placed across
        devices by a ``device_map``; a layer offloaded to disk reports "meta", and Accelerate brings it in)."""
        embeddings = getattr(self.model, "get_input_embeddings", lambda: None)()
        weights = getattr(embeddings, "weight", None) if embeddings is not None else None
        if weights is None:
            weights = self.weights
        if weights is None or weights.device.type == "meta":
            return torch.device("cpu")
        return weights.device

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        """One cached forward; returns float32 logits of the last position, ``(rows, vocab)``, on the model's device.

        The session keeps its bookkeeping on the CPU; the inputs move to wherever the model's weights are.
        """
        device = self.device
        input_ids, attention_mask, position_ids = (t.to(device) for t in (input_ids, attention_mask, position_ids))
        kwargs: dict[str, Any] = {self._cache_kw: cache, "use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1  # the LM head over a long prompt is costly and only the last row is used
        with torch.no_grad():
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        return out.logits[:, -1, :].float()
