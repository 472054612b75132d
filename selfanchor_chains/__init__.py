"""Self-Anchor steered reasoning for LangChain on local Hugging Face models.

Heavy modules (torch, transformers) load on first use of the classes, so ``import selfanchor_chains`` is light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .langchain.chat_model import ChatSteeredHF
    from .langchain.llamacpp_llm import SteeredLlamaCpp
    from .langchain.llm import SteeredHFLLM
    from .reasoning.chains import CoTChain, PlanAndSolveChain, SelfAnchorChain, SPAChain

_LAZY = {
    "SteeredHFLLM": "langchain.llm",
    "ChatSteeredHF": "langchain.chat_model",
    "SteeredLlamaCpp": "langchain.llamacpp_llm",
    "SelfAnchorChain": "reasoning.chains",
    "CoTChain": "reasoning.chains",
    "PlanAndSolveChain": "reasoning.chains",
    "SPAChain": "reasoning.chains",
}

__all__ = [
    "ChatSteeredHF",
    "CoTChain",
    "PlanAndSolveChain",
    "SPAChain",
    "SelfAnchorChain",
    "SteeredHFLLM",
    "SteeredLlamaCpp",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
