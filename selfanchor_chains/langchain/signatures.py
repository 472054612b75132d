"""Short names for the parameter types of langchain-core's entry points, so that the sync and async faces of each
entry point read as one line of signature each."""

from __future__ import annotations

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun, Callbacks
from langchain_core.language_models import LanguageModelInput
from langchain_core.runnables import RunnableConfig

__all__ = ["AsyncLLMRun", "BatchConfig", "ChatInputs", "LLMRun", "PerPromptCallbacks"]

# The run manager langchain-core hands a model's _generate / _stream (None when nothing listens), and the async one.
LLMRun = CallbackManagerForLLMRun | None
AsyncLLMRun = AsyncCallbackManagerForLLMRun | None

# Runnable.batch's config: one for every input, or one per input.
BatchConfig = RunnableConfig | list[RunnableConfig] | None

# BaseLLM.generate's callbacks: one set for every prompt, or a list with one set per prompt.
PerPromptCallbacks = Callbacks | list[Callbacks]

# A chat model's batch: each input a string, a prompt value or a list of messages.
ChatInputs = list[LanguageModelInput]
