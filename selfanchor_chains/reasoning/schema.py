"""What the reasoning chains take and give: the input, each step, and the output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.documents import Document
from pydantic import BaseModel, Field

from ..prompting.text_checks import check_encodable


class ReasoningInput(BaseModel):
    """Input of the reasoning chains (a bare string is taken as the question)."""

    question: str = Field(min_length=1)
    context: list[Document] | str | None = None
    """Retrieved passages; they are anchored (and escaped: retrieved text is untrusted)."""
    anchors: list[str] = Field(default_factory=list)
    """Extra substrings of the question or context to anchor."""
    task: str | None = None
    """Benchmark sub-task (BBH), for answer extraction."""
    options: dict[str, str] | list[str] | None = None
    """Answer options (AQuA, T4D), for mapping an answer given as an option's value to its letter."""


def check_encodable_input(fields: Mapping[str, Any]) -> None:
    """Check the texts of a chain input (a mapping with ``question``, ``context``, ``anchors``) before it is
    validated (pydantic refuses a lone surrogate without saying where) and before any forward, so that the error
    names the question, passage or anchor and the index in it, not a position in the rendered prompt.

    Raises:
        UnencodableTextError: A text holds a lone surrogate.
    """
    _check_text(fields.get("question"), "question")
    context = fields.get("context")
    if isinstance(context, str):
        _check_text(context, "context")
    elif isinstance(context, list):
        for k, doc in enumerate(context):
            _check_text(getattr(doc, "page_content", doc), f"context document {k}")
    for k, anchor in enumerate(fields.get("anchors") or ()):
        _check_text(anchor, f"anchor {k}")


def _check_text(value: Any, what: str) -> None:
    if isinstance(value, str):  # other types are left to the model's own validation
        check_encodable(value, what)


StepKind = Literal["plan", "reasoning", "final", "text"]


class ReasoningStep(BaseModel):
    """One completed step of a solve."""

    kind: StepKind
    index: int
    text: str
    omega: float
    confidence: float
    anchors: list[str]
    tokens: int
    changed: int = 0
    """Tokens of the step whose choice steering changed (steered argmax ≠ original argmax)."""
    kl: float = 0.0
    """Mean KL(steered ‖ original) over the step's tokens, in nats."""


class ReasoningOutput(BaseModel):
    answer: str | None
    text: str
    steps: list[ReasoningStep]
    finish_reason: str
    usage: dict[str, int]
    retried: bool = False
    tokens: list[dict[str, Any]] | None = None
    """With ``trace_tokens``: each generated token's text, ω, confidence, KL(steered ‖ original), whether steering
    changed it, and the original branch's choice (for :mod:`selfanchor_chains.eval.steering_view`)."""
