"""The LangChain classes: the steered LLM and chat model over one shared runtime (model lock, engine, settings)."""

from .chat_model import ChatSteeredHF
from .llm import SteeredHFLLM

__all__ = ["ChatSteeredHF", "SteeredHFLLM"]
