"""LlamaIndex integration of selfanchor-chains: a steered local LLM with anchored prompts."""

from llama_index.llms.selfanchor.base import SelfAnchorLLM
from llama_index.llms.selfanchor.embeddings import LangChainEmbedding, MiniLMEmbedding
from llama_index.llms.selfanchor.prompts import (
    ANCHORED_REFINE_PROMPT,
    ANCHORED_TEXT_QA_PROMPT,
    anchored_prompt,
    anchored_query_engine,
)

__all__ = [
    "ANCHORED_REFINE_PROMPT",
    "ANCHORED_TEXT_QA_PROMPT",
    "LangChainEmbedding",
    "MiniLMEmbedding",
    "SelfAnchorLLM",
    "anchored_prompt",
    "anchored_query_engine",
]
