"""The steering study's options on the reasoning chains (tiny random model): they reach the engine, validate
early, show in fingerprints only when set, and every step reports what steering changed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError


@pytest.fixture(scope="module")
def llm(long_context_model: Any, byte_tokenizer: Any) -> Any:
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    return SteeredHFLLM(model=long_context_model, tokenizer=byte_tokenizer, model_id="tiny")


OPTIONS: list[dict[str, Any]] = [
    {"step_strength": {"final": 0.0}},
    {"reasoning_scope": "plan"},
    {"midline_labels": True},
    {"anchor_masking": "replace"},
    {"steer_below": 0.5},
    {"worked_example": True},
]


def test_options_enter_the_fingerprint_only_when_set(llm: Any) -> None:
    from selfanchor_chains.eval.method_specs import STUDY_OPTION_DEFAULTS
    from selfanchor_chains.eval.runner import method_fingerprint
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    base = method_fingerprint(SelfAnchorChain(llm=llm), llm, "self-anchor", "gsm8k")
    explicit_defaults = SelfAnchorChain(llm=llm, **STUDY_OPTION_DEFAULTS)
    assert method_fingerprint(explicit_defaults, llm, "self-anchor", "gsm8k") == base
    prints = {method_fingerprint(SelfAnchorChain(llm=llm, **o), llm, "self-anchor", "gsm8k") for o in OPTIONS}
    assert len(prints) == len(OPTIONS) and base not in prints


@pytest.mark.parametrize(
    "bad",
    [
        {"step_strength": {"answer": 1.0}},
        {"step_strength": {"plan": -0.5}},
        {"reasoning_scope": "everything"},
        {"anchor_masking": "blank"},
        {"steer_below": 0.0},
        {"steer_below": 1.2},
    ],
)
def test_bad_options_are_refused_when_the_chain_is_built(llm: Any, bad: dict[str, Any]) -> None:
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    with pytest.raises(ValidationError):
        SelfAnchorChain(llm=llm, **bad)


def test_worked_example_is_shown_to_each_method_in_its_own_format(llm: Any) -> None:
    from selfanchor_chains.prompting.templates import WORKED_EXAMPLES
    from selfanchor_chains.reasoning.chains import CoTChain, ReasoningInput, SelfAnchorChain

    request = ReasoningInput(question="What is 2 + 3?")
    example = WORKED_EXAMPLES["number"]
    sa = SelfAnchorChain(llm=llm, bench="gsm8k", worked_example=True)._messages(request, reminder=False)[0]
    cot = CoTChain(llm=llm, bench="gsm8k", worked_example=True)._messages(request, reminder=False)[0]
    assert example.question in sa["content"] and example.plan_reason in sa["content"]
    assert example.question in cot["content"] and example.cot in cot["content"]
    assert "Plan 1:" not in cot["content"].split("Example:")[1]
    plain = SelfAnchorChain(llm=llm, bench="gsm8k")._messages(request, reminder=False)[0]
    assert "Example:" not in plain["content"]
    yes_no = SelfAnchorChain(llm=llm, bench="strategyqa", worked_example=True)._messages(request, reminder=False)[0]
    assert WORKED_EXAMPLES["yes_no"].question in yes_no["content"]


@pytest.mark.parametrize("masking", ["attention", "replace"])
def test_steps_carry_the_steering_diagnostics(llm: Any, masking: str) -> None:
    from selfanchor_chains.reasoning.chains import SelfAnchorChain
    from selfanchor_chains.reasoning.schedules import ConstantOmega

    steered = SelfAnchorChain(llm=llm, schedule=ConstantOmega(3.0), max_new_tokens=12, anchor_masking=masking)
    out = steered.invoke("Tom has 3 apples and buys 5 more. How many apples does he have?")
    steps = out["steps"]
    assert steps and all({"changed", "kl"} <= set(s) for s in steps)
    assert sum(s["kl"] for s in steps) > 0 and all(0 <= s["changed"] <= s["tokens"] for s in steps)
    unsteered = SelfAnchorChain(llm=llm, schedule=ConstantOmega(1.0), max_new_tokens=12)
    out = unsteered.invoke("Tom has 3 apples and buys 5 more. How many apples does he have?")
    assert all(s["changed"] == 0 and s["kl"] == 0.0 for s in out["steps"])


def test_a_gate_of_one_steers_every_token_and_a_tiny_gate_none(llm: Any) -> None:
    from selfanchor_chains.reasoning.chains import SelfAnchorChain
    from selfanchor_chains.reasoning.schedules import ConstantOmega

    question = "Tom has 3 apples and buys 5 more. How many apples does he have?"
    always = SelfAnchorChain(llm=llm, schedule=ConstantOmega(3.0), max_new_tokens=10, steer_below=1.0)
    never = SelfAnchorChain(llm=llm, schedule=ConstantOmega(3.0), max_new_tokens=10, steer_below=1e-9)
    default = SelfAnchorChain(llm=llm, schedule=ConstantOmega(3.0), max_new_tokens=10)
    plain = SelfAnchorChain(llm=llm, schedule=ConstantOmega(1.0), max_new_tokens=10)
    assert always.invoke(question)["text"] == default.invoke(question)["text"]
    assert never.invoke(question)["text"] == plain.invoke(question)["text"]
    assert all(s["kl"] == 0.0 for s in never.invoke(question)["steps"])
