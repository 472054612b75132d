"""Answer extraction and scoring, checked against the real dev records' gold answers."""

from __future__ import annotations

import itertools

import pytest

from selfanchor_chains.answers import (
    ANSWER_HINTS,
    BBH_TASK_FORMATS,
    answer_hint,
    extract_answer,
    is_correct,
    math_equal,
    normalize_math,
    parse_options,
    score,
)
from selfanchor_chains.eval.datasets import BENCHMARKS, DataDirNotFoundError, Problem, load_problems

_CACHE: dict[str, list[Problem]] = {}


def _problems(bench: str) -> list[Problem]:
    if bench not in _CACHE:
        try:
            _CACHE[bench] = load_problems(bench)
        except DataDirNotFoundError as exc:  # a clone without the shared data folder
            pytest.skip(str(exc))
    return _CACHE[bench]


def _wrap_final(gold: str) -> str:
    return f"Let me reason step by step.\nFirst, 3 + 4 = 7, then 7 * 2 = 14.\nFinal Answer: {gold}"


def _wrap_boxed(gold: str) -> str:
    return f"We compute 12 + 30 = 42 and simplify.\nTherefore the result is $\\boxed{{{gold}}}$."


# ---------------------------------------------------------------------------------------------------------
# Every gold answer of every dev record scores correct against itself
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_gold_wrapped_as_final_answer_scores_correct(bench: str) -> None:
    failures = []
    for p in _problems(bench):
        answer, ok = score(bench, _wrap_final(p.answer), p.answer, p.task, options=p.options)
        if not ok:
            failures.append((p.id, p.answer, answer))
    assert not failures, failures[:10]


@pytest.mark.parametrize("bench", ["gsm8k", "math500", "aqua"])
def test_gold_wrapped_as_boxed_scores_correct(bench: str) -> None:
    failures = []
    for p in _problems(bench):
        answer, ok = score(bench, _wrap_boxed(p.answer), p.answer, p.task, options=p.options)
        if not ok:
            failures.append((p.id, p.answer, answer))
    assert not failures, failures[:10]


def test_every_bbh_task_is_covered_and_scores_its_gold() -> None:
    problems = _problems("bbh")
    tasks = {p.task for p in problems if p.task}
    assert all(p.task for p in problems)
    assert tasks == set(BBH_TASK_FORMATS)
    for task in sorted(tasks):
        items = [p for p in problems if p.task == task]
        assert items, task
        for p in items:
            assert is_correct("bbh", extract_answer("bbh", _wrap_final(p.answer), task=task), p.answer, task=task)
            # The format is inferred from the gold answer when the task is not given.
            assert is_correct("bbh", p.answer, p.answer), (task, p.answer)


def test_aqua_and_t4d_gold_given_as_option_value_maps_to_letter() -> None:
    for bench in ("aqua", "t4d"):
        checked = 0
        for p in _problems(bench):
            options = p.options
            assert options is not None
            value = options[p.answer]
            duplicated = sum(v.strip().lower() == value.strip().lower() for v in options.values()) > 1
            if duplicated:
                continue
            answer, ok = score(bench, _wrap_final(value), p.answer, options=options)
            assert ok, (p.id, value, answer)
            checked += 1
        assert checked > 0.9 * len(_problems(bench))


def test_bbh_option_value_maps_to_letter_with_parsed_options() -> None:
    p = next(p for p in _problems("bbh") if p.task == "date_understanding")
    options = parse_options(p.question)
    assert options == p.options
    value = options[p.answer.strip("()")]
    assert score("bbh", f"Final Answer: {value}", p.answer, p.task, options=options) == (p.answer, True)


def test_wrong_gold_of_another_record_does_not_score() -> None:
    """Each record's gold scored against the next different gold of the same bench/task is wrong."""
    for bench in BENCHMARKS:
        problems = _problems(bench)
        for p, q in itertools.pairwise(problems):
            if p.task != q.task or p.answer == q.answer:
                continue
            if bench == "math500" and math_equal(p.answer, q.answer):
                continue
            assert not score(bench, _wrap_final(p.answer), q.answer, q.task)[1], (bench, p.answer, q.answer)


