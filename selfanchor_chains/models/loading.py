"""Loading a causal LM and its tokenizer from a registry name, a local folder or a hub id, ready for batched
decoding."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
from .cache import _MARKER, _atomic_dir, converted_model_dir, resolve_gguf
from .cpu_linear import use_row_friendly_linears
from .dtypes import DEFAULT_DTYPE
from .gguf_parse import gguf_parsed_once
from .noise import quiet_loading
from .quantization import (
    AUTO_QUANTIZATION,
    DEFAULT_QUANTIZATION,
    check_quantization,
    quantize_model,
    resolve_weights,
)
from .registry import REGISTRY, ModelLoadError, ModelRegistryError, ModelSpec

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- loading


def _gguf_load_kwargs() -> dict[str, Any]:
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers: GGUF files are always dequantized
        return {}
    # Dense weights: the packed-GGUF path gives a model that save_pretrained refuses to serialize.
    return {"quantization_config": GgufConfig(dequantize=True)}


def _load_from_gguf(gguf: Path, dtype: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize a GGUF file into a dense model in ``dtype``, and read its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with gguf_parsed_once():  # transformers would parse the file three times
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, dtype), **_gguf_load_kwargs()
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return model, tokenizer


def _prepare(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make a pair ready for batched generation: a pad token, left padding, eval mode."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("The tokenizer has neither a pad nor an eos token, so batches cannot be padded.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()


def _convert(spec: ModelSpec, dtype: str, dest: Path) -> None:
    """Build the safetensors copy of ``spec`` in ``dtype`` at ``dest`` (atomically)."""
    gguf = resolve_gguf(spec)
    started = time.perf_counter()
    logger.info("Converting %s to %s safetensors (one-time)", spec.name, dtype)
    model, tokenizer = _load_from_gguf(gguf, dtype)
    _prepare(model, tokenizer)
    with _atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {"name": spec.name, "dtype": dtype, "source": spec.source, "gguf_sha256": spec.sha256_prefix}
        (tmp / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    logger.info("Converted %s in %.1f s into %s", spec.name, time.perf_counter() - started, dest)


def _load_pretrained(
    path_or_id: str, dtype: str, *, trust_remote_code: bool, local: bool, **placement: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Local folders must hold safetensors: a pickled .bin could run arbitrary code on load.
    extra: dict[str, Any] = {"use_safetensors": True, **placement} if local else dict(placement)
    if local and not any(Path(path_or_id).glob("*.safetensors")):
        raise ModelLoadError(f"no safetensors weights in {path_or_id!r} (a model folder needs *.safetensors)")
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            path_or_id,
            dtype=getattr(torch, dtype),
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            **extra,
        )
        model, info = loaded[0], loaded[1]
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    except ModelRegistryError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        if not local:
            raise
        raise ModelLoadError(f"could not load the model at {path_or_id!r}: {type(error).__name__}: {error}") from error
    except Exception as error:  # safetensors' SafetensorError is not an OSError
        if not local or type(error).__name__ != "SafetensorError":
            raise
        raise ModelLoadError(f"unreadable weights at {path_or_id!r}: {error}") from error
    # A partial checkpoint would leave layers at their random initial values and generate gibberish.
    problems = {k: info.get(k) or [] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        detail = "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {list(v)[:3]})" for k, v in problems.items() if v)
        raise ModelLoadError(f"the weights at {path_or_id!r} do not match the model: {detail}")
    _prepare(model, tokenizer)
    return model, tokenizer


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else is meant as a folder.
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1


def load_model_and_tokenizer(
    name_or_path: str,
    *,
    dtype: str | torch.dtype = DEFAULT_DTYPE,
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
    quantization: str | None = DEFAULT_QUANTIZATION,
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, Any] | None = None,
    offload_folder: str | os.PathLike[str] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready for left-padded batched generation.

    Args:
        name_or_path: A registry name (see :data:`REGISTRY`), a local Hugging Face folder with
            safetensors weights, or a hub id (works only if it is in the local HF cache or online).
        dtype: ``"auto"`` (default: bfloat16 where the hardware computes it natively, else float32 on a CPU;
            see :func:`resolve_dtype`), ``"bfloat16"``, ``"float16"``, ``"float32"`` or the matching ``torch.dtype``.
        trust_remote_code: Passed to ``from_pretrained``; leave False unless you trust the source.
        device: Where to put the weights (``"cuda"``, ``"cuda:1"``, ...); default the CPU. The engine runs its
            forwards wherever the weights are (this project's CI has no GPU, so only the CPU path is tested).
        quantization: ``"auto"`` (default: the measured CPU default where it is faster, see
            :func:`~selfanchor_chains.models.quantization.resolve_weights`), ``None`` (dense weights), ``"int8"``
            or ``"int4"``: weight-only quantized linear layers for CPU decoding, through torchao (see
            :mod:`selfanchor_chains.models.quantization`); needs bfloat16 (what ``"auto"`` dtype then picks).
            Checked before anything is loaded.
        device_map: A model larger than one device: Accelerate's big-model placement, ``"auto"`` or a dict of
            module name → device (``"cuda:0"``, ``"cpu"``, ``"disk"``); the engine feeds inputs to the device of the
            embeddings and reads the logits wherever the last layer puts them. Not with ``device`` or
            ``quantization``.
        max_memory: With ``device_map``: the most memory per device (``{0: "20GiB", "cpu": "60GiB"}``).
        offload_folder: With ``device_map``: where layers mapped to ``"disk"`` are kept.

    Returns:
        ``(model, tokenizer)``: the model in eval mode on ``device``; the tokenizer with a pad token
        (falling back to eos) and ``padding_side="left"``. A float32 model on the CPU computes its linear layers
        row-friendly (:mod:`selfanchor_chains.models.cpu_linear`: the steered engine's two-row forwards cost about
        one row's; undo with ``use_row_friendly_linears(model, enabled=False)``).

    Raises:
        ModelNotInstalledError: A registry model's weight packages are missing.
        ModelChecksumError: A registry model's GGUF file is corrupt.
        FileNotFoundError: ``name_or_path`` looks like a path but is not a folder.
        ModelLoadError: A local folder's weights are missing, partial (missing or unexpected tensors) or
            unreadable, or its tokenizer cannot be read; the message names the path and the cause.
        OSError: A hub id could not be loaded.
        ValueError: An empty ``name_or_path``; a ``device`` this torch build cannot use; ``dtype`` or
            ``quantization`` not supported (or not together, or not on ``device``).
        QuantizationUnavailableError: ``quantization`` was asked for and torchao is not installed.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"name_or_path must name a registry model, a folder or a hub id, got {name_or_path!r}")
    if device_map is not None and quantization == AUTO_QUANTIZATION:
        quantization = None  # Accelerate places the layers; the quantized kernels are for one CPU
    choice, quantized = resolve_weights(dtype, quantization, device)
    quantization = quantized.quantization
    placement = _placement(device, quantization, device_map, max_memory, offload_folder)
    check_quantization(quantization, dtype=choice.dtype, device=device)
    _check_device(device)
    with quiet_loading():  # torchao's and torch's import-time warnings (see .noise); SELFANCHOR_DEBUG shows them
        model, tokenizer = _load_any(name_or_path, choice.dtype, trust_remote_code, placement=placement)
    if device is not None:
        model = model.to(device)  # type: ignore[arg-type]  # transformers types .to oddly
    if quantization is not None:
        with quiet_loading():
            quantize_model(model, quantization, log=logger.info)
    elif choice.dtype == "float32" and (device is None or str(device).startswith("cpu")) and not placement:
        use_row_friendly_linears(model)  # a float32 product with 2+ rows is several times faster this way round
    return model, tokenizer


def _placement(
    device: Any, quantization: str | None, device_map: Any, max_memory: Any, offload_folder: Any
) -> dict[str, Any]:
    """``from_pretrained``'s big-model arguments, checked before anything is loaded."""
    if device_map is None:
        if max_memory is not None or offload_folder is not None:
            raise ValueError("max_memory and offload_folder go with device_map")
        return {}
    if device is not None or quantization is not None:
        raise ValueError("device_map places the layers itself: pass neither device nor quantization with it")
    if not (device_map == "auto" or isinstance(device_map, dict)):
        raise ValueError(f"device_map must be 'auto' or a dict of module -> device, got {device_map!r}")
    placement: dict[str, Any] = {"device_map": device_map}
    if max_memory is not None:
        placement["max_memory"] = max_memory
    if offload_folder is not None:
        placement["offload_folder"] = str(offload_folder)
    return placement


