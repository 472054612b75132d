"""What the reasoning chains take and give: the input, each step, and the output."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.documents import Document
from pydantic import BaseModel, Field


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
