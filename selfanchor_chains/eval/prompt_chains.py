"""What the evaluation's one-prompt-per-item chains share: a runnable whose ``batch`` decodes all its prompts in one
call of the steered LLM, and the output fields read from each generation."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict

__all__ = ["OnePromptChain", "generation_output"]


class OnePromptChain(RunnableSerializable[dict[str, Any], dict[str, Any]]):
    """Base of the chains that turn each input into one prompt and decode a batch in one call (continuous batching
    in the LLM); subclasses implement :meth:`decode_batch`, which checks every input before any decoding."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def invoke(self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.batch([input], config)[0]

    def batch(
        self,
        inputs: list[dict[str, Any]],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        return self.decode_batch(inputs) if inputs else []

    def decode_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError


def generation_output(prompt: str, generation: Any, omega: float) -> dict[str, Any]:
    """The fields every output of these chains has, from one LangChain ``Generation`` of the steered LLM."""
    info = generation.generation_info or {}
    return {
        "text": generation.text,
        "finish_reason": info.get("finish_reason"),
        "usage": {"prompt_tokens": info.get("prompt_tokens"), "completion_tokens": info.get("completion_tokens")},
        "steps": [],
        "omega": omega,
        "prompt": prompt,
    }