# ---------------------------------------------------------------------------------------------------------
# Near misses
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bench", "text", "gold", "task"),
    [
        ("gsm8k", "Final Answer: 18", "19", None),
        ("gsm8k", "Final Answer: 1,800", "180", None),
        ("gsm8k", "Final Answer: 18.5", "18", None),
        ("gsm8k", "Final Answer: -18", "18", None),
        ("aqua", "Final Answer: (C)", "D", None),
        ("aqua", "Final Answer: B", "D", None),
        ("math500", "Final Answer: \\frac{1}{3}", "\\frac{1}{4}", None),
        ("math500", "Final Answer: x=3", "x=5", None),
        ("math500", "Final Answer: 0.333", "\\frac13", None),
        ("math500", "Final Answer: [-2,7)", "x \\in [-2,7]", None),
        ("math500", "Final Answer: 2517_8", "2516_8", None),
        ("math500", "Final Answer: \\text{(C)}", "\\text{(B)}", None),
        ("math500", "Final Answer: x^5 - x^4 + x^3 - x^2 + x + 1", "x^5 - x^4 + x^3 - x^2 + x - 1", None),
        ("math500", "Final Answer: seat", "\\text{east}", None),
        ("strategyqa", "Final Answer: no", "yes", None),
        ("strategyqa", "Final Answer: False", "yes", None),
        ("bbh", "Final Answer: (B)", "(A)", "hyperbaton"),
        ("bbh", "Final Answer: False", "True", "boolean_expressions"),
        ("bbh", "Final Answer: valid", "invalid", "formal_fallacies"),
        ("bbh", "Final Answer: 1343", "-1343", "multistep_arithmetic_two"),
        ("bbh", "Final Answer: ] )", ") ]", "dyck_languages"),
        ("bbh", "Final Answer: apple cherry banana", "apple banana cherry", "word_sorting"),
        ("bbh", "Final Answer: apple banana", "apple banana cherry", "word_sorting"),
        ("t4d", "Final Answer: A", "B", None),
    ],
)
def test_near_misses_do_not_score(bench: str, text: str, gold: str, task: str | None) -> None:
    assert score(bench, text, gold, task)[1] is False


def test_word_sorting_real_gold_with_one_word_swapped_is_wrong() -> None:
    p = next(p for p in _problems("bbh") if p.task == "word_sorting" and len(p.answer.split()) > 3)
    words = p.answer.split()
    words[0], words[1] = words[1], words[0]
    assert not score("bbh", _wrap_final(" ".join(words)), p.answer, "word_sorting")[1]
    assert score("bbh", _wrap_final(", ".join(w.capitalize() for w in p.answer.split())), p.answer, "word_sorting")[1]


def test_none_and_empty_predictions_are_wrong() -> None:
    for bench in BENCHMARKS:
        assert is_correct(bench, None, "1") is False
        assert is_correct(bench, "  ", "1") is False
    assert score("gsm8k", "I cannot solve this.", "5") == (None, False)


