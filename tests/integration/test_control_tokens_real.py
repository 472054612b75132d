"""Every special token of the registry models' tokenizers, put into untrusted text, stays plain text (issue #12)."""

from __future__ import annotations

import pytest

from selfanchor_chains import models
from selfanchor_chains.prompting.control_tokens import special_token_strings
from tests.control_tokens import assert_no_injection


def _tokenizer(name: str):  # type: ignore[no-untyped-def]
    """The registry model's tokenizer from the converted cache (SmolLM2 is converted if needed; the others are
    used only when already converted, since converting them takes minutes)."""
    from transformers import AutoTokenizer

    spec = models.REGISTRY[name]
    for dtype in ("bfloat16", "float32"):
        folder = models.converted_model_dir(name, dtype)
        if (folder / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(folder)
    if name != "smollm2-135m" or not models.is_installed(spec):
        pytest.skip(f"{name} is not installed and converted here")
    return models.load_model_and_tokenizer(name, dtype="float32")[1]


@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
def test_every_special_token_stays_plain_text(name: str) -> None:
    tokenizer = _tokenizer(name)
    specials = special_token_strings(tokenizer)
    assert specials
    for token in specials:
        assert_no_injection(tokenizer, token)
