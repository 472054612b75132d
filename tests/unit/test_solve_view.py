"""The terminal view of `selfanchor solve`: each step's numbers next to that step, plain and live."""

from __future__ import annotations

import io

from selfanchor_chains.cli.solve_view import SolveView, step_summary

STEPS = [
    {"kind": "plan", "index": 1, "text": "Plan 1: find the total", "omega": 1.25, "confidence": 0.91,
     "anchors": ["How many apples?"], "tokens": 4, "changed": 1, "kl": 0.01},
    {"kind": "reasoning", "index": 1, "text": "Reasoning 1: 3 + 5 = 8", "omega": 1.05, "confidence": 0.97,
     "anchors": ["How many apples?", "Plan 1: find the total"], "tokens": 8, "changed": 0, "kl": 0.0},
    {"kind": "final", "index": 1, "text": "Final Answer: 8", "omega": 1.02, "confidence": 0.99,
     "anchors": ["How many apples?"], "tokens": 4, "changed": 0, "kl": 0.0},
]  # fmt: skip


def chunks() -> list[dict]:
    # As the chain streams them: a step arrives after the token that opened the next step's label.
    return [
        {"token": " find"}, {"token": " the total"}, {"token": "\nReason"},
        {"step": STEPS[0]},
        {"token": "ing 1: 3 + 5"}, {"token": " = 8"}, {"token": "\nFinal"},
        {"step": STEPS[1]},
        {"token": " Answer: 8"},
        {"step": STEPS[2]},
        {"output": {"answer": "8", "steps": STEPS, "finish_reason": "final_answer",
                    "usage": {"completion_tokens": 16}}},
    ]  # fmt: skip


def test_plain_view_prints_each_steps_numbers_right_under_it() -> None:
    out = io.StringIO()
    output = SolveView("self-anchor", plain=True, out=out).run(chunks())
    lines = out.getvalue().splitlines()
    assert lines[0] == "Plan 1: find the total" and lines[1] == f"    [{step_summary(STEPS[0])}]"
    assert lines[2] == "Reasoning 1: 3 + 5 = 8" and "ω=1.05" in lines[3]
    assert lines[4] == "Final Answer: 8" and lines[6] == "Answer: 8"
    assert "16 tokens" in lines[7] and "finish=final_answer" in lines[7]
    assert output["answer"] == "8"


def test_live_view_shows_finished_steps_and_the_one_being_decoded() -> None:
    from rich.console import Console

    view = SolveView("self-anchor", plain=False, out=io.StringIO())
    for chunk in chunks()[:6]:  # plan 1 done, reasoning 1 under way
        view._take(chunk)
    assert view.current.strip() == "Reasoning 1: 3 + 5 = 8"
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(view.render())
    shown = console.export_text()
    assert "Plan 1: find the total" in shown and "ω=1.25" in shown and "3 + 5" in shown
    assert "changed=1" in shown and "anchors: How many apples?" in shown


def test_comparison_shows_each_method_with_its_answer() -> None:

    from selfanchor_chains.cli.solve_view import show_comparison

    solved = [
        (
            "self-anchor",
            {"text": "Plan 1: add\nFinal Answer: 8", "answer": "8", "usage": {"completion_tokens": 9}},
            2.0,
        ),
        ("cot", {"text": "3 + 5 = 8\nFinal Answer: 8", "answer": "8", "usage": {"completion_tokens": 7}}, 1.5),
    ]
    out = io.StringIO()
    show_comparison(solved, plain=True, out=out)
    text = out.getvalue()
    assert "===== self-anchor =====" in text and "===== cot =====" in text
    assert text.splitlines()[-1].split() == ["cot", "8", "7", "1.5"]
    rich_out = io.StringIO()
    show_comparison(solved, plain=False, out=rich_out)
    assert "self-anchor" in rich_out.getvalue() and "Answer: 8" in rich_out.getvalue()


def test_compare_takes_known_methods_only(capsys) -> None:
    import pytest

    from selfanchor_chains import cli

    with pytest.raises(SystemExit):
        cli.main(["solve", "2+2?", "--compare", "cot,nosuch"])
    assert "unknown method" in capsys.readouterr().err