def _check_device(device: str | torch.device | None) -> None:
    """Refuse a device this torch build cannot use, before any weights are read."""
    import torch

    if device is None:
        return
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} is not available: this torch build sees no CUDA device")
    if kind == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(device)!r} is not available: this torch build has no MPS support")


def model_tag(name: str, dtype: str, quantization: str | None = None) -> str:
    """A loaded model's identity, ``"<name>@<dtype>"`` or ``"<name>@<dtype>+<quantization>"``.

    ``from_model_id`` sets it as ``model_id`` (so the LLM cache key and evaluation folders tell them apart).
    """
    return f"{name}@{dtype}" + (f"+{quantization}" if quantization else "")


def _load_any(
    name_or_path: str, dtype_name: str, trust_remote_code: bool, placement: dict[str, Any] | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    placed = placement or {}
    if name_or_path in REGISTRY:
        dest = converted_model_dir(name_or_path, dtype_name)
        if not (dest / _MARKER).is_file():
            _convert(REGISTRY[name_or_path], dtype_name, dest)
        # The first call loads the fresh copy too, so it returns exactly what later calls do.
        return _load_pretrained(str(dest), dtype_name, trust_remote_code=trust_remote_code, local=True, **placed)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return _load_pretrained(str(local), dtype_name, trust_remote_code=trust_remote_code, local=True, **placed)
    if _looks_like_path(name_or_path):
        raise FileNotFoundError(f"No model folder at {name_or_path!r}")
    try:
        return _load_pretrained(name_or_path, dtype_name, trust_remote_code=trust_remote_code, local=False, **placed)
    except OSError as error:
        raise OSError(
            f"Could not load {name_or_path!r}: it is not a registry model ({', '.join(REGISTRY)}), "
            f"not a local folder, and not loadable as a hub id ({error})"
        ) from error