# ---------------------------------------------------------------------------------------------------------
# Equivalences and formats
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("\\dfrac{14}{3}", "\\frac{14}{3}"),
        ("14/3", "\\frac{14}{3}"),
        ("\\tfrac{14}{3}", "14/3"),
        ("90", "90^\\circ"),
        ("90^{\\circ}", "90"),
        ("Evelyn", "\\text{Evelyn}"),
        ("0.5", "\\frac{1}{2}"),
        ("0.5", "\\frac12"),
        ("\\frac{9}{5}", "1\\frac{4}{5}"),
        ("137.5", "137 \\frac{1}{2}"),
        ("5", "x=5"),
        ("x = 5", "x=5"),
        ("\\left( -\\sqrt{3}, \\sqrt3 \\right)", "(-\\sqrt{3}, \\sqrt{3})"),
        ("(0,9)\\cup(9,36)", "(0,9) \\cup (9,36)"),
        ("[-2, 7]", "x \\in [-2,7]"),
        ("(2, \\infty)", "(2,\\infty)"),
        ("-2, 1", "1,-2"),
        ("(8, -2)", "(8,-2)"),
        ("\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}", "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}"),
        ("(-2, -14, -7)", "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}"),
        ("\\frac{\\cos x}{\\sin x}", "\\cot x"),
        ("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}"),
        ("-q + p", "p - q"),
        ("-10x + 14y - 22z - 8 = 0", "5x - 7y + 11z + 4 = 0"),
        ("y=-2x", "y = -2x"),
        ("2i + 1", "1+2i"),
        ("10080", "10,\\!080"),
        ("11111111100", "11,\\! 111,\\! 111,\\! 100"),
        ("18.9", "\\$18.90"),
        ("\\$32,348", "\\$32,\\!348"),
        ("864", "864 \\mbox{ inches}^2"),
        ("5.4 cents", "5.4 \\text{ cents}"),
        ("2516", "2516_8"),
        ("2516_{8}", "2516_8"),
        ("B", "\\text{(B)}"),
        ("East", "\\text{east}"),
        ("10\\%", "10"),
        ("12\\pi", "12\\pi"),
    ],
)
def test_math_equivalences(pred: str, gold: str) -> None:
    assert math_equal(pred, gold)
    assert score("math500", f"Final Answer: ${pred}$", gold)[1]


@pytest.mark.parametrize(
    ("text", "gold", "expected"),
    [
        ("Final Answer: $18.00", "18", "18"),
        ("Final Answer: \\$18.00", "18", "18"),
        ("**Final Answer:** 1,234 apples", "1234", "1234"),
        ("The final answer is $\\boxed{18}$.", "18", "18"),
        ("Final Answer: 6 * 3 = 18", "18", "18"),
        ("Final Answer:\n\n$$\n\\boxed{18}\n$$", "18", "18"),
        ("She has 5 + 13 = 18 apples left.", "18", "18"),
        ("So the answer is 18.", "18", "18"),
        ("**Answer:** 25%", "25", "25"),
        ("Final Answer: -7", "-7", "-7"),
        ("Final Answer: <answer>\nThe answer is 9.", "9", "9"),
        ("```python\ntotal = 3 * 6\nprint(total)\n```\nThe code prints 18.\nFinal Answer: 18", "18", "18"),
        ("```python\nprint('Final Answer:', 7)\n```\nSo the answer is 18.", "18", "18"),
        ("```python\nx = 6\ny = x * 3\n```", "18", "3"),
    ],
)
def test_gsm8k_extraction(text: str, gold: str, expected: str) -> None:
    answer, ok = score("gsm8k", text, gold)
    assert answer == expected
    assert ok is (expected == gold)


def test_gsm8k_is_correct_normalises_prediction() -> None:
    assert is_correct("gsm8k", "18.00", "18")
    assert is_correct("gsm8k", "$18", "18")
    assert is_correct("gsm8k", "1,800", "1800")
    assert not is_correct("gsm8k", "1,800", "180")


_AQUA_OPTIONS = ["A)2 miles", "B)2.25 miles", "C)3.25 miles", "D)3.85 miles", "E)2.85 miles"]


@pytest.mark.parametrize(
    "text",
    [
        "Final Answer: (D)",
        "Final Answer: D)",
        "Final Answer: D",
        "Final Answer: D.",
        "Final Answer: **D**",
        "Final Answer: option D",
        "Final Answer: $\\text{(D)}$",
        "Answer: D",
        "\\boxed{D}",
        "Final Answer: 3.85 miles",
        "Final Answer: 3.85",
        "The answer is (D) 3.85 miles.",
        "So the correct option is D) 3.85 miles",
        "Final Answer: A total of 3.85 miles, option (D)",
    ],
)
def test_aqua_letter_formats(text: str) -> None:
    assert score("aqua", text, "D", options=_AQUA_OPTIONS) == ("D", True)


