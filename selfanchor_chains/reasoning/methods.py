"""The method registry: every reasoning method's name and how its chain is built, for the CLI, the evaluation
runner, its report and the RAG harness alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

METHODS = ("self-anchor", "cot", "ps", "spa", "structure-only", "constant-omega")
"""Method names, in the order reports list them."""

PROMPTED_METHODS = ("cot", "ps")
"""The methods that only prompt (no anchors, no steering): any LangChain LLM or chat model can run them."""


def _builders() -> dict[str, Callable[..., Any]]:
    from .chains import CoTChain, PlanAndSolveChain, SelfAnchorChain, SPAChain, constant_omega, structure_only

    return {
        "self-anchor": lambda llm, **kwargs: SelfAnchorChain(llm=llm, **kwargs),
        "cot": lambda llm, **kwargs: CoTChain(llm=llm, **kwargs),
        "ps": lambda llm, **kwargs: PlanAndSolveChain(llm=llm, **kwargs),
        "spa": lambda llm, **kwargs: SPAChain(llm=llm, **kwargs),
        "structure-only": structure_only,
        "constant-omega": constant_omega,
    }


def make_chain(method: str, llm: Any, **kwargs: Any) -> Any:
    """The reasoning runnable of a method.

    Args:
        method: One of :data:`METHODS`.
        llm: The :class:`~selfanchor_chains.SteeredHFLLM` it decodes with.
        **kwargs: Fields of the chain (``bench``, ``max_new_tokens``, ...).

    Raises:
        ValueError: An unknown method name.
    """
    builders = _builders()
    if method not in builders:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return builders[method](llm, **kwargs)
