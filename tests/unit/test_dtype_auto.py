"""``dtype="auto"``: bfloat16 where the CPU computes it natively, float32 otherwise, resolved before anything loads.

The CPU's capabilities are mocked both ways, so these tests pass on any machine (with or without AVX-512 BF16).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from selfanchor_chains import models

NO_BF16_FLAGS = {"fpu", "sse2", "avx", "avx2", "fma", "f16c"}  # an AVX2-only x86 CPU


@pytest.fixture
def no_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: set())
    monkeypatch.setattr(models.dtypes, "proc_cpu_flags", lambda: set(NO_BF16_FLAGS))


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: {"avx512_bf16"})
    monkeypatch.setattr(models.dtypes, "proc_cpu_flags", lambda: {*NO_BF16_FLAGS, "avx512f", "avx512_bf16"})


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(tmp_path / "cache"))
    return tmp_path / "cache"


# --------------------------------------------------------------------------- resolution


@pytest.mark.usefixtures("no_bf16_cpu")
def test_auto_is_float32_without_native_bf16() -> None:
    choice = models.resolve_dtype("auto")
    assert choice.dtype == "float32" and choice.requested == "auto"
    assert "no native bfloat16" in choice.reason
    assert models.resolve_dtype() == choice  # "auto" is the default
    assert models.cpu_native_bf16_features() == []


@pytest.mark.usefixtures("bf16_cpu")
def test_auto_is_bfloat16_with_native_bf16() -> None:
    choice = models.resolve_dtype("auto")
    assert choice.dtype == "bfloat16"
    assert "avx512_bf16" in choice.reason
    assert choice.as_dict() == {"dtype": "bfloat16", "requested": "auto", "reason": choice.reason}


def test_either_probe_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: set())
    monkeypatch.setattr(models.dtypes, "proc_cpu_flags", lambda: {"avx2", "amx_bf16", "amx_tile"})
    assert models.resolve_dtype().dtype == "bfloat16" and models.cpu_native_bf16_features() == ["amx_bf16"]
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: {"amx_tile"})
    monkeypatch.setattr(models.dtypes, "proc_cpu_flags", lambda: set())  # e.g. no /proc (macOS)
    assert models.resolve_dtype().dtype == "bfloat16"


def test_torch_probe_is_what_pytorch_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert models.dtypes._torch_cpu_bf16_features() == set()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert models.dtypes._torch_cpu_bf16_features() == {"avx512_bf16"}


def test_proc_cpuinfo_flags_are_parsed(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n"
    )
    assert models.dtypes.proc_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert models.dtypes.proc_cpu_flags(tmp_path / "absent") == set()


@pytest.mark.usefixtures("no_bf16_cpu")
@pytest.mark.parametrize(
    ("asked", "expected"),
    [("bfloat16", "bfloat16"), ("bf16", "bfloat16"), ("float16", "float16"), ("fp32", "float32")],
)
def test_an_explicit_dtype_is_kept(asked: str, expected: str) -> None:
    choice = models.resolve_dtype(asked)
    assert (choice.dtype, choice.requested, choice.reason) == (expected, asked, f"{expected} as requested")


def test_explicit_torch_dtype_and_bad_names() -> None:
    import torch

    assert models.resolve_dtype(torch.float32).dtype == "float32"
    with pytest.raises(ValueError, match="Unsupported dtype 'int8'"):
        models.resolve_dtype("int8")


def test_auto_on_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.resolve_dtype("auto", "cuda:1").dtype == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert models.resolve_dtype("auto", torch.device("cuda")).dtype == "float16"
    assert models.resolve_dtype("auto", "mps").dtype == "float16"
    assert models.resolve_dtype("float32", "cuda").dtype == "float32"


# --------------------------------------------------------------------------- where "auto" is resolved


@pytest.mark.usefixtures("no_bf16_cpu")
def test_cache_folder_is_named_after_the_concrete_dtype(cache: Path) -> None:
    assert models.converted_model_dir("m", "auto").name == "m-float32"
    assert models.converted_model_dir("m").name == "m-float32"
    assert models.converted_model_dir("m", "bfloat16").name == "m-bfloat16"  # existing caches keep their names


@pytest.mark.usefixtures("bf16_cpu")
def test_cache_folder_with_native_bf16(cache: Path) -> None:
    assert models.converted_model_dir("m").name == "m-bfloat16"


class _Loaded(Exception):
    pass


@pytest.mark.usefixtures("no_bf16_cpu")
def test_load_model_and_tokenizer_resolves_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_load_any(name: str, dtype_name: str, trust_remote_code: bool, **placement: Any) -> Any:
        seen.append(dtype_name)
        raise _Loaded

    monkeypatch.setattr(models.loading, "_load_any", fake_load_any)
    with pytest.raises(_Loaded):
        models.load_model_and_tokenizer("m")
    with pytest.raises(_Loaded):
        models.load_model_and_tokenizer("m", dtype="bf16")
    assert seen == ["float32", "bfloat16"]


@pytest.mark.usefixtures("no_bf16_cpu")
@pytest.mark.parametrize(
    "cls_path", ["selfanchor_chains.langchain.llm.SteeredHFLLM", "selfanchor_chains.langchain.chat_model.ChatSteeredHF"]
)
def test_from_model_id_names_the_model_by_the_concrete_dtype(
    cls_path: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Any, byte_tokenizer: Any
) -> None:
    import importlib

    module_name, cls_name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)
    calls: list[dict[str, Any]] = []

    def fake(name: str, **kwargs: Any) -> Any:
        calls.append({"name": name, **kwargs})
        return tiny_model, byte_tokenizer

    monkeypatch.setattr(models.loading, "load_model_and_tokenizer", fake)
    llm = cls.from_model_id("tiny")
    assert calls[0]["dtype"] == "float32"
    assert llm.model_id == "tiny@float32"  # the LLM cache key and eval folders see the concrete dtype


# --------------------------------------------------------------------------- command line


def test_cli_dtype_defaults_to_auto() -> None:
    from selfanchor_chains.cli import build_parser

    parser = build_parser()
    for argv in (["generate", "x"], ["solve", "x"], ["bench", "speed"], ["bench", "throughput"], ["eval", "gsm8k"]):
        assert parser.parse_args(argv).dtype == "auto", argv
    assert parser.parse_args(["bench", "speed", "--dtype", "float32"]).dtype == "float32"


@pytest.mark.usefixtures("no_bf16_cpu")
def test_cli_load_says_what_it_chose_and_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from selfanchor_chains.cli import commands

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(models.loading, "load_model_and_tokenizer", lambda name, **kw: calls.append(kw) or ("m", "t"))
    model, tokenizer, info = commands.load_model(argparse.Namespace(model="tiny", dtype="auto"))
    assert (model, tokenizer) == ("m", "t") and calls[0]["dtype"] == "float32"
    assert info["dtype"] == "float32" and info["dtype_choice"]["requested"] == "auto"
    err = capsys.readouterr().err
    assert "[loaded tiny (float32; auto: the CPU has no native bfloat16 unit" in err


def _gsm8k_data(root: Path) -> Path:
    (root / "gsm8k").mkdir(parents=True)
    rows = [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(2)]
    (root / "gsm8k" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _eval_args(*extra: str) -> argparse.Namespace:
    from selfanchor_chains.cli import build_parser

    return build_parser().parse_args(["eval", "gsm8k", "--methods", "cot", "--model", "m", "--no-progress", *extra])


def _answering_factory(method: str, bench: str) -> Any:
    class Chain:
        def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {
                    "answer": "1",
                    "text": "Final Answer: 1",
                    "steps": [],
                    "finish_reason": "final_answer",
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3},
                    "retried": False,
                }
                for _ in inputs
            ]

    return Chain()


def test_eval_resolves_auto_before_naming_folders_and_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from selfanchor_chains.langchain import llm as llms

    data = _gsm8k_data(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    calls: list[dict[str, Any]] = []

    def fake_from_model_id(name: str, **kwargs: Any) -> Any:
        calls.append({"name": name, **kwargs})
        return _answering_factory

    monkeypatch.setattr(llms.SteeredHFLLM, "from_model_id", fake_from_model_id)
    monkeypatch.setattr(models.dtypes, "proc_cpu_flags", lambda: set(NO_BF16_FLAGS))
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: set())
    args = _eval_args("--data-dir", str(data), "--limit", "1")
    assert args.func(args) == 0
    assert calls[-1]["dtype"] == "float32"
    assert "[dtype float32: auto: the CPU has no native bfloat16 unit" in capsys.readouterr().err
    info = json.loads((tmp_path / "evals" / "m-float32" / "run.json").read_text())
    assert (info["model"], info["dtype"], info["dtype_choice"]["requested"]) == ("m@float32", "float32", "auto")
    assert "no native bfloat16" in info["dtype_choice"]["reason"]

    # On a CPU with native bfloat16, "auto" is bfloat16: a float32 folder is refused before any model loads, and
    # the default folder is evals/m-bfloat16, the name the existing bfloat16 evaluations have.
    monkeypatch.setattr(models.dtypes, "_torch_cpu_bf16_features", lambda: {"avx512_bf16"})
    args = _eval_args("--data-dir", str(data), "--limit", "1", "--out", "evals/m-float32")
    assert args.func(args) == 2 and len(calls) == 1
    assert "model='m@float32', this run has model='m@bfloat16'" in capsys.readouterr().err
    args = _eval_args("--data-dir", str(data), "--limit", "1")
    assert args.func(args) == 0
    info = json.loads((tmp_path / "evals" / "m-bfloat16" / "run.json").read_text())
    assert (info["model"], info["dtype"]) == ("m@bfloat16", "bfloat16") and calls[-1]["dtype"] == "bfloat16"


def test_llamaindex_from_model_id_passes_auto_and_quantization(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Any, byte_tokenizer: Any
) -> None:
    selfanchor_llm = pytest.importorskip("llama_index.llms.selfanchor")
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    calls: list[dict[str, Any]] = []

    def fake(name: str, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id=f"{name}@x")

    monkeypatch.setattr(SteeredHFLLM, "from_model_id", fake)
    selfanchor_llm.SelfAnchorLLM.from_model_id("tiny")
    selfanchor_llm.SelfAnchorLLM.from_model_id("tiny", quantization="int4")
    assert [(c["dtype"], c["quantization"]) for c in calls] == [("auto", "auto"), ("auto", "int4")]
