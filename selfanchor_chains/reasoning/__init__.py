"""Reasoning: step tracking, ω schedules, the chains (Self-Anchor and its baselines) and the method registry."""

from .chains import CoTChain, PlanAndSolveChain, ReasoningChain, SelfAnchorChain, SPAChain
from .schema import ReasoningInput, ReasoningOutput, ReasoningStep

__all__ = [
    "CoTChain",
    "PlanAndSolveChain",
    "ReasoningChain",
    "ReasoningInput",
    "ReasoningOutput",
    "ReasoningStep",
    "SPAChain",
    "SelfAnchorChain",
]
