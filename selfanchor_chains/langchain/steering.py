"""The steering-parameters core shared by the LangChain LLM, the chat model and the LlamaIndex LLM: loading the
weights by name, decode settings from the sampling fields, and call-time overrides folded into a validated copy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from pydantic import BaseModel
from typing_extensions import Self

from ..engine.requests import SamplingConfig
from ..prompting.markup import AnchorMarkup
from .runtime import DecodeSettings, SteeredRuntime

Model = TypeVar("Model", bound=BaseModel)


def load_steered_weights(
    model_id: str,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    device: str | None = None,
    quantization: str | None = "auto",
    **placement: Any,
) -> tuple[Any, Any, str]:
    """Load a registry model (``smollm2-135m``, ``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``), a local directory
    of safetensors weights, or a hub id, for a steered model class's ``from_model_id``.

    Args:
        model_id: Registry name, local path or hub id.
        dtype: Weights dtype. ``"auto"`` (default) is bfloat16 where the hardware computes it natively (CPUs with
            AVX-512 BF16 or AMX, GPUs) and float32 on other CPUs (see :func:`~selfanchor_chains.models.resolve_dtype`);
            or ``"bfloat16"``, ``"float16"``, ``"float32"`` (exact, and batch-invariant on the CPU).
        trust_remote_code: Passed to ``from_pretrained``; keep ``False`` unless you trust the repository.
        device: Where to put the weights (default the CPU); decoding runs there.
        quantization: ``"auto"`` (default: the measured CPU default where it is faster, on a CPU that computes
            bfloat16 natively with ``dtype="auto"``; dense weights elsewhere, see
            :func:`~selfanchor_chains.models.quantization.resolve_weights`), ``None`` (dense), ``"int8"`` or
            ``"int4"``: weight-only quantized linear layers for CPU decoding through torchao (``pip install
            'selfanchor-chains[quant]'``); computes in bfloat16.
        **placement: A model larger than one device: ``device_map`` (``"auto"`` or module → device),
            ``max_memory``, ``offload_folder`` (see :func:`~selfanchor_chains.models.load_model_and_tokenizer`).

    Returns:
        ``(model, tokenizer, model_tag)``; the tag is ``"{model_id}@{dtype}"`` with the concrete dtype ``"auto"``
        chose, plus ``"+{quantization}"`` when quantized (caches and evaluation folders key on it).
    """
    from ..models.loading import load_model_and_tokenizer, model_tag
    from ..models.quantization import resolve_weights

    if placement.get("device_map") is not None and quantization == "auto":
        quantization = None  # Accelerate places the layers; the quantized kernels are for one CPU
    dtype_choice, quantized = resolve_weights(dtype, quantization, device)
    model, tokenizer = load_model_and_tokenizer(
        model_id,
        dtype=dtype_choice.dtype,
        trust_remote_code=trust_remote_code,
        device=device,
        quantization=quantized.quantization,
        **placement,
    )
    return model, tokenizer, model_tag(model_id, dtype_choice.dtype, quantized.quantization)


def decode_settings(
    *,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int | None,
    stop: Any = (),
) -> DecodeSettings:
    """The engine's settings for one call: temperature 0 is greedy decoding."""
    sampling = SamplingConfig(
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else 1.0,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
    )
    return DecodeSettings(max_tokens, sampling, tuple(stop or ()))


def with_overrides(model: Model, overrides: dict[str, Any]) -> Model:
    """A copy of a pydantic model with some fields changed, each validated as the field would be."""
    if not overrides:
        return model
    copy = model.model_copy(update=overrides)
    for name, value in overrides.items():  # model_copy skips validation; run the field validators
        type(model).__pydantic_validator__.validate_assignment(copy, name, value)
    return copy