def test_aqua_value_without_unique_option_is_not_guessed() -> None:
    options = ["A)15 kmph", "B)6 kmph", "C)12 kmph", "D)14 kmph", "E)6 kmph"]
    assert extract_answer("aqua", "Final Answer: 6 kmph", options=options) is None
    assert extract_answer("aqua", "Final Answer: 12 kmph", options=options) == "C"
    assert extract_answer("aqua", "Final Answer: 12 kmph") is None


def test_t4d_names_map_to_letters() -> None:
    options = ["A. Carter", "B. Nathan", "C. None of the above"]
    assert score("t4d", "Final Answer: Nathan", "B", options=options) == ("B", True)
    assert score("t4d", "Final Answer: Nathan would benefit from it.", "B", options=options) == ("B", True)
    assert score("t4d", "Final Answer: B. Nathan", "B", options=options) == ("B", True)
    assert score("t4d", "Final Answer: None of the above", "B", options=options) == ("C", False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Final Answer: Yes.", "yes"),
        ("Final Answer: **No**", "no"),
        ("Final Answer: True", "yes"),
        ("Final Answer: false", "no"),
        ("So the answer is no.", "no"),
        ("It cannot be done. Yes, that is right? No.", "no"),
    ],
)
def test_strategyqa_formats(text: str, expected: str) -> None:
    assert extract_answer("strategyqa", text) == expected
    assert is_correct("strategyqa", expected, expected)


@pytest.mark.parametrize(
    ("task", "text", "gold"),
    [
        ("hyperbaton", "Final Answer: A", "(A)"),
        ("hyperbaton", "Final Answer: A)", "(A)"),
        ("hyperbaton", "Final Answer: (A) enormous new cat", "(A)"),
        ("geometric_shapes", "Final Answer: (I)", "(I)"),
        ("geometric_shapes", "the shape is a kite so the answer is (D).", "(D)"),
        ("boolean_expressions", "Final Answer: true", "True"),
        ("causal_judgement", "Final Answer: yes", "Yes"),
        ("sports_understanding", "Final Answer: Yes, it is plausible.", "yes"),
        ("formal_fallacies", "Final Answer: The argument is invalid.", "invalid"),
        ("formal_fallacies", "Final Answer: not valid", "invalid"),
        ("multistep_arithmetic_two", "Final Answer: -1343", "-1343"),
        ("object_counting", "Final Answer: five", "5"),
        ("object_counting", "I count 2 + 3 = 5 fruits.", "5"),
        ("dyck_languages", "Final Answer: )]", ") ]"),
        ("dyck_languages", "Final Answer: `) ] }`", ") ] }"),
        ("word_sorting", "Final Answer: apple, Banana, cherry", "apple banana cherry"),
        ("word_sorting", "Final Answer:\n1. apple\n2. banana\n3. cherry", "apple banana cherry"),
    ],
)
def test_bbh_formats(task: str, text: str, gold: str) -> None:
    assert score("bbh", text, gold, task)[1]
    assert score(f"bbh:{task}", text, gold)[1]


def test_bbh_canonical_forms() -> None:
    assert extract_answer("bbh", "Final Answer: b", task="snarks") == "(B)"
    assert extract_answer("bbh", "Final Answer: yes", task="navigate") == "Yes"
    assert extract_answer("bbh", "Final Answer: FALSE", task="boolean_expressions") == "False"
    assert extract_answer("bbh", "Final Answer: ) ]", task="dyck_languages") == ") ]"


def test_priority_final_answer_over_boxed_and_answer_is() -> None:
    text = "The answer is 3.\n\\boxed{4}\nFinal Answer: 5"
    assert extract_answer("gsm8k", text) == "5"
    assert extract_answer("gsm8k", "The answer is 3.\n\\boxed{4}\nDone.") == "4"
    assert extract_answer("gsm8k", "The answer is 3. We checked 7 cases.") == "3"
    # An unreadable final-answer line falls through to the next source.
    assert extract_answer("gsm8k", "\\boxed{4}\nFinal Answer: see above") == "4"


