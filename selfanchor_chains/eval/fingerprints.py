"""The fingerprint that ties stored results to the configuration that made them (prompt template and steering
set-up of a method's chain); below the method specs and the conflict / code methods, which all use it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from ..reasoning.chains import ReasoningChain
from .prompted import _template

__all__ = ["STUDY_OPTION_DEFAULTS", "is_language_model", "method_fingerprint"]

STUDY_OPTION_DEFAULTS: dict[str, Any] = {
    "step_strength": {},
    "reasoning_scope": "question+plan",
    "midline_labels": False,
    "anchor_masking": "attention",
    "steer_below": None,
    "worked_example": False,
}


def is_language_model(source: Any) -> bool:
    """Whether ``source`` is a LangChain language model (else a chain factory)."""
    from langchain_core.language_models import BaseLanguageModel

    return isinstance(source, BaseLanguageModel)


def method_fingerprint(chain: Any, source: Any, method: str, bench: str) -> str | None:
    """A short hash of what decides a method's answers besides the model: prompt template and steering set-up.

    Known for the package's reasoning chains and for the prompted baselines on other LLMs; None for chains from a
    user's factory (their configuration is theirs to track).
    """
    payload: dict[str, Any]
    if isinstance(chain, ReasoningChain):
        payload = {
            "chain": type(chain).__name__,
            "template": dataclasses.asdict(chain._template_for()),
            "schedule": repr(chain.schedule),
            "omega": chain.omega,
            "anchors": [chain.anchor_question, chain.anchor_context, chain.anchor_plan_in_final],
            "limits": dataclasses.asdict(chain.limits),
            "format_retries": chain.format_retries,
        }
        # Options added by the steering study enter the hash only when set, so that the fingerprints of
        # configurations that existed before them stay the same.
        for name, default in STUDY_OPTION_DEFAULTS.items():
            value = getattr(chain, name)
            if value != default:
                payload[name] = value
    elif is_language_model(source):
        payload = {"prompted": method, "template": dataclasses.asdict(_template(method, bench))}
    else:
        return None
    blob = json.dumps(payload, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