class SteeredModelMixin:
    """What the steered LangChain classes share beyond their fields: ``from_model_id``, the runtime, the anchor
    markup and the identifying parameters of the steering (a mixin of the pydantic models; it adds no fields)."""

    if TYPE_CHECKING:  # the fields of the classes it is mixed into
        model_id: str
        omega: float
        temperature: float
        top_p: float
        top_k: int
        seed: int | None
        anchor_open_tag: str
        anchor_close_tag: str
        _runtime: SteeredRuntime | None

    budget_field: ClassVar[str] = "max_new_tokens"
    """The field holding the decoding budget (the chat model follows LangChain's chat naming, ``max_tokens``)."""

    def _settings(self, stop: list[str] | None) -> DecodeSettings:
        """The decode settings of a call: the sampling fields, the budget, and ``stop`` (else the model's own)."""
        return decode_settings(
            max_tokens=getattr(self, self.budget_field),
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed,
            stop=stop if stop is not None else getattr(self, "stop", None),
        )

    @classmethod
    def from_model_id(
        cls,
        model_id: str,
        *,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        device: str | None = None,
        quantization: str | None = "auto",
        device_map: str | dict[str, Any] | None = None,
        max_memory: dict[Any, Any] | None = None,
        offload_folder: str | None = None,
        **kwargs: Any,
    ) -> Self:
        """Load weights by name and wrap them (see :func:`load_steered_weights` for the arguments).

        Args:
            model_id: Registry name (``smollm2-135m``, ``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``), local path
                or hub id.
            dtype: ``"auto"`` (default: bfloat16 where the hardware computes it natively, else float32),
                ``"bfloat16"``, ``"float16"`` or ``"float32"``.
            trust_remote_code: Passed to ``from_pretrained``; keep ``False`` unless you trust the repository.
            device: Where to put the weights (default the CPU).
            quantization: ``"auto"`` (default: the measured CPU default where it is faster, else dense weights),
                ``None``, ``"int8"`` or ``"int4"`` (weight-only, torchao; computes in bfloat16).
            device_map: A model larger than one device, placed by Accelerate: ``"auto"`` or module → device
                (``"cuda:0"``, ``"cpu"``, ``"disk"``); both branches still run in one forward.
            max_memory: With ``device_map``: the most memory per device.
            offload_folder: With ``device_map``: where layers mapped to ``"disk"`` are kept.
            **kwargs: Fields of the class (``omega``, the token budget, ...).

        Returns:
            The model, with ``model_id`` naming the weights and the concrete dtype (``"qwen2.5-coder-0.5b@bfloat16"``).
        """
        placement = {"device_map": device_map, "max_memory": max_memory, "offload_folder": offload_folder}
        model, tokenizer, tag = load_steered_weights(
            model_id,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            device=device,
            quantization=quantization,
            **{k: v for k, v in placement.items() if v is not None},
        )
        return cast(Self, cast(Any, cls)(model=model, tokenizer=tokenizer, model_id=tag, **kwargs))

    @property
    def runtime(self) -> SteeredRuntime:
        """The model's runtime (engine plus the lock that serialises decoding)."""
        assert self._runtime is not None
        return self._runtime

    @property
    def markup(self) -> AnchorMarkup:
        """The anchor tags read in prompts and message contents."""
        return AnchorMarkup(self.anchor_open_tag, self.anchor_close_tag)

    llm_type_name: ClassVar[str]
    """LangChain's ``_llm_type`` of the class."""
    own_identifying_fields: ClassVar[tuple[str, ...]] = ()
    """The class's own fields that join the steering's in its identifying parameters."""

    @property
    def _llm_type(self) -> str:
        return self.llm_type_name

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """The LLM cache key's parameters: the steering's and the class's own (:attr:`own_identifying_fields`)."""
        return {**self._steering_params(), **{name: getattr(self, name) for name in self.own_identifying_fields}}

    def _steering_params(self) -> dict[str, Any]:
        """The identifying parameters every steered class has (the LLM cache key includes them)."""
        return {
            "model_id": self.model_id,
            "omega": self.omega,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "anchor_tags": (self.anchor_open_tag, self.anchor_close_tag),
        }
