"""Direct-answer RAG with the recipes the NQ-Swap study measured (``results/rag-real/README.md``).

``rag_answer_chain(retriever, llm)`` retrieves passages, keeps all of them or only the retriever's first, anchors
that first one or none, and answers in a few words (or one sentence) with the same prompt the evaluation used
(:mod:`selfanchor_chains.prompting.rag_prompts`), decoded with ω on the anchored recipes. Each recipe is the
product form of one of the evaluated methods:

==========================  ==========================================  ===============================
recipe                      passages in the prompt                      evaluated as
==========================  ==========================================  ===============================
``plain``                   all, none anchored                          ``rag-plain``
``top1-only``               the retriever's first alone                 ``rag-top1-only``
``anchored-top1``           all, the retriever's first anchored         ``rag-anchored-top1@ω``
``anchored-top1-only``      the retriever's first alone, anchored       ``rag-anchored-top1-only@ω``
==========================  ==========================================  ===============================

The default is the one the study's rule 3 chose (:data:`DEFAULT_RAG_RECIPE`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough

from ..answers.locate import short_answer
from ..langchain.llm import SteeredHFLLM
from ..prompting.control_tokens import special_token_strings
from ..prompting.rag_prompts import ANSWER_INSTRUCTIONS, ANSWER_TOKENS, passages_prompt

__all__ = ["DEFAULT_RAG_OMEGA", "DEFAULT_RAG_RECIPE", "RAG_RECIPES", "rag_answer_chain"]

RAG_RECIPES: dict[str, tuple[bool, bool]] = {
    # recipe: (keep only the retriever's first passage, anchor the retriever's first passage)
    "plain": (False, False),
    "top1-only": (True, False),
    "anchored-top1": (False, True),
    "anchored-top1-only": (True, True),
}
"""The recipes, by name: which passages the prompt holds and whether the first one is anchored."""

DEFAULT_RAG_RECIPE = "anchored-top1-only"
"""The recipe :func:`rag_answer_chain` uses unless told, chosen by the NQ-Swap study's rule 3 (written before its
1.5B run was complete; ``results/rag-real/README.md``): of the two anchored winners, both worse than plain RAG on
neither model, the one within the cost target — the retriever's first passage alone, anchored (0.32× and 0.30×
plain RAG's time at 0.5B and 1.5B). It beats plain RAG on conflicting passages (0.5B +11.0 points, p = 0.001; 1.5B
+6.0, p = 0.08) but not significantly the same passage unanchored (``top1-only``: +1.3 and +3.7 points, p ≥ 0.1)."""

DEFAULT_RAG_OMEGA = 2.0
"""ω of the anchored recipes: both anchored winners of the NQ-Swap study were chosen at ω = 2 on its train split."""


def _question(inputs: str | dict[str, Any]) -> str:
    question = inputs.get("question") if isinstance(inputs, dict) else inputs
    if not isinstance(question, str):
        raise TypeError(f"rag_answer_chain takes a question string or {{'question': str}}, got {inputs!r:.80}")
    if not question.strip():
        raise ValueError("the question is empty")
    return question


def _texts(docs: Sequence[Any]) -> list[str]:
    texts = []
    for doc in docs:
        if isinstance(doc, Document):
            texts.append(doc.page_content)
        elif isinstance(doc, str):
            texts.append(doc)
        else:
            raise TypeError(f"the retriever returned {type(doc).__name__}, expected Documents or strings")
    return texts


def rag_answer_chain(
    retriever: Any,
    llm: SteeredHFLLM,
    *,
    recipe: str = DEFAULT_RAG_RECIPE,
    omega: float = DEFAULT_RAG_OMEGA,
    answer_style: Literal["short", "sentence"] = "short",
    max_new_tokens: int | None = None,
) -> Runnable[Any, dict[str, Any]]:
    """Retrieve, then answer from the passages with one of :data:`RAG_RECIPES`.

    Input: a question string or ``{"question": ...}``. Output: ``{"answer", "text", "context", "omega"}`` —
    the extracted answer (the whole reply for sentence answers), the model's reply, the Documents the prompt held
    and the ω it was decoded with. ``invoke``, ``batch`` (decoded together, continuous batching) and the async
    forms work as on any runnable.

    Args:
        retriever: Any LangChain retriever / runnable from a question string to Documents (or strings), best first.
        llm: A :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM` (or :class:`SteeredLlamaCpp`).
        recipe: One of :data:`RAG_RECIPES`; default :data:`DEFAULT_RAG_RECIPE`.
        omega: Steering strength of the anchored recipes (≥ 1; the unanchored recipes decode at ω = 1).
        answer_style: ``"short"`` (a name or a few words) or ``"sentence"`` (one sentence).
        max_new_tokens: Token budget; default the budget the study used (24 short, 64 sentence).

    Raises:
        ValueError: An unknown recipe or answer style, ω < 1, a budget < 1; at run time an empty question or no
            passages retrieved.
        TypeError: ``llm`` is not a steered LLM; at run time an input that is neither a string nor a dict with a
            ``question`` string.

    Example:
        .. code-block:: python

            chain = rag_answer_chain(build_retriever(passages, k=4), SteeredHFLLM.from_model_id("qwen2.5-coder-0.5b"))
            chain.invoke("Who wrote the song?")["answer"]
    """
    if recipe not in RAG_RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RAG_RECIPES)}")
    if answer_style not in ANSWER_INSTRUCTIONS:
        raise ValueError(f"answer_style must be one of {', '.join(ANSWER_INSTRUCTIONS)}, got {answer_style!r}")
    if isinstance(omega, bool) or not isinstance(omega, int | float) or not (math.isfinite(omega) and omega >= 1.0):
        raise ValueError(f"omega must be a finite number >= 1, got {omega!r}")
    if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or max_new_tokens < 1):
        raise ValueError(f"max_new_tokens must be a positive number of tokens, got {max_new_tokens!r}")
    if not isinstance(llm, SteeredHFLLM):
        raise TypeError(f"rag_answer_chain needs a steered LLM (SteeredHFLLM), got {type(llm).__name__}")
    keep_first, anchor_first = RAG_RECIPES[recipe]
    # Plain decoding where nothing is anchored: ω would change nothing but the cost of a second branch.
    steer = float(omega) if anchor_first else 1.0
    decode = llm.bind(omega=steer, max_new_tokens=max_new_tokens or ANSWER_TOKENS[answer_style])
    specials = special_token_strings(llm.tokenizer)  # retrieved text and questions never carry control tokens

    def kept(inputs: dict[str, Any]) -> list[Any]:
        docs = list(inputs["context"] or [])
        if not docs:
            raise ValueError(f"the retriever returned no passages for {inputs['question']!r:.80}")
        return docs[:1] if keep_first else docs

    def prompt(inputs: dict[str, Any]) -> str:
        texts = _texts(inputs["context"])
        flags = [anchor_first and index == 0 for index in range(len(texts))]
        return passages_prompt(inputs["question"], texts, flags, answer_style=answer_style, specials=specials)

    def output(inputs: dict[str, Any]) -> dict[str, Any]:
        text = inputs["text"]
        answer = short_answer(text) if answer_style == "short" else " ".join(text.split())
        return {"answer": answer, "text": text, "context": inputs["context"], "omega": steer}

    # question -> {question, retrieved} -> keep the recipe's passages -> prompt -> steered reply -> answer
    return (
        RunnableLambda(_question)
        | RunnableParallel(question=RunnablePassthrough(), context=retriever)
        | RunnablePassthrough.assign(context=RunnableLambda(kept))
        | RunnablePassthrough.assign(text=RunnableLambda(prompt) | decode)
        | RunnableLambda(output)
    ).with_config(run_name="rag_answer_chain")
