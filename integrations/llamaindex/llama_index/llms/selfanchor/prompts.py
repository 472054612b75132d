"""Query-engine prompts whose template variables are anchored (retrieved context, the query) or escaped.

LlamaIndex fills a prompt template with retrieved node text, which is untrusted: a passage containing ``</anchor>``
must not move the anchors. :func:`anchored_prompt` returns a copy of a template whose variables are rewritten when
the prompt is formatted: the chosen ones become escaped anchors, every other one is escaped. Because this happens at
format time, it also holds when a response synthesizer repacks or splits the context into several LLM calls (an
anchor is never cut in two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from copy import deepcopy
from functools import partial
from typing import Any

from llama_index.core.prompts import BasePromptTemplate, SelectorPromptTemplate
from llama_index.core.prompts.default_prompt_selectors import (
    DEFAULT_REFINE_PROMPT_SEL,
    DEFAULT_TEXT_QA_PROMPT_SEL,
)

from selfanchor_chains.prompting.markup import DEFAULT_MARKUP, AnchorMarkup, anchor, escape_anchor_markup

__all__ = [
    "ANCHORED_REFINE_PROMPT",
    "ANCHORED_TEXT_QA_PROMPT",
    "anchored_prompt",
    "anchored_query_engine",
]


def _rewrite(
    name: str,
    wrap: Callable[[str, AnchorMarkup], str],
    markup: AnchorMarkup,
    inner: Callable[..., Any] | None,
    **kwargs: Any,
) -> str:
    # A module-level function under functools.partial, not a closure: LlamaIndex deep-copies templates on
    # partial_format, and the mapping must survive that copy unchanged.
    if inner is not None:
        value = inner(**kwargs)
    elif name in kwargs:
        value = kwargs[name]
    else:
        raise KeyError(name)
    return wrap(str(value), markup)


def anchored_prompt(
    prompt: BasePromptTemplate,
    anchor_vars: Iterable[str] = ("context_str", "query_str"),
    *,
    escape_others: bool = True,
    markup: AnchorMarkup = DEFAULT_MARKUP,
) -> BasePromptTemplate:
    """A copy of ``prompt`` whose variables are anchored / escaped when it is formatted.

    Args:
        prompt: A ``PromptTemplate``, ``ChatPromptTemplate`` or ``SelectorPromptTemplate`` (its default template and
            every conditional template are rewritten).
        anchor_vars: Variables whose values become one escaped anchor each (``anchor(value)``); empty values stay
            empty.
        escape_others: Escape the values of all other variables, so markup in them is plain text.
        markup: The anchor tags (those of the LLM).

    Returns:
        The rewritten copy; ``prompt`` is unchanged. Function mappings already on the template run first.
    """
    wanted = set(anchor_vars)
    if isinstance(prompt, SelectorPromptTemplate):
        default = anchored_prompt(prompt.default_template, wanted, escape_others=escape_others, markup=markup)
        conditionals = [
            (condition, anchored_prompt(p, wanted, escape_others=escape_others, markup=markup))
            for condition, p in (prompt.conditionals or [])
        ]
        return SelectorPromptTemplate(default_template=default, conditionals=conditionals or None)
    copy = deepcopy(prompt)
    existing = dict(copy.function_mappings or {})
    mappings: dict[str, Any] = dict(existing)
    for name in copy.template_vars:
        if name in wanted:
            wrap = anchor
        elif escape_others:
            wrap = escape_anchor_markup
        else:
            continue
        mappings[name] = partial(_rewrite, name, wrap, markup, existing.get(name))
    copy.function_mappings = mappings
    return copy


ANCHORED_TEXT_QA_PROMPT = anchored_prompt(DEFAULT_TEXT_QA_PROMPT_SEL)
"""LlamaIndex's default QA prompt with the retrieved context and the query anchored."""

ANCHORED_REFINE_PROMPT = anchored_prompt(DEFAULT_REFINE_PROMPT_SEL, ("context_msg", "query_str"))
"""LlamaIndex's default refine prompt with the new context and the query anchored (the previous answer escaped)."""


def anchored_query_engine(index: Any, llm: Any, **kwargs: Any) -> Any:
    """``index.as_query_engine(llm=llm, ...)`` with the anchored QA and refine prompts.

    Args:
        index: A LlamaIndex index (e.g. ``VectorStoreIndex``).
        llm: The LLM, normally a :class:`~llama_index.llms.selfanchor.SelfAnchorLLM`.
        **kwargs: Passed to ``as_query_engine`` (``similarity_top_k``, ``streaming``, ``response_mode``, ...);
            ``text_qa_template`` / ``refine_template`` given here replace the anchored defaults.
    """
    kwargs.setdefault("text_qa_template", ANCHORED_TEXT_QA_PROMPT)
    kwargs.setdefault("refine_template", ANCHORED_REFINE_PROMPT)
    return index.as_query_engine(llm=llm, **kwargs)