def test_boxed_braces_are_balanced() -> None:
    assert extract_answer("math500", "so \\boxed{\\frac{1}{\\sqrt{2}}} done") == "\\frac{1}{\\sqrt{2}}"
    assert score("math500", "\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}") == ("\\dfrac{14}{3}", True)


def test_math_prose_final_answer() -> None:
    assert extract_answer("math500", "Final Answer: The area is $12\\pi$ square units.") == "12\\pi"
    assert score("math500", "Final Answer: $x = 5$", "x=5")[1]


def test_normalize_math() -> None:
    assert normalize_math("\\left( \\dfrac{1}{2}, 3 \\right)") == "( \\frac{1}{2}, 3 )"
    assert normalize_math("\\$1,\\!000.") == "1000"
    assert normalize_math("90^\\circ") == "90"


def test_evaluator_is_safe_and_bounded() -> None:
    assert not math_equal("__import__('os').system('true')", "0")
    assert not math_equal("10^{10^{10^{10}}}", "5")
    assert not math_equal("\\frac{1}{0}", "5")
    assert not math_equal("(" * 500 + "1" + ")" * 500, "1")


def test_parse_options() -> None:
    aqua = "Q?\nAnswer Choices: (A) 2 miles (B) 2.25 miles (C) 3 (D) 4 (E) 5"
    assert parse_options(aqua) == {"A": "2 miles", "B": "2.25 miles", "C": "3", "D": "4", "E": "5"}
    t4d = "Story.\nWho would benefit?\nA. Carter\nB. Nathan\nC. None of the above"
    assert parse_options(t4d) == {"A": "Carter", "B": "Nathan", "C": "None of the above"}
    assert parse_options("Is it?\nOptions:\n- Yes\n- No") == {}


def test_answer_hints() -> None:
    assert answer_hint("gsm8k") == "Give the final answer as a single number."
    assert answer_hint("aqua") == "Give the final answer as the option letter (A, B, C, D or E)."
    assert answer_hint("strategyqa") == "Give the final answer as yes or no."
    assert answer_hint("math500") == "Give the final answer as a simplified LaTeX expression."
    assert "option letter" in answer_hint("t4d")
    assert "(A)" in answer_hint("bbh", "snarks")
    assert "True or False" in answer_hint("bbh:boolean_expressions")
    assert "valid or invalid" in answer_hint("bbh", "formal_fallacies")
    assert "integer" in answer_hint("bbh", "object_counting")
    assert "sorted words" in answer_hint("bbh", "word_sorting")
    assert "closing brackets" in answer_hint("bbh", "dyck_languages")
    assert answer_hint("bbh") == ANSWER_HINTS["bbh"]
    assert answer_hint("bbh", "not_a_task") == ANSWER_HINTS["bbh"]
    assert all(f"bbh:{task}" in ANSWER_HINTS for task in BBH_TASK_FORMATS)


def test_unknown_benchmark_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        extract_answer("mmlu", "Final Answer: 3")
    with pytest.raises(ValueError, match="unknown benchmark"):
        answer_hint("mmlu")


def test_reasoning_under_the_answer_label_is_not_read_as_the_answer():
    text = (
        "Final Answer: To find the percentage difference, we need to calculate the probability of rolling a number "
        "greater than 3 and the probability of rolling two even numbers in a row.\n"
        "Difference: 1/2 - 1/4 = 1/4\nPercentage difference: (1/4) * 100 = 25%"
    )
    assert extract_answer("gsm8k", text) == "25"
    assert extract_answer("gsm8k", "Final Answer: 15 + 24 + 39 = 78") == "78"
    assert extract_answer("gsm8k", "Final Answer: Jairus will get $16 - $10 = $6 more than Jenny.") == "6"
    assert extract_answer("gsm8k", "Final Answer: 15 pupils like the color yellow.") == "15"
