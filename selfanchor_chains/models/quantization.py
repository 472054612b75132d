"""Weight-only int8 / int4 decoding on the CPU, with torchao (``pip install 'selfanchor-chains[quant]'``).

Only the weights of the linear layers are quantized; activations, the KV cache, attention and the steering
arithmetic stay in bfloat16 / float32 as before, so the engine's two-branch forward is unchanged.

- ``"int8"``: every linear layer (the output head too) is quantized per output row, symmetric, by torchao
  (``Int8Tensor``); the product runs PyTorch's weight-only kernel ``aten._weight_int8pack_mm``. (torchao 0.18's own
  eager int8 weight-only product converts the whole weight to bfloat16 on every call: ~4× slower than bfloat16
  on this project's CPU for a 896→4864 layer; its fast path needs ``torch.compile``.)
- ``"int4"``: the decoder's linear layers are quantized to 4 bits in groups of 64 by torchao
  (``PrototypeInt4WeightOnlyConfig``, its CPU layout ``Int4OpaqueTensor``, kernel
  ``aten._weight_int4pack_mm_for_cpu``); the output head gets int8 as above (as GGUF's Q4_K_M keeps the output
  tensor at higher precision).

Both kernels take bfloat16 activations: with float32 activations they are 15–70× slower than with bfloat16
(measured on this project's CPU), so a quantized model always computes in bfloat16.

Example:
    >>> from selfanchor_chains import SteeredHFLLM
    >>> llm = SteeredHFLLM.from_model_id("qwen2.5-coder-0.5b", quantization="int8")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .dtypes import AUTO_DTYPE, DtypeChoice, device_type, resolve_dtype

if TYPE_CHECKING:
    import torch

__all__ = [
    "AUTO_QUANTIZATION",
    "AUTO_QUANTIZATION_MAX_BATCH",
    "CPU_AUTO_QUANTIZATION",
    "DEFAULT_QUANTIZATION",
    "INT4_GROUP_SIZE",
    "QUANTIZATIONS",
    "QuantizationChoice",
    "QuantizationUnavailableError",
    "check_quantization",
    "quantize_model",
    "resolve_weights",
]

QUANTIZATIONS = ("int8", "int4")
"""The weight-only quantizations ``from_model_id(quantization=...)`` and ``--quantization`` accept."""

INT4_GROUP_SIZE = 64
"""int4 group size: divides the input width of every registry model's layers (576, 896, 1536, 4864, 8960)."""

TORCHAO_REQUIREMENT = "torchao==0.18.0"
INSTALL_HINT = f"pip install --no-deps {TORCHAO_REQUIREMENT}  (or: pip install 'selfanchor-chains[quant]')"


AUTO_QUANTIZATION = "auto"
DEFAULT_QUANTIZATION = AUTO_QUANTIZATION

CPU_AUTO_QUANTIZATION: str | None = "int4"
"""What ``quantization="auto"`` picks on a CPU that computes bfloat16 natively, when the dtype is ``"auto"`` too.
Chosen by the rule written before the measurement (``results/README.md``, issue #11): on Qwen2.5-Coder-0.5B, GSM8K
dev 1–100, CoT, int4 scored 22% and int8 24% against bfloat16's 23% (both within 2 points, McNemar p = 1.0), and
int4 decodes fastest at batch 1 (steered 19.3 tokens/s, int8 15.9, bfloat16 10.1; 256 tokens, AVX-512 BF16 CPU)."""

AUTO_QUANTIZATION_MAX_BATCH = 2
"""``"auto"`` quantizes only for decoding this many problems at a time or fewer. The weight-only kernels are built
for one or two rows: at batch 8 (16 rows with the masked branch) a steered decode ran at 40.8 tokens/s with int4
weights and 48.7 with dense bfloat16 (steered / plain 1.67 vs 1.17), so batch work keeps dense weights."""


@dataclass(frozen=True)
class QuantizationChoice:
    """The weight-only quantization a requested one (possibly ``"auto"``) resolved to, and why.

    Attributes:
        quantization: ``"int8"``, ``"int4"`` or ``None`` (dense weights).
        requested: What the caller asked for (``"auto"``, ``"int8"``, ``"int4"`` or ``None``).
        reason: One line saying why.
    """

    quantization: str | None
    requested: str | None
    reason: str

    def as_dict(self) -> dict[str, str | None]:
        """``{"quantization", "quantization_requested", "quantization_reason"}``, for JSON records."""
        return {
            "quantization": self.quantization,
            "quantization_requested": self.requested,
            "quantization_reason": self.reason,
        }


