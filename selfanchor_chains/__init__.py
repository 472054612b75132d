"""Self-Anchor steered reasoning for LangChain on local Hugging Face models."""

from __future__ import annotations

__version__ = "0.1.0"
