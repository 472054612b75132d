"""One conversation's answer, built from its engine events: text, usage, metadata, stream chunks."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from ..engine.requests import TokenEvent, harmonic_mean
from .chat_batching import RowItem


class ChatAnswer:
    """One conversation's answer, built from its engine events."""

    def __init__(self, tokenizer: Any, prompt_tokens: int, omega: float, model_name: str) -> None:
        self._tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        self.omega = omega
        self.model_name = model_name
        self.text = ""
        self.token_ids: list[int] = []
        self.confidences: list[float] = []
        self.finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def feed(self, item: RowItem) -> str:
        """Record one item; returns the new text it adds."""
        if isinstance(item, TokenEvent):
            if item.finish_reason != "eos":  # the EOS token is not part of the answer
                self.token_ids.append(item.token_id)
            self.confidences.append(item.confidence)
            self.text += item.text
            self.finish_reason = item.finish_reason
            return item.text
        self.finish_reason = item.reason
        rest = self._held_back()
        self.text += rest
        return rest

    def _held_back(self) -> str:
        # A row stopped from outside (timeout) never got its final flush: the engine may still hold back a tail
        # that could have grown into a stop string, or an unfinished multi-byte character (dropped).
        if not self.token_ids:
            return ""
        full = self._tokenizer.decode(self.token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        full = full.rstrip("\ufffd")
        return full[len(self.text) :] if full.startswith(self.text) else ""

    def usage(self) -> UsageMetadata:
        output_tokens = len(self.token_ids)
        return UsageMetadata(
            input_tokens=self.prompt_tokens,
            output_tokens=output_tokens,
            total_tokens=self.prompt_tokens + output_tokens,
        )

    def response_metadata(self) -> dict[str, Any]:
        return {"finish_reason": self.finish_reason, "model_name": self.model_name}

    def generation_info(self) -> dict[str, Any]:
        return {**self.response_metadata(), "omega": self.omega, "mean_confidence": harmonic_mean(self.confidences)}

    def chunk(self, text: str) -> ChatGenerationChunk | None:
        """The stream chunk for new text: plain while decoding, the one carrying usage and metadata at the end."""
        if self.finished:
            message = AIMessageChunk(
                content=text,
                usage_metadata=self.usage(),
                response_metadata=self.response_metadata(),
                chunk_position="last",
            )
            return ChatGenerationChunk(message=message, generation_info=self.generation_info())
        if not text:
            return None
        return ChatGenerationChunk(message=AIMessageChunk(content=text))

    def result(self) -> ChatResult:
        usage = self.usage()
        message = AIMessage(content=self.text, usage_metadata=usage, response_metadata=self.response_metadata())
        token_usage = {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        }
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info=self.generation_info())],
            llm_output={"token_usage": token_usage, "model_name": self.model_name},
        )
