"""Choosing the dtype: ``"auto"`` is bfloat16 where the hardware computes it natively, float32 otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


AUTO_DTYPE = "auto"
DEFAULT_DTYPE = AUTO_DTYPE

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


def proc_cpu_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
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
    found = _torch_cpu_bf16_features() | (proc_cpu_flags() & set(_BF16_CPU_FLAGS))
    return sorted(found)


def device_type(device: str | torch.device | None) -> str:
    """``"cpu"``, ``"cuda"``, ``"mps"``, ... for a device name or object (``None``: the CPU)."""
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
    kind = device_type(device)
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
