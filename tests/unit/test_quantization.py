"""Weight-only int8 / int4 quantization: input checks before any loading, and the engine on a quantized tiny model."""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import pytest
import torch

from selfanchor_chains import models
from selfanchor_chains.engine import RowRequest, SteeredDecoder
from selfanchor_chains.models import quantization

needs_torchao = pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="pip install torchao")


class _Loaded(Exception):
    pass


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _Loaded("weights were loaded before the input was checked")

    monkeypatch.setattr(models.loading, "_load_any", refuse)


# --------------------------------------------------------------------------- checks before loading


@pytest.mark.usefixtures("no_loading")
def test_unknown_quantization_is_refused_before_loading() -> None:
    with pytest.raises(ValueError, match="Unknown quantization 'int3'; use one of int8, int4"):
        models.load_model_and_tokenizer("smollm2-135m", quantization="int3")


@pytest.mark.usefixtures("no_loading")
@pytest.mark.parametrize("cls_path", ["langchain.llm.SteeredHFLLM", "langchain.chat_model.ChatSteeredHF"])
def test_from_model_id_refuses_before_loading(cls_path: str) -> None:
    import importlib

    module, _, name = cls_path.rpartition(".")
    cls = getattr(importlib.import_module(f"selfanchor_chains.{module}"), name)
    with pytest.raises(ValueError, match="Unknown quantization 'int3'"):
        cls.from_model_id("smollm2-135m", quantization="int3")
    with pytest.raises(ValueError, match="computes in bfloat16"):
        cls.from_model_id("smollm2-135m", dtype="float32", quantization="int8")


@pytest.mark.usefixtures("no_loading")
def test_missing_torchao_is_a_typed_error_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(quantization.QuantizationUnavailableError, match="needs torchao") as info:
        models.load_model_and_tokenizer("smollm2-135m", quantization="int4")
    assert isinstance(info.value, ImportError) and "pip install --no-deps torchao" in str(info.value)


@pytest.mark.usefixtures("no_loading")
def test_quantization_is_cpu_only_and_bfloat16_only() -> None:
    with pytest.raises(ValueError, match="CPU only"):
        models.load_model_and_tokenizer("smollm2-135m", quantization="int8", device="cuda")
    for dtype in ("float32", "float16"):
        with pytest.raises(ValueError, match="computes in bfloat16"):
            models.load_model_and_tokenizer("smollm2-135m", dtype=dtype, quantization="int8")


def test_auto_with_quantization_is_bfloat16_on_any_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: set())
    monkeypatch.setattr(models.dtypes, "proc_cpu_flags", lambda: {"avx2"})
    assert models.resolve_dtype("auto").dtype == "float32"
    choice = models.resolve_dtype("auto", quantization="int8")
    assert choice.dtype == "bfloat16" and "bfloat16 activations" in choice.reason
    assert models.model_tag("m", "bfloat16", "int4") == "m@bfloat16+int4"
    assert models.model_tag("m", "float32") == "m@float32"


def test_cli_quantization_argument() -> None:
    from selfanchor_chains.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["bench", "speed"]).quantization == "auto"
    assert parser.parse_args(["eval", "gsm8k", "--quantization", "none"]).quantization == "none"
    assert parser.parse_args(["generate", "x", "--quantization", "int4"]).quantization == "int4"
    assert parser.parse_args(["eval", "gsm8k", "--quantization", "int8"]).quantization == "int8"
    with pytest.raises(SystemExit):
        parser.parse_args(["solve", "x", "--quantization", "int3"])
    variants = parser.parse_args(["bench", "speed", "--variants", "bfloat16,float32,int8,int4"]).variants
    assert variants == ["bfloat16", "float32", "int8", "int4"]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "speed", "--variants", "bfloat16,int3"])


# --------------------------------------------------------------------------- quantization="auto"


