"""The steering study's options on the reasoning chains (tiny random model): they reach the engine, validate
early, show in fingerprints only when set, and every step reports what steering changed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from selfanchor_chains.answers.formats import BBH_TASK_FORMATS


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

    # the options' values before the study leave the fingerprint as it was before they existed (pinned: the
    # study's and older runs' results folders hold these), whatever the chain's defaults are now
    pre_study = SelfAnchorChain(llm=llm, **STUDY_OPTION_DEFAULTS)
    base = method_fingerprint(pre_study, llm, "self-anchor", "gsm8k")
    assert base == "2e9c34abda6f7439"  # sa-default's fingerprint in results/study/logs/*/run.json
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
    plain = SelfAnchorChain(llm=llm, bench="gsm8k", worked_example=False)._messages(request, reminder=False)[0]
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


_GOLD_FOR_FORMAT = {
    "option": "(C)",
    "integer": "28",
    "yes_no": "no",
    "Yes_No": "No",
    "true_false": "False",
    "valid_invalid": "valid",
    "dyck": "} ) ]",
    "word_sorting": "apple mango pear",
}


@pytest.mark.parametrize("task", sorted(BBH_TASK_FORMATS))
def test_every_bbh_task_gets_an_example_that_answers_in_its_format(task: str) -> None:
    from selfanchor_chains.answers.formats import BBH_TASK_FORMATS
    from selfanchor_chains.answers.grading import extract_answer, is_correct
    from selfanchor_chains.prompting.templates import worked_example

    example = worked_example("bbh", task)
    assert example is not None and worked_example(f"bbh:{task}") == example
    gold = _GOLD_FOR_FORMAT[BBH_TASK_FORMATS[task]]
    for trace in (example.plan_reason, example.cot):
        # the grader reads the example's answer line as the right answer of this task's format
        assert is_correct("bbh", extract_answer("bbh", trace, task=task), gold, task=task)


@pytest.mark.parametrize(("bench", "gold"), [("gsm8k", "28"), ("strategyqa", "no"), ("aqua", "C"), ("t4d", "C")])
def test_each_benchmark_example_answers_in_its_format(bench: str, gold: str) -> None:
    from selfanchor_chains.answers.grading import extract_answer, is_correct
    from selfanchor_chains.prompting.templates import worked_example

    example = worked_example(bench)
    assert example is not None
    assert is_correct(bench, extract_answer(bench, example.cot), gold)
    assert worked_example("bbh") is None  # BBH without a task: no example rather than one in the wrong format


def test_bbh_requests_see_their_own_task_example(llm: Any) -> None:
    from selfanchor_chains.prompting.templates import WORKED_EXAMPLES
    from selfanchor_chains.reasoning.chains import CoTChain, ReasoningInput

    chain = CoTChain(llm=llm, bench="bbh", worked_example=True)
    boolean = chain._messages(ReasoningInput(question="True and False is", task="boolean_expressions"), False)[0]
    assert WORKED_EXAMPLES["true_false"].cot in boolean["content"]
    untasked = chain._messages(ReasoningInput(question="True and False is"), False)[0]
    assert "Example:" not in untasked["content"]
