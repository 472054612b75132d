"""Prompt templates: Self-Anchor's plan/reason format and the CoT and Plan-and-Solve+ baselines.

All methods share one instruction core (reason in plain words, never write code, end with ``Final Answer:``)
and the same per-benchmark answer hint, so an evaluation compares the reasoning and not the wording of the format.
The Coder models this project runs on like to answer with a Python program and then invent its output; the
"never write code" sentence and an assistant prefix that starts the reasoning in prose keep them from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.documents import Document

from .anchors import anchor, format_docs_anchored

__all__ = [
    "COT",
    "PLAN_AND_SOLVE",
    "PLAN_AND_SOLVE_STRATEGYQA",
    "SELF_ANCHOR",
    "ReasoningTemplate",
    "StepMarkers",
    "render_user_message",
]

_CORE = (
    "Reason in plain words and arithmetic. Never write code or programs. "
    "When you are done, write one last line of the form 'Final Answer: <the answer only>'."
)


@dataclass(frozen=True)
class StepMarkers:
    """The line labels that open each kind of step (matched case-insensitively, with or without a number)."""

    plan: str = "Plan"
    reasoning: str = "Reasoning"
    final: str = "Final Answer"


@dataclass(frozen=True)
class ReasoningTemplate:
    """A method's prompt: system message, user message, and the start of the assistant's reply.

    ``system`` may use ``{hint}`` (the benchmark's answer format); ``user`` must use ``{question_block}``.
    """

    name: str
    system: str
    user: str = "{question_block}"
    assistant_prefix: str = ""
    markers: StepMarkers = StepMarkers()

    def system_message(self, hint: str) -> str:
        return self.system.format(hint=hint).strip()


SELF_ANCHOR = ReasoningTemplate(
    name="self-anchor",
    system=(
        "Solve the problem by alternating short plans and reasoning. " + _CORE + "\n"
        "Use exactly this format:\n"
        "Plan 1: <one sentence: the first sub-goal>\n"
        "Reasoning 1: <carry out that sub-goal and work out its result>\n"
        "Plan 2: <one sentence: the next sub-goal>\n"
        "Reasoning 2: <carry out that sub-goal and work out its result>\n"
        "(as many plan and reasoning steps as needed)\n"
        "Final Answer: <the answer only>\n"
        "{hint}"
    ),
    assistant_prefix="Plan 1:",
)

COT = ReasoningTemplate(
    name="cot",
    system="Solve the problem. " + _CORE + "\n{hint}",
    assistant_prefix="Let's think step by step.\n",
)

# Plan-and-Solve+ (Wang et al. 2023), prompt 301, as the start of the answer.
PLAN_AND_SOLVE = ReasoningTemplate(
    name="ps",
    system="Solve the problem. " + _CORE + "\n{hint}",
    assistant_prefix=(
        "Let's first understand the problem, extract relevant variables and their corresponding numerals, and "
        "devise a plan. Then, let's carry out the plan, calculate intermediate variables (pay attention to correct "
        "numeral calculation and commonsense), solve the problem step by step, and show the answer.\n"
    ),
)

# Plan-and-Solve's commonsense variant (prompt 306), used for StrategyQA.
PLAN_AND_SOLVE_STRATEGYQA = ReasoningTemplate(
    name="ps",
    system="Solve the problem. " + _CORE + "\n{hint}",
    assistant_prefix=(
        "Let's first prepare relevant information and make a plan. Then, let's answer the question step by step "
        "(pay attention to commonsense and logical coherence).\n"
    ),
)


def render_user_message(
    template: ReasoningTemplate,
    question: str,
    context: Sequence[Document | str] | str | None = None,
    *,
    anchor_question: bool = True,
    anchor_context: bool = True,
) -> str:
    """The user message with the question (and retrieved context) as escaped anchors.

    Retrieved passages are untrusted: they are escaped, so markup inside them cannot move the anchors.
    """
    blocks = []
    if context:
        docs = [context] if isinstance(context, str) else list(context)
        if anchor_context:
            blocks.append("Context:\n" + format_docs_anchored(docs))
        else:
            from .anchors import escape_anchor_markup

            texts = [d.page_content if isinstance(d, Document) else str(d) for d in docs]
            blocks.append("Context:\n" + "\n\n".join(escape_anchor_markup(t) for t in texts))
        blocks.append("Question: " + (anchor(question) if anchor_question else _escaped(question)))
    else:
        blocks.append(anchor(question) if anchor_question else _escaped(question))
    return template.user.format(question_block="\n\n".join(blocks))


def _escaped(text: str) -> str:
    from .anchors import escape_anchor_markup

    return escape_anchor_markup(text)
