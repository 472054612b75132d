"""LangChain's standard unit tests for ChatSteeredHF, on the tiny random Llama and the in-code byte tokenizer."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from selfanchor_chains.langchain.chat_model import ChatSteeredHF


class TestChatSteeredHFUnit(ChatModelUnitTests):
    @pytest.fixture(autouse=True)
    def _tiny(self, tiny_model: Any, byte_tokenizer: Any) -> None:
        # The suite builds the model from `chat_model_params`; the session fixtures supply the weights.
        self._weights = {"model": tiny_model, "tokenizer": byte_tokenizer}

    @property
    def chat_model_class(self) -> type[ChatSteeredHF]:
        return ChatSteeredHF

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {**self._weights, "model_id": "tiny-random-llama"}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # A local model has no API key; the suite's default adds `api_key="test"`, which extra="forbid" rejects.
        params = super().standard_chat_model_params
        params.pop("api_key", None)
        return params

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False  # one loaded model per instance: a call-time `model=` cannot switch weights
