"""The LangGraph node hands the graph's config (tags, callbacks, configurable) to the chain it runs."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

pytest.importorskip("langgraph")


class _RecordingChain:
    """Stands in for a reasoning chain: records the config it is invoked with."""

    def __init__(self) -> None:
        self.configs: list[Any] = []

    def invoke(self, input: dict[str, Any], config: Any = None) -> dict[str, Any]:
        self.configs.append(config)
        return {"answer": f"re: {input['question']}", "context": input["context"]}


def test_the_graph_config_reaches_the_chain() -> None:
    from selfanchor_chains.reasoning.langgraph import SelfAnchorNode, build_reasoning_graph

    chain = _RecordingChain()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LangGraph warns (and withholds the config) when it cannot read the type
        graph = build_reasoning_graph(chain, tools={"echo": lambda q: f"tool saw {q}"})  # type: ignore[arg-type]
    state = graph.invoke({"question": "2 + 2?"}, {"tags": ["from-the-graph"], "configurable": {"k": 1}})

    assert state["answer"] == "re: 2 + 2?"
    assert [d.page_content for d in state["reasoning"]["context"]] == ["tool saw 2 + 2?"]
    (config,) = chain.configs
    assert config is not None and "from-the-graph" in config["tags"] and config["configurable"]["k"] == 1

    # Other state keys, the same way.
    node = SelfAnchorNode(chain, question_key="q", answer_key=None)  # type: ignore[arg-type]
    assert node({"q": "why?"}) == {"reasoning": {"answer": "re: why?", "context": None}}
    with pytest.raises(KeyError, match="'q'"):
        node({"question": "why?"})
