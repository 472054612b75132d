"""A LangGraph node that runs one Self-Anchor solve as a reasoning step inside a graph.

LangGraph is imported lazily (only the test and the example graph need it); the node itself is a plain callable
on the graph state, so it also works with any other state machine.
"""

# No ``from __future__ import annotations`` here: LangGraph reads the node's ``config`` annotation at run time and
# passes the graph's config only to a parameter typed as the RunnableConfig object, not as a string.
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig

from .chains import ReasoningChain

__all__ = ["SelfAnchorNode", "build_reasoning_graph"]


@dataclass
class SelfAnchorNode:
    """Graph node: reads the question (and context / tool results) from the state, reasons, writes the result.

    Tool results and retrieved passages placed in ``context_key`` are anchored like retrieved Documents (and escaped:
    they are untrusted text).

    Args:
        chain: A :class:`~selfanchor_chains.reasoning.chains.SelfAnchorChain` (or any reasoning chain of this package).
        question_key: State key of the question.
        context_key: State key of the context: a list of Documents / strings, a string, or absent.
        output_key: State key the chain's output dict is written to.
        answer_key: State key the extracted answer is written to (``None`` to skip).
    """

    chain: ReasoningChain
    question_key: str = field(default="question", kw_only=True)
    context_key: str = field(default="context", kw_only=True)
    output_key: str = field(default="reasoning", kw_only=True)
    answer_key: str | None = field(default="answer", kw_only=True)

    def _input(self, state: Mapping[str, Any]) -> dict[str, Any]:
        if self.question_key not in state:
            raise KeyError(f"state has no {self.question_key!r} for the Self-Anchor node (keys: {sorted(state)})")
        context = state.get(self.context_key)
        if isinstance(context, Sequence) and not isinstance(context, str):
            context = [c if isinstance(c, Document) else Document(page_content=str(c)) for c in context]
        return {"question": state[self.question_key], "context": context or None}

    def _update(self, output: dict[str, Any]) -> dict[str, Any]:
        update: dict[str, Any] = {self.output_key: output}
        if self.answer_key is not None:
            update[self.answer_key] = output["answer"]
        return update

    def __call__(self, state: Mapping[str, Any], config: RunnableConfig | None = None) -> dict[str, Any]:
        return self._update(self.chain.invoke(self._input(state), config))

    async def ainvoke(self, state: Mapping[str, Any], config: RunnableConfig | None = None) -> dict[str, Any]:
        return self._update(await self.chain.ainvoke(self._input(state), config))


def build_reasoning_graph(chain: ReasoningChain, tools: Mapping[str, Any] | None = None) -> Any:
    """A small prebuilt agent graph: run tools on the question, then reason with Self-Anchor over their results.

    ``tools`` maps a name to a callable (or LangChain tool/runnable) taking the question and returning text or
    Documents; every result becomes an anchored context passage of the reasoning step.

    Returns:
        A compiled LangGraph ``StateGraph`` with state keys ``question``, ``context``, ``answer``, ``reasoning``.
    """
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        question: str
        context: list[Document]
        answer: str | None
        reasoning: dict[str, Any]

    def gather(state: State) -> dict[str, Any]:
        passages: list[Document] = []
        for name, tool in (tools or {}).items():
            result = tool.invoke(state["question"]) if hasattr(tool, "invoke") else tool(state["question"])
            items = result if isinstance(result, list) else [result]
            passages.extend(
                r if isinstance(r, Document) else Document(page_content=str(r), metadata={"tool": name}) for r in items
            )
        return {"context": passages}

    graph = StateGraph(State)
    graph.add_node("tools", gather)
    graph.add_node("reason", SelfAnchorNode(chain))  # type: ignore[type-var]
    graph.add_edge(START, "tools")
    graph.add_edge("tools", "reason")
    graph.add_edge("reason", END)
    return graph.compile()
