"""LangGraph: a tool node feeds a Self-Anchor reasoning node; tool results arrive as (escaped) anchors.

    python cookbook/langgraph_agent.py           # Qwen2.5-Coder-0.5B-Instruct
    python cookbook/langgraph_agent.py --fast    # SmolLM2-135M, tiny budget

A fuller example with LangChain @tools lives in integrations/langgraph/agent.py.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from selfanchor_chains import SelfAnchorChain, SteeredHFLLM
from selfanchor_chains.reasoning.langgraph import build_reasoning_graph

TIMETABLE = {"express": "The express train leaves at 9:40 and takes 55 minutes.", "local": "The local takes 80 min."}


def timetable(question: str) -> list[str]:
    """A tool: any callable (or LangChain tool) from the question to text or Documents."""
    return [line for name, line in TIMETABLE.items() if name in question.lower()] or list(TIMETABLE.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="SmolLM2-135M and a tiny token budget")
    parser.add_argument("--model", default=None, help="registry name or local model folder")
    args = parser.parse_args(argv)
    model = args.model or ("smollm2-135m" if args.fast else "qwen2.5-coder-0.5b")

    llm = SteeredHFLLM.from_model_id(model, dtype="float32" if args.fast else "auto")
    chain = SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=40 if args.fast else 256)
    graph = build_reasoning_graph(chain, {"timetable": timetable})  # START → tools → reason → END

    question = "I take the express train. At what time do I arrive? Answer as hh:mm."
    state = graph.invoke({"question": question})
    print("tool results:", [doc.page_content for doc in state["context"]])
    print("anchored in the first step:", state["reasoning"]["steps"][0]["anchors"])
    print("answer:", repr(state["answer"]), "(expected 10:35)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
