"""The benchmarks' answer formats and the answer-format hint each prompt ends with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Options = Sequence[str] | Mapping[str, str] | None

_BENCHES = ("gsm8k", "aqua", "math500", "strategyqa", "bbh", "t4d", "conflictqa")

# Answer format of each BBH task, read off the gold `target` values of the data.
BBH_TASK_FORMATS: dict[str, str] = {
    "boolean_expressions": "true_false",
    "causal_judgement": "Yes_No",
    "date_understanding": "option",
    "disambiguation_qa": "option",
    "dyck_languages": "dyck",
    "formal_fallacies": "valid_invalid",
    "geometric_shapes": "option",
    "hyperbaton": "option",
    "logical_deduction_five_objects": "option",
    "logical_deduction_seven_objects": "option",
    "logical_deduction_three_objects": "option",
    "movie_recommendation": "option",
    "multistep_arithmetic_two": "integer",
    "navigate": "Yes_No",
    "object_counting": "integer",
    "penguins_in_a_table": "option",
    "reasoning_about_colored_objects": "option",
    "ruin_names": "option",
    "salient_translation_error_detection": "option",
    "snarks": "option",
    "sports_understanding": "yes_no",
    "temporal_sequences": "option",
    "tracking_shuffled_objects_five_objects": "option",
    "tracking_shuffled_objects_seven_objects": "option",
    "tracking_shuffled_objects_three_objects": "option",
    "web_of_lies": "Yes_No",
    "word_sorting": "word_sorting",
}

_BBH_FORMAT_HINTS = {
    "option": "Give the final answer as the option letter in parentheses, e.g. (A).",
    "true_false": "Give the final answer as True or False.",
    "Yes_No": "Give the final answer as Yes or No.",
    "yes_no": "Give the final answer as yes or no.",
    "valid_invalid": "Give the final answer as valid or invalid.",
    "integer": "Give the final answer as a single integer.",
    "dyck": "Give the final answer as the sequence of closing brackets, separated by spaces.",
    "word_sorting": "Give the final answer as the sorted words, separated by spaces.",
}

ANSWER_HINTS: dict[str, str] = {
    "gsm8k": "Give the final answer as a single number.",
    "aqua": "Give the final answer as the option letter (A, B, C, D or E).",
    "math500": "Give the final answer as a simplified LaTeX expression.",
    "strategyqa": "Give the final answer as yes or no.",
    "bbh": "Give the final answer in the exact format the question asks for.",
    "t4d": "Give the final answer as the option letter (A, B, C or D).",
    "conflictqa": "Give the final answer as a short name or phrase, nothing else.",
    **{f"bbh:{task}": _BBH_FORMAT_HINTS[fmt] for task, fmt in BBH_TASK_FORMATS.items()},
}


def _split_spec(bench: str, task: str | None) -> tuple[str, str | None]:
    """Accept ``"bbh:task"`` as well as ``("bbh", task)``, and reject unknown benchmarks."""
    name = bench.strip().lower()
    if ":" in name:
        name, _, spec_task = name.partition(":")
        task = task or spec_task
    if name not in _BENCHES:
        raise ValueError(f"unknown benchmark {bench!r}; expected one of {', '.join(_BENCHES)}")
    return name, task


def answer_hint(bench: str, task: str | None = None) -> str:
    """The answer-format sentence to append to a prompt.

    Args:
        bench: Benchmark name, or ``"bbh:<task>"``.
        task: BBH task name (ignored for the other benchmarks).

    Returns:
        A one-sentence instruction such as ``"Give the final answer as a single number."``; BBH tasks get
        their own (option letter, True/False, the sorted words, ...), unknown BBH tasks the generic one.
    """
    name, task = _split_spec(bench, task)
    if name == "bbh" and task:
        return ANSWER_HINTS.get(f"bbh:{task}", ANSWER_HINTS["bbh"])
    return ANSWER_HINTS[name]


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def _bbh_format(task: str | None) -> str | None:
    return BBH_TASK_FORMATS.get(task) if task else None
