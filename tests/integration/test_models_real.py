"""Real SmolLM2-135M from its PyPI GGUF package: convert into a temp cache, generate, reload exactly."""

from __future__ import annotations

import time

import pytest

from selfanchor_chains import models

pytestmark = pytest.mark.slow

NAME = "smollm2-135m"
PROMPT = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):
    """First (converting) load of SmolLM2 in float32 into a private cache; yields (cache, model, tok, s)."""
    if not models.is_installed(models.REGISTRY[NAME]):
        pytest.skip(f"{NAME} weights are not installed: {models.REGISTRY[NAME].pip_command}")
    cache = tmp_path_factory.mktemp("selfanchor-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(models.CACHE_ENV_VAR, str(cache))
        started = time.perf_counter()
        model, tokenizer = models.load_model_and_tokenizer(NAME, dtype="float32")
        seconds = time.perf_counter() - started
        yield cache, model, tokenizer, seconds


def prompt_ids(tokenizer):
    return tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)


def test_first_load_converts_into_cache(converted) -> None:
    import torch

    cache, model, tokenizer, _ = converted
    target = cache / "models" / f"{NAME}-float32"
    assert (target / "model.safetensors").is_file()
    assert (target / "tokenizer.json").is_file()
    assert sorted(p.name for p in (cache / "models").iterdir()) == [target.name]
    assert not (cache / "gguf").exists(), "a single-file GGUF is read in place, not copied"
    assert model.dtype == torch.float32
    assert not model.training
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    assert tokenizer.chat_template, "the GGUF's chat template must survive conversion"


def test_greedy_generation(converted) -> None:
    import torch

    _, model, tokenizer, _ = converted
    inputs = prompt_ids(tokenizer)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    assert 0 < new_tokens.numel() <= 8
    assert tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


def test_cached_reload_is_identical_and_fast(converted, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cache, model, tokenizer, first_seconds = converted
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(cache))
    marker = cache / "models" / f"{NAME}-float32" / "selfanchor-model.json"
    written = marker.stat().st_mtime_ns

    started = time.perf_counter()
    again, again_tokenizer = models.load_model_and_tokenizer(NAME, dtype=torch.float32)
    cached_seconds = time.perf_counter() - started
    print(f"\n{NAME} float32: first load {first_seconds:.1f} s, cached load {cached_seconds:.1f} s")

    assert marker.stat().st_mtime_ns == written, "the cached copy must not be rebuilt"
    assert cached_seconds < first_seconds
    inputs = prompt_ids(tokenizer)
    assert torch.equal(prompt_ids(again_tokenizer)["input_ids"], inputs["input_ids"])
    with torch.no_grad():
        assert torch.equal(again(**inputs).logits, model(**inputs).logits)


def test_converted_copy_matches_gguf_exactly(converted) -> None:
    """The safetensors copy holds exactly the dequantized GGUF weights (float32: no rounding)."""
    import torch

    _, model, tokenizer, _ = converted
    direct, direct_tokenizer = models.loading._load_from_gguf(models.resolve_gguf(NAME), "float32")
    direct.eval()
    # A float32 model loads with row-friendly linear layers (models/cpu_linear.py): the same layout on both sides,
    # so any difference left is the weights'.
    models.cpu_linear.use_row_friendly_linears(direct)
    inputs = prompt_ids(tokenizer)
    assert torch.equal(prompt_ids(direct_tokenizer)["input_ids"], inputs["input_ids"])
    with torch.no_grad():
        assert torch.equal(direct(**inputs).logits, model(**inputs).logits)
