"""LangChain's standard integration tests for ChatSteeredHF on the real SmolLM2-135M-Instruct (bfloat16, CPU).

Every feature the suite tests and a 135M local text model has runs for real; tool calling, structured output, JSON
mode and multimodal inputs are switched off through the suite's capability properties, so those tests skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from langchain_tests.integration_tests import ChatModelIntegrationTests

from selfanchor_chains import models
from selfanchor_chains.langchain.chat_model import ChatSteeredHF

pytestmark = pytest.mark.slow

NAME = "smollm2-135m"
DTYPE = "bfloat16"  # several times faster than float32 on AVX-512 BF16 CPUs, and the suite passes in it


@pytest.fixture(scope="module")
def smollm2() -> Iterator[tuple[Any, Any]]:
    if not models.is_installed(models.REGISTRY[NAME]):
        pytest.skip(f"{NAME} weights are not installed: {models.REGISTRY[NAME].pip_command}")
    loaded = models.load_model_and_tokenizer(NAME, dtype=DTYPE)
    # Single-row decoding of a 135M model gains little from more threads, and on a busy CPU (parallel test runs)
    # oversubscribed OpenMP threads made one 16-token answer take 30 s instead of 0.5 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield loaded
    finally:
        torch.set_num_threads(threads)


class TestChatSteeredHFIntegration(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _weights(self, smollm2: tuple[Any, Any]) -> None:
        # The suite builds the model from `chat_model_params` for every test; the weights are loaded once.
        self._loaded = {"model": smollm2[0], "tokenizer": smollm2[1]}

    @property
    def chat_model_class(self) -> type[ChatSteeredHF]:
        return ChatSteeredHF

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # Short answers keep the suite fast; greedy so that runs are reproducible.
        return {**self._loaded, "model_id": f"{NAME}@{DTYPE}", "max_tokens": 16, "temperature": 0.0}

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


def test_from_model_id_steers_the_real_model(smollm2: tuple[Any, Any]) -> None:
    from langchain_core.messages import HumanMessage

    chat = ChatSteeredHF.from_model_id(NAME, dtype=DTYPE, max_tokens=8, omega=2.0)
    assert chat.model_name == f"{NAME}@{DTYPE}"
    messages = [HumanMessage("<anchor>Reply with one word.</anchor> What colour is the sky?")]
    prepared = chat.prepare(messages)
    assert prepared.anchored_texts() == ["Reply with one word."]
    assert chat.tokenizer.decode(prepared.ids[slice(*prepared.token_spans[0])]).strip() == "Reply with one word."
    answer = chat.invoke(messages)
    assert answer.content and answer.usage_metadata["input_tokens"] == len(prepared.ids)
    assert "".join(str(c.content) for c in chat.stream(messages)) == answer.content