def resolve_weights(
    dtype: str | torch.dtype = AUTO_DTYPE,
    quantization: str | None = DEFAULT_QUANTIZATION,
    device: str | torch.device | None = None,
    *,
    batch: int = 1,
) -> tuple[DtypeChoice, QuantizationChoice]:
    """Resolve the requested dtype and quantization together, before anything is loaded.

    An explicit quantization (``"int8"``/``"int4"``, or ``None``/``"none"`` for dense weights) is kept as asked and
    ``"auto"`` dtype then means bfloat16 on a CPU (see :func:`~selfanchor_chains.models.resolve_dtype`).
    ``quantization="auto"`` (the default) picks :data:`CPU_AUTO_QUANTIZATION` only where it is the faster choice
    the measurement made it for: the CPU, a dtype left to ``"auto"`` that resolved to bfloat16 (the kernels take
    bfloat16 activations), decoding at most :data:`AUTO_QUANTIZATION_MAX_BATCH` problems at a time (``batch``),
    and torchao installed. Anywhere else the weights stay dense, and the reason says why. A pinned dtype keeps
    dense weights, so ``dtype="float32"`` stays exact.

    Raises:
        ValueError: An unsupported dtype (an unknown quantization is refused by :func:`check_quantization`).
    """
    requested = None if quantization is None or str(quantization).lower() == "none" else str(quantization)
    if requested != AUTO_QUANTIZATION:
        how = f"{requested} weights as requested" if requested else "dense weights as requested"
        return resolve_dtype(dtype, device, quantization=requested), QuantizationChoice(requested, requested, how)
    dtype_choice = resolve_dtype(dtype, device)
    kind = device_type(device)
    if CPU_AUTO_QUANTIZATION is None:
        why = "no weight-only quantization is the default (none kept GSM8K accuracy within the measured bound)"
    elif kind != "cpu":
        why = f"the weight-only kernels are CPU kernels and the weights go to {kind}"
    elif dtype_choice.requested != AUTO_DTYPE:
        why = f"the dtype was pinned to {dtype_choice.dtype}"
    elif dtype_choice.dtype != "bfloat16":
        why = "the CPU has no native bfloat16 unit and the weight-only kernels compute in bfloat16"
    elif batch > AUTO_QUANTIZATION_MAX_BATCH:
        why = f"at batch {batch} dense bfloat16 decodes faster than the weight-only kernels"
    elif importlib.util.find_spec("torchao") is None:
        why = f"torchao is not installed ({INSTALL_HINT})"
    else:
        reason = f"auto: {CPU_AUTO_QUANTIZATION} weights (the CPU computes bfloat16 natively)"
        return dtype_choice, QuantizationChoice(CPU_AUTO_QUANTIZATION, AUTO_QUANTIZATION, reason)
    return dtype_choice, QuantizationChoice(None, AUTO_QUANTIZATION, f"auto: dense weights, since {why}")


class QuantizationUnavailableError(ImportError):
    """Quantized decoding was asked for but torchao is not installed."""

    def __init__(self, quantization: str) -> None:
        super().__init__(
            f"quantization={quantization!r} needs torchao, which is not installed. Install it with:\n"
            f"    {INSTALL_HINT}\n"
            "(--no-deps keeps pip from replacing the CPU build of torch.)"
        )


def check_quantization(quantization: str | None, *, dtype: str, device: str | torch.device | None = None) -> None:
    """Refuse a quantization that cannot run, before any weights are loaded.

    Args:
        quantization: ``None`` (dense weights), ``"int8"`` or ``"int4"``.
        dtype: The concrete dtype the model will compute in (``"auto"`` already resolved).
        device: Where the weights will live (default the CPU).

    Raises:
        ValueError: An unknown quantization; a device other than the CPU; a dtype other than bfloat16 (the
            weight-only kernels are many times slower with float32 activations).
        QuantizationUnavailableError: torchao is not installed.
    """
    if quantization is None:
        return
    if quantization == AUTO_QUANTIZATION:
        raise ValueError("quantization='auto' is resolved first: pass it through resolve_weights().")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}; use one of {', '.join(QUANTIZATIONS)} or None.")
    kind = device_type(device)
    if kind != "cpu":
        raise ValueError(
            f"quantization={quantization!r} runs on the CPU only (its kernels are CPU kernels); got device {device!r}."
        )
    if dtype != "bfloat16":
        raise ValueError(
            f"quantization={quantization!r} computes in bfloat16 (PyTorch's weight-only kernels are 15-70x slower "
            f"with {dtype} activations); use dtype='auto' or 'bfloat16'."
        )
    if importlib.util.find_spec("torchao") is None:
        raise QuantizationUnavailableError(quantization)


