"""Self-Anchor steered reasoning for LangChain on local Hugging Face models.

Heavy modules (torch, transformers) load on first use of the classes, so ``import selfanchor_chains`` is light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .chains import CoTChain, PlanAndSolveChain, SelfAnchorChain, SPAChain
    from .chat_models import ChatSteeredHF
    from .llms import SteeredHFLLM

_LAZY = {
    "SteeredHFLLM": "llms",
    "ChatSteeredHF": "chat_models",
    "SelfAnchorChain": "chains",
    "CoTChain": "chains",
    "PlanAndSolveChain": "chains",
    "SPAChain": "chains",
}

__all__ = [
    "ChatSteeredHF",
    "CoTChain",
    "PlanAndSolveChain",
    "SPAChain",
    "SelfAnchorChain",
    "SteeredHFLLM",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
