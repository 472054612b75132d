"""The user cache: GGUF files assembled from chunk packages, converted safetensors copies, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
from .dtypes import DEFAULT_DTYPE, _dtype_name
from .registry import REGISTRY, ModelChecksumError, ModelSpec, is_installed, locate_chunks

logger = logging.getLogger(__name__)


CACHE_ENV_VAR = "SELFANCHOR_CACHE_DIR"

# Written last into a converted copy; a directory without it is never trusted.
_MARKER = "selfanchor-model.json"
_BLOCK = 8 * 1024 * 1024
# A temp dir this old belongs to a killed conversion, not a running one (the largest takes minutes).
_STALE_TEMP_S = 6 * 3600


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