@functools.cache
def _int8_linear_class() -> Any:
    """The int8 linear module class (defined on first use, so that importing this module needs no torch)."""
    import torch

    class Int8WeightOnlyLinear(torch.nn.Module):
        """A linear layer with int8 weights (per-row scales) computed by ``aten._weight_int8pack_mm``."""

        def __init__(self, qdata: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
            super().__init__()
            self.out_features, self.in_features = qdata.shape
            self.register_buffer("qdata", qdata.contiguous())
            self.register_buffer("scale", scale.reshape(-1).contiguous())
            self.bias = None if bias is None else torch.nn.Parameter(bias.detach(), requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.reshape(-1, self.in_features).contiguous()
            y = torch.ops.aten._weight_int8pack_mm(flat, self.qdata, self.scale.to(x.dtype))
            y = y.reshape(*x.shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"

    return Int8WeightOnlyLinear


def _to_int8(linear: Any, cls: Any) -> Any:
    from torchao.quantization import Int8Tensor
    from torchao.quantization.granularity import PerRow

    weight = linear.weight.detach()
    quantized = Int8Tensor.from_hp(weight, granularity=PerRow())
    return cls(quantized.qdata, quantized.scale.to(weight.dtype), linear.bias)


def _replace(model: Any, name: str, module: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def quantize_model(model: Any, quantization: str, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Quantize ``model``'s linear layers in place (weight-only) for CPU decoding.

    Args:
        model: A causal LM in bfloat16 on the CPU, in eval mode.
        quantization: ``"int8"`` or ``"int4"`` (see the module docstring for what each does).
        log: Called with a one-line summary.

    Returns:
        ``{"quantization", "int8_layers", "int4_layers", "dense_layers", "weight_bytes_before",
        "weight_bytes_after"}``: ``dense_layers`` names linear layers left unquantized (none for the registry
        models).

    Raises:
        ValueError: An unknown quantization, or a model not in bfloat16.
        QuantizationUnavailableError: torchao is not installed.
    """
    import torch

    check_quantization(quantization, dtype=str(model.dtype).removeprefix("torch."))
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    before = sum(m.weight.numel() * m.weight.element_size() for _, m in linears)
    output = model.get_output_embeddings()
    int8_cls = _int8_linear_class()
    int8_names: list[str] = []
    int4_names: list[str] = []
    dense: list[str] = []
    with torch.no_grad():
        for name, linear in linears:
            use_int4 = quantization == "int4" and linear is not output
            if use_int4 and linear.in_features % INT4_GROUP_SIZE == 0:
                from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
                from torchao.quantization import quantize_

                quantize_(linear, PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, set_inductor_config=False))
                int4_names.append(name)
            elif use_int4:
                dense.append(name)
            else:
                _replace(model, name, _to_int8(linear, int8_cls))
                int8_names.append(name)
    after = 0
    for name, _ in linears:
        module = model.get_submodule(name)
        if isinstance(module, int8_cls):
            after += module.qdata.numel() + module.scale.numel() * module.scale.element_size()
        else:
            weight = module.weight
            parts = [getattr(weight, attr, None) for attr in ("qdata", "scale_and_zero")]
            tensors = [p for p in parts if p is not None] or [weight]
            after += sum(t.numel() * t.element_size() for t in tensors)
    summary = {
        "quantization": quantization,
        "int8_layers": len(int8_names),
        "int4_layers": len(int4_names),
        "dense_layers": dense,
        "weight_bytes_before": before,
        "weight_bytes_after": after,
    }
    if log is not None:
        log(
            f"{quantization}: {len(int4_names)} int4 + {len(int8_names)} int8 linear layers"
            f"{f', {len(dense)} left dense' if dense else ''}; linear weights {before / 2**20:.0f} MiB -> "
            f"{after / 2**20:.0f} MiB"
        )
    return summary