@pytest.fixture
def auto_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured CPU default set to int8, on a CPU with native bfloat16 and torchao importable."""
    monkeypatch.setattr(quantization, "CPU_AUTO_QUANTIZATION", "int8")
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: {"avx512_bf16"})
    monkeypatch.setattr(models.dtypes, "proc_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torchao" else real(name, *a))


def _resolved(*args: Any, **kwargs: Any) -> tuple[str, str | None, str]:
    dtype, quantized = models.resolve_weights(*args, **kwargs)
    return dtype.dtype, quantized.quantization, quantized.reason


@pytest.mark.usefixtures("auto_int8")
def test_auto_quantizes_only_where_the_measurement_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _resolved()[:2] == ("bfloat16", "int8")
    assert _resolved("auto", "auto")[2] == "auto: int8 weights (the CPU computes bfloat16 natively)"
    # A pinned dtype keeps dense weights (float32 stays exact; bfloat16 stays what it was).
    assert _resolved("float32")[:2] == ("float32", None) and "pinned to float32" in _resolved("float32")[2]
    assert _resolved("bfloat16")[:2] == ("bfloat16", None)
    # Not on a GPU: the kernels are CPU kernels.
    assert _resolved("auto", "auto", "cuda:0")[1] is None and "CPU kernels" in _resolved("auto", "auto", "cuda")[2]
    # Asked for explicitly: kept as asked, dense included.
    assert _resolved("auto", None)[:2] == ("bfloat16", None)
    assert _resolved("auto", "none")[:2] == ("bfloat16", None)
    assert _resolved("auto", "int4")[:2] == ("bfloat16", "int4")
    # Batch work keeps dense weights (the quantized kernels are built for one or two rows); asked for, it is kept.
    assert _resolved(batch=2)[1] == "int8"
    assert _resolved(batch=8)[1] is None and "at batch 8 dense bfloat16 decodes faster" in _resolved(batch=8)[2]
    assert _resolved("auto", "int8", batch=8)[1] == "int8"
    # Without torchao the default falls back to dense weights, and says how to install it.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    dtype, quantized, reason = _resolved()
    assert (dtype, quantized) == ("bfloat16", None) and "torchao is not installed" in reason


@pytest.mark.usefixtures("auto_int8")
def test_auto_keeps_dense_weights_without_native_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: set())
    monkeypatch.setattr(models.dtypes, "proc_cpu_flags", lambda: {"avx2"})
    dtype, quantized, reason = _resolved()
    assert (dtype, quantized) == ("float32", None) and "no native bfloat16" in reason


def test_auto_is_dense_while_no_quantization_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantization, "CPU_AUTO_QUANTIZATION", None)
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: {"avx512_bf16"})
    assert _resolved()[:2] == ("bfloat16", None)


def test_auto_is_resolved_before_it_is_checked() -> None:
    with pytest.raises(ValueError, match="resolved first"):
        quantization.check_quantization("auto", dtype="bfloat16")


@pytest.mark.usefixtures("auto_int8")
@pytest.mark.parametrize("cls_path", ["langchain.llm.SteeredHFLLM", "langchain.chat_model.ChatSteeredHF"])
def test_from_model_id_loads_and_names_the_auto_choice(
    cls_path: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Any, byte_tokenizer: Any
) -> None:
    import importlib

    module, _, name = cls_path.rpartition(".")
    cls = getattr(importlib.import_module(f"selfanchor_chains.{module}"), name)
    calls: list[dict[str, Any]] = []

    def fake(model_id: str, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return tiny_model, byte_tokenizer

    monkeypatch.setattr(models.loading, "load_model_and_tokenizer", fake)
    assert cls.from_model_id("tiny").model_id == "tiny@bfloat16+int8"
    assert cls.from_model_id("tiny", dtype="float32").model_id == "tiny@float32"
    assert cls.from_model_id("tiny", device_map="auto").model_id == "tiny@bfloat16"  # Accelerate places it
    assert [(c["dtype"], c["quantization"]) for c in calls] == [
        ("bfloat16", "int8"),
        ("float32", None),
        ("bfloat16", None),
    ]


# --------------------------------------------------------------------------- the quantized model


@pytest.fixture
def bf16_model(tiny_model: Any) -> Any:
    return copy.deepcopy(tiny_model).to(torch.bfloat16)


def _linears(model: Any) -> dict[str, Any]:
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


@needs_torchao
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantized_layers_approximate_the_dense_ones(kind: str, bf16_model: Any) -> None:
    dense = copy.deepcopy(bf16_model)
    n_linear = len(_linears(dense))
    summary = quantization.quantize_model(bf16_model, kind)
    if kind == "int8":
        assert (summary["int8_layers"], summary["int4_layers"]) == (n_linear, 0)
        assert not _linears(bf16_model)  # every linear layer was replaced by the int8 one
    else:  # the output head stays 8-bit
        assert (summary["int8_layers"], summary["int4_layers"]) == (1, n_linear - 1)
    assert summary["dense_layers"] == [] and summary["weight_bytes_after"] < summary["weight_bytes_before"] / 1.7
    ids = torch.randint(0, dense.config.vocab_size - 5, (2, 12))
    with torch.no_grad():
        expected = dense(input_ids=ids).logits.float()
        got = bf16_model(input_ids=ids).logits.float()
    error = (got - expected).norm() / expected.norm()
    assert error < (0.05 if kind == "int8" else 0.25), error
    assert error > 0  # the weights did change


@needs_torchao
def test_quantizing_a_float32_model_is_refused(tiny_model: Any) -> None:
    with pytest.raises(ValueError, match="computes in bfloat16"):
        quantization.quantize_model(copy.deepcopy(tiny_model), "int8")


def _reference(model: Any, seq: list[int], span: tuple[int, int], omega: float) -> torch.Tensor:
    ids = torch.tensor([seq])
    hidden = torch.ones_like(ids)
    hidden[0, span[0] : span[1]] = 0
    with torch.no_grad():
        l_o = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float()
        l_m = model(input_ids=ids, attention_mask=hidden).logits[0, -1].float()
    return omega * l_o + (1 - omega) * l_m


@needs_torchao
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_steered_decoding_of_a_quantized_model(kind: str, bf16_model: Any, byte_tokenizer: Any) -> None:
    quantization.quantize_model(bf16_model, kind)
    prompt = byte_tokenizer("Question: what is two plus three? Answer:")["input_ids"]
    span, omega = (10, 33), 2.0
    decoder = SteeredDecoder(bf16_model, byte_tokenizer, eos_token_ids=[])

    # ω = 1 is plain greedy decoding of the same quantized model.
    plain = decoder.generate([RowRequest(prompt, [span], 1.0)], max_new_tokens=12)[0].token_ids
    ids = torch.tensor([prompt])
    out = bf16_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        min_new_tokens=12,
        do_sample=False,
        pad_token_id=byte_tokenizer.pad_token_id,
    )
    assert plain == out[0, ids.shape[1] :].tolist()

    # ω = 2: each step's logits are ω·l_orig + (1−ω)·l_masked of cache-free forwards (bfloat16: up to rounding).
    session = decoder.start([RowRequest(prompt, [span], omega)], max_new_tokens=6)
    for _ in session:
        seq = list(prompt) + session.generated_ids(0)[:-1]
        expected = _reference(bf16_model, seq, span, omega)
        wrong = _reference(bf16_model, seq, span, 1.0)
        got = session.last_logits[0]
        assert (got - expected).abs().max() < 0.1 * (wrong - expected).abs().max()


@needs_torchao  # the eval checks for torchao before it loads anything
def test_eval_names_quantized_runs_apart(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from selfanchor_chains.cli import build_parser
    from selfanchor_chains.langchain import llm as llms

    (tmp_path / "data" / "gsm8k").mkdir(parents=True)
    record = {"id": "q0", "question": "1 + 1?", "answer": "2"}
    (tmp_path / "data" / "gsm8k" / "dev.jsonl").write_text(json.dumps(record) + "\n")
    monkeypatch.chdir(tmp_path)
    calls: list[dict[str, Any]] = []

    def chain_factory(method: str, bench: str) -> Any:
        class Chain:
            def batch(self, inputs: list[Any]) -> list[dict[str, Any]]:
                usage = {"prompt_tokens": 5, "completion_tokens": 3}
                return [{"answer": "2", "text": "2", "steps": [], "finish_reason": "stop", "usage": usage}] * len(
                    inputs
                )

        return Chain()

    def fake_from_model_id(name: str, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return chain_factory

    monkeypatch.setattr(llms.SteeredHFLLM, "from_model_id", fake_from_model_id)
    argv = ["eval", "gsm8k", "--methods", "cot", "--model", "m", "--no-progress", "--data-dir", str(tmp_path / "data")]
    args = build_parser().parse_args([*argv, "--quantization", "int8"])
    assert args.func(args) == 0
    assert (calls[0]["dtype"], calls[0]["quantization"]) == ("bfloat16", "int8")
    info = json.loads((tmp_path / "evals" / "m-bfloat16-int8" / "run.json").read_text())
    assert (info["model"], info["dtype"], info["dtype_choice"]["quantization"]) == (
        "m@bfloat16+int8",
        "bfloat16",
        "int8",
    )
    args = build_parser().parse_args([*argv, "--quantization", "int4", "--dtype", "float32"])
    assert args.func(args) == 2 and len(calls) == 1  # refused before loading
    assert "computes in bfloat16" in capsys.readouterr().err
