"""What the evaluation's one-prompt-per-item chains share: a runnable whose ``batch`` decodes all its prompts in one
call of the steered LLM, and the output fields read from each generation."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, field_validator

__all__ = ["OnePromptChain", "generation_output", "method_omega"]


def method_omega(name: str, example: str) -> float:
    """ω of a method name ``base@ω`` (``"code-anchored@2"`` → 2.0), a finite number ≥ 1.

    Raises:
        ValueError: What follows ``@`` is not a number (``example`` shows one that is), or not finite and ≥ 1.
    """
    try:
        omega = float(name.partition("@")[2])
    except ValueError:
        raise ValueError(f"bad ω in {name!r}: expected a number, e.g. {example}") from None
    if not (math.isfinite(omega) and omega >= 1.0):
        raise ValueError(f"ω must be a finite number >= 1 in {name!r}")
    return omega


class OnePromptChain(RunnableSerializable[dict[str, Any], dict[str, Any]]):
    """Base of the chains that turn each input into one prompt and decode a batch in one call (continuous batching
    in the LLM); subclasses implement :meth:`decode_batch`, which checks every input before any decoding, and
    :meth:`input_error`, which checks one input without decoding.

    ``batch`` opens one chain run per input (callbacks and tracing see each) and decodes them all in one call; with
    ``return_exceptions=True`` a bad input gets its exception in its place and the others are decoded.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    methods: ClassVar[tuple[str, ...]] = ()
    """The method names a subclass decodes."""

    llm: Any
    method: str
    omega: float = 1.0
    """Steering strength; 1 is no steering."""
    max_new_tokens: int

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in cls.methods:
            raise ValueError(f"unknown method {value!r} for {cls.__name__}; choose from {', '.join(cls.methods)}")
        return value

    @field_validator("omega")
    @classmethod
    def _omega_at_least_one(cls, value: float) -> float:
        if not (math.isfinite(value) and value >= 1.0):
            raise ValueError(f"omega must be a finite number >= 1 (1 = no steering), got {value!r}")
        return value

    @field_validator("max_new_tokens")
    @classmethod
    def _positive_budget(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {value!r}")
        return value

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
        def decode(items: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
            if not return_exceptions:
                return list(self.decode_batch(items))  # the first bad input raises, before any decoding
            errors = [self.input_error(item) for item in items]
            good = [item for item, error in zip(items, errors, strict=True) if error is None]
            decoded = iter(self.decode_batch(good) if good else [])
            return [next(decoded) if error is None else error for error in errors]

        return self._batch_with_config(decode, list(inputs), config, return_exceptions=return_exceptions)

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return (await self.abatch([input], config))[0]

    async def abatch(
        self,
        inputs: list[dict[str, Any]],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        # The sync core in a worker thread: one decoding call for the whole batch, the event loop left free.
        return await run_in_executor(None, self.batch, inputs, config, return_exceptions=return_exceptions)

    def input_error(self, item: dict[str, Any]) -> Exception | None:
        """The error one input would raise in :meth:`decode_batch` (a bad field), or None; decodes nothing."""
        return None

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
