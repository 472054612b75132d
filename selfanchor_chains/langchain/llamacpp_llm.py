"""SteeredLlamaCpp: steered decoding of a GGUF file in llama.cpp, as a LangChain LLM (``pip install
'selfanchor-chains[llamacpp]'``, built by ``scripts/llamacpp_build.py``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar, cast

from pydantic import Field
from typing_extensions import Self

from ..engine.llamacpp_model import LlamaCppModel
from ..engine.llamacpp_session import LlamaCppDecoder
from ..models.gguf_parse import gguf_parsed_once
from .llm import SteeredHFLLM
from .params import PositiveInt
from .runtime import SteeredRuntime, _lock_for

__all__ = ["LlamaCppRuntime", "SteeredLlamaCpp", "load_gguf_tokenizer"]


class LlamaCppRuntime(SteeredRuntime):
    """The LangChain runtime (lock, shared session, async bridge) over the llama.cpp engine instead of torch."""

    def __init__(self, model: LlamaCppModel, tokenizer: Any) -> None:
        # SteeredRuntime's own __init__ builds a torch decoder; everything else of it works on any decoder with the
        # same ``start`` (sessions with the same controls and events).
        self.model = model
        self.tokenizer = tokenizer
        self.decoder = cast(Any, LlamaCppDecoder(model, tokenizer))
        self._lock = _lock_for(model)
        self._shared = None
        self._shared_guard = threading.Lock()


def resolve_model_path(model_path: str) -> tuple[Path, str]:
    """A GGUF file and the model's identity: a path as it is, a registry name through its weight packages.

    Raises:
        FileNotFoundError: Neither an existing file nor a registry name.
        ModelNotInstalledError: A registry model whose weight packages are missing.
    """
    from ..models.registry import REGISTRY

    if model_path in REGISTRY:
        from ..models.cache import resolve_gguf

        return resolve_gguf(model_path), f"{model_path}@gguf"
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"no GGUF file at {model_path!r}, and it is not a registry model ({', '.join(REGISTRY)})"
        )
    return path, str(path)


def load_gguf_tokenizer(path: Path) -> Any:
    """The Hugging Face tokenizer stored in a GGUF file (vocabulary, merges, chat template), ready for left-padded
    batches; the prompts' anchor spans are found through its character offsets."""
    from transformers import AutoTokenizer

    with gguf_parsed_once():  # transformers would parse the file twice
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


class SteeredLlamaCpp(SteeredHFLLM):
    """Steered decoding of a GGUF file in llama.cpp, as a LangChain LLM: any quantisation, no conversion.

    The masked branch is a second llama.cpp sequence holding the prompt minus the anchor tokens at their original
    positions; both branches of every row decode in one ``llama_decode`` per step (see
    :mod:`selfanchor_chains.engine.llamacpp_session`). Everything else is :class:`SteeredHFLLM`'s: anchors in
    markup or at call time, ``omega`` / ``omega_scaling``, stop strings, streaming, ``batch()`` with continuous
    batching, concurrent calls joining one session, async.

    Why a class of its own, and a subclass: the reasoning chains (``SelfAnchorChain`` and the baselines) take a
    :class:`SteeredHFLLM`, so a subclass runs in all of them unchanged; and the two backends' loading options do not
    overlap (torch: ``dtype``, ``quantization``, ``device_map``; llama.cpp: the GGUF file, ``n_ctx``, threads,
    slots), so a ``backend=`` option would leave half of one class's fields meaningless for each value.

    Example:
        .. code-block:: python

            from selfanchor_chains.langchain.llamacpp_llm import SteeredLlamaCpp

            llm = SteeredLlamaCpp(model_path="qwen2.5-coder-0.5b", omega=1.5, max_new_tokens=64)  # or a .gguf path
            llm.invoke("Question: <anchor>What is 17 * 3?</anchor> Answer with one number.")
    """

    model_path: str = ""
    """A GGUF file, or a registry name (``smollm2-135m``, ``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``)."""
    n_ctx: PositiveInt = 8192
    """KV cells of the llama.cpp context, shared by every row (a steered row needs up to twice its length)."""
    n_threads: PositiveInt | None = None
    """CPU threads (default: every core)."""
    slots: PositiveInt = 16
    """Rows that can decode at once over all calls (each holds two llama.cpp sequences)."""
    tokenizer: Any = Field(default=None, exclude=True)
    """The GGUF's tokenizer in Hugging Face form (read from the file when not given)."""

    llm_type_name: ClassVar[str] = "selfanchor-steered-llamacpp"

    def model_post_init(self, context: Any, /) -> None:
        if self.model is None:
            if not self.model_path:
                raise ValueError("SteeredLlamaCpp needs model_path: a GGUF file or a registry name")
            path, name = resolve_model_path(self.model_path)
            self.model = LlamaCppModel(path, n_ctx=self.n_ctx, slots=self.slots, n_threads=self.n_threads)
            if self.tokenizer is None:
                self.tokenizer = load_gguf_tokenizer(path)
            self.model_id = self.model_id or name
        if not isinstance(self.model, LlamaCppModel):
            raise TypeError(f"SteeredLlamaCpp's model must be a LlamaCppModel, got {type(self.model).__name__}")
        if self.tokenizer is None:
            self.tokenizer = load_gguf_tokenizer(self.model.path)
        self.model_id = self.model_id or str(self.model.path)
        from ..prompting.markup import AnchorMarkup

        AnchorMarkup(self.anchor_open_tag, self.anchor_close_tag)  # validates the tags
        self._runtime = LlamaCppRuntime(self.model, self.tokenizer)

    @classmethod
    def from_model_id(cls, model_id: str, **kwargs: Any) -> Self:
        """A registry name or GGUF path (``kwargs``: the class's fields)."""
        return cls(model_path=model_id, **kwargs)
