"""The direct-answer RAG prompt: numbered passages (any of them anchored) and a question, answered in a few words or
in one sentence.

One text for the evaluation (:mod:`selfanchor_chains.eval.conflict_methods`, the NQ-Swap and knowledge-conflict
studies) and the shipped chain (:func:`selfanchor_chains.reasoning.rag_answer.rag_answer_chain`), so what was
measured is what a user runs. Passages and questions are untrusted: control-token strings are removed and markup is
escaped, never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from .markup import anchor, escape_anchor_markup

__all__ = [
    "ANSWER_INSTRUCTIONS",
    "ANSWER_TOKENS",
    "PASSAGES_TEMPLATE",
    "format_numbered_passages",
    "passages_prompt",
    "untrusted_text",
]

ANSWER_INSTRUCTIONS: dict[str, str] = {
    "short": "Reply with the answer only (a name or a few words), no explanation and no code.",
    "sentence": "Reply in one short sentence, no code.",
}
"""The answer-style instruction (``{short}`` in the templates), by answer style."""

ANSWER_TOKENS: dict[str, int] = {"short": 24, "sentence": 64}
"""The token budget the studies decoded each answer style with (a name or a short phrase; one sentence)."""

PASSAGES_TEMPLATE = (
    "Answer the question using the passages below. {short}\n\nPassages:\n{passages}\n\nQuestion: {question}"
)
"""Plain RAG's prompt (the anchored methods use it too: they differ only in the anchor markup around passages)."""


def untrusted_text(text: str, specials: Sequence[str]) -> str:
    """Untrusted text with the tokenizer's control-token strings removed and whitespace collapsed."""
    for token in specials:
        text = text.replace(token, " ")
    return " ".join(text.split())


def format_numbered_passages(passages: Sequence[str], anchored: Sequence[bool], specials: Sequence[str]) -> str:
    """``[1] …`` one passage per line; the flagged ones wrapped as anchors, the rest escaped as plain text.

    Raises:
        ValueError: ``anchored`` does not have one flag per passage.
    """
    if len(anchored) != len(passages):
        raise ValueError(f"one anchored flag per passage: {len(passages)} passages, {len(anchored)} flags")
    lines = []
    for number, (text, steer) in enumerate(zip(passages, anchored, strict=True), start=1):
        clean = untrusted_text(text, specials)
        lines.append(f"[{number}] {anchor(clean) if steer else escape_anchor_markup(clean)}")
    return "\n".join(lines)


def passages_prompt(
    question: str,
    passages: Sequence[str],
    anchored: Sequence[bool],
    *,
    answer_style: Literal["short", "sentence"] = "short",
    specials: Sequence[str] = (),
) -> str:
    """Plain RAG's prompt over ``passages`` with the flagged ones anchored.

    Raises:
        ValueError: An empty question, no passages, an unknown answer style or a flag count that does not match.
    """
    if answer_style not in ANSWER_INSTRUCTIONS:
        raise ValueError(f"answer_style must be one of {', '.join(ANSWER_INSTRUCTIONS)}, got {answer_style!r}")
    clean_question = untrusted_text(question, specials)
    if not clean_question:
        raise ValueError("the question is empty")
    if not passages:
        raise ValueError("no passages to answer from")
    return PASSAGES_TEMPLATE.format(
        short=ANSWER_INSTRUCTIONS[answer_style],
        passages=format_numbered_passages(passages, anchored, specials),
        question=escape_anchor_markup(clean_question),
    )
