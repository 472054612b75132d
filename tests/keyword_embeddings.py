"""Embeddings in closed form for ranking tests: one axis per keyword (its count in the text), L2-normalised, so every
cosine similarity, and so every ranking, is known in advance."""

from __future__ import annotations

from collections.abc import Sequence


class KeywordEmbeddings:
    """A LangChain-style ``Embeddings`` (``embed_query`` / ``embed_documents``) over a fixed keyword list."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = tuple(words)

    def _embed(self, text: str) -> list[float]:
        counts = [float(text.lower().count(w)) for w in self.words]
        norm = sum(c * c for c in counts) ** 0.5 or 1.0
        return [c / norm for c in counts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]
