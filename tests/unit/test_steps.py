"""Step tracking and ω schedules on scripted token streams (no model): exact anchors, ω, guards."""

from __future__ import annotations

import pytest

from selfanchor_chains.engine import TokenEvent
from selfanchor_chains.prompting.templates import StepMarkers
from selfanchor_chains.reasoning.schedules import ConfidenceOmega, ConstantOmega, ScaledOmega
from selfanchor_chains.reasoning.steps import StepLimits, StepTracker, marker_pattern

PROMPT_LEN = 50
PREFIX = 3  # "Plan 1:" tokens at the end of the prompt
QUESTION = (10, 30)


class FakeSession:
    """Records the controls a tracker sends, as the engine session would receive them."""

    def __init__(self) -> None:
        self.anchors: list[tuple[int, list[tuple[int, int]]]] = []
        self.omegas: list[tuple[int, float]] = []
        self.cancelled: list[int] = []

    def set_anchors(self, row, spans):
        self.anchors.append((row, list(spans)))

    def set_omega(self, row, omega):
        self.omegas.append((row, omega))

    def cancel(self, row):
        self.cancelled.append(row)


def feed(tracker, session, pieces, confidence=0.5, finish_last=None):
    for i, (text, conf) in enumerate(pieces):
        finish = finish_last if i == len(pieces) - 1 else None
        event = TokenEvent(0, 0, i, text, confidence if conf is None else conf, 1.0, finish)
        tracker.on_event(event, session)
        if tracker.finish_reason is not None:
            break


def tracker(schedule=None, **kwargs):
    return StepTracker(
        row=0,
        prompt_len=PROMPT_LEN,
        base_spans=[QUESTION],
        base_texts=["the question"],
        schedule=schedule if schedule is not None else ConfidenceOmega(1.5, 2.0),
        prefix_tokens=PREFIX,
        first_prefix_text="Plan 1:",
        **kwargs,
    )


def tokens(text: str, conf: float | None = None) -> list[tuple[str, float | None]]:
    """Split into word-ish tokens (each keeps its leading whitespace) with one confidence."""
    out, word = [], ""
    for ch in text:
        if ch in " \n" and word.strip():
            out.append((word, conf))
            word = ""
        word += ch
    if word:
        out.append((word, conf))
    return out


SCRIPT = [
    *tokens(" add the apples", 0.8),  # plan 1: tokens 0..2
    *tokens("\nReasoning 1: 3 + 5 = 8", 0.5),  # tokens 3..
    *tokens("\nPlan 2: answer", 0.9),
    *tokens("\nReasoning 2: it is 8", 1.0),
    *tokens("\nFinal Answer: 8", 0.7),
    ("\n", 0.7),
]


def test_boundaries_switch_anchors_and_omega_exactly():
    t = tracker()
    s = FakeSession()
    feed(t, s, SCRIPT)
    kinds = [(r.kind, r.index) for r in t.steps]
    assert kinds == [("plan", 1), ("reasoning", 1), ("plan", 2), ("reasoning", 2), ("final", 1)]
    assert t.finish_reason == "final_answer" and s.cancelled == [0]
    assert t.answer_text() == "8"
    # Plan 1 spans its prefix in the prompt plus its 3 generated tokens; "\nReasoning" is token 3.
    plan1 = (PROMPT_LEN - PREFIX, PROMPT_LEN + 3)
    assert s.anchors[0] == (0, [QUESTION, plan1])  # reasoning 1: question + current plan
    assert s.anchors[1] == (0, [QUESTION])  # plan 2: question only
    plan2_start = 3 + len(tokens("\nReasoning 1: 3 + 5 = 8"))
    plan2 = (PROMPT_LEN + plan2_start, PROMPT_LEN + plan2_start + len(tokens("\nPlan 2: answer")))
    assert s.anchors[2] == (0, [QUESTION, plan2])  # reasoning 2: question + plan 2 only, not plan 1
    assert s.anchors[3] == (0, [QUESTION, plan2])  # final: question + last plan
    assert t.steps[1].anchors == ["the question", "Plan 1: add the apples"]
    assert t.steps[0].text == "Plan 1: add the apples"


def test_omega_follows_the_confidence_schedule():
    schedule = ConfidenceOmega(1.5, 2.0)
    t = tracker(schedule)
    s = FakeSession()
    feed(t, s, SCRIPT)
    assert t.steps[0].omega == 1.5
    for before, after in zip(t.steps, t.steps[1:], strict=False):
        assert after.omega == pytest.approx(schedule.next(before.confidence))
    assert [o for _, o in s.omegas] == [r.omega for r in t.steps[1:]]
    # Plan 1's three tokens all had p = 0.8; its harmonic mean is 0.8 and the next ω 1 + 1·0.2.
    assert t.steps[0].confidence == pytest.approx(0.8)
    assert t.steps[1].omega == pytest.approx(1.2)


def test_harmonic_confidence_is_pulled_down_by_one_unsure_token():
    t = tracker()
    s = FakeSession()
    feed(t, s, [(" a", 0.9), (" b", 0.9), (" c", 0.1), ("\nReasoning 1:", 0.9)])
    assert t.steps[0].confidence == pytest.approx(3 / (1 / 0.9 + 1 / 0.9 + 1 / 0.1))


def test_markers_split_across_tokens_and_decorated():
    t = tracker()
    s = FakeSession()
    pieces = [(" x", 0.5), ("\n**Re", 0.5), ("ason", 0.5), ("ing 1", 0.5), ("**:", 0.5), (" y", 0.5)]
    feed(t, s, pieces)
    assert [r.kind for r in t.steps] == ["plan"]
    assert s.anchors and s.anchors[0][1][1] == (PROMPT_LEN - PREFIX, PROMPT_LEN + 1)


def test_baseline_tracker_only_watches_for_the_answer():
    t = StepTracker(row=0, prompt_len=PROMPT_LEN, base_spans=[], base_texts=[], schedule=None)
    s = FakeSession()
    feed(t, s, tokens("Plan 1: x\nReasoning 1: y\nFinal Answer: 42\nmore"))
    assert [r.kind for r in t.steps] == ["text", "final"]
    assert s.anchors == [] and s.omegas == []
    assert t.answer_text() == "42" and t.finish_reason == "final_answer"


def test_guard_step_too_long():
    t = tracker(limits=StepLimits(max_step_tokens=5))
    s = FakeSession()
    feed(t, s, tokens(" one two three four five six seven eight"))
    assert t.finish_reason == "step_too_long" and s.cancelled == [0]


def test_guard_max_steps():
    t = tracker(limits=StepLimits(max_steps=2))
    s = FakeSession()
    feed(t, s, SCRIPT)
    assert t.finish_reason == "max_steps"
    assert len([r for r in t.steps if r.kind in ("plan", "reasoning")]) == 2


def test_engine_finish_reason_is_kept():
    t = tracker()
    s = FakeSession()
    feed(t, s, tokens(" a b c"), finish_last="length")
    assert t.finish_reason == "length" and t.steps[-1].kind == "plan"


def test_eos_after_the_answer_is_a_final_answer():
    t = tracker()
    s = FakeSession()
    feed(t, s, tokens(" a\nReasoning 1: b\nFinal Answer: 7"), finish_last="eos")
    assert t.finish_reason == "final_answer" and t.answer_text() == "7"


def test_marker_pattern_variants():
    pattern = marker_pattern(StepMarkers())
    for line in ("Plan 2: x", "**Plan 2:** x", "## Reasoning 3: y", "final answer: 5", "- Plan: z"):
        assert pattern.search(line), line
    for line in ("The plan: x", "Planet 2: x", "my final answer: 3"):
        assert not pattern.search(line), line


def test_schedules_closed_form():
    schedule = ConfidenceOmega(omega_init=1.5, omega_max=2.0)
    assert schedule.initial() == 1.5
    assert schedule.next(1.0) == 1.0
    assert schedule.next(0.0) == 2.0
    assert schedule.next(0.25) == pytest.approx(1.75)
    assert schedule.next(float("nan")) == 2.0
    assert ConstantOmega(1.3).next(0.1) == 1.3
    with pytest.raises(ValueError):
        ConfidenceOmega(omega_max=0.5)
    with pytest.raises(ValueError):
        ConstantOmega(float("inf"))
    with pytest.raises(ValueError):
        StepLimits(max_steps=0)


def test_baselines_have_no_step_length_guard():
    t = StepTracker(
        row=0,
        prompt_len=PROMPT_LEN,
        base_spans=[],
        base_texts=[],
        schedule=None,
        prefix_tokens=40,
        limits=StepLimits(max_step_tokens=5),
    )
    s = FakeSession()
    feed(t, s, tokens(" one two three four five six seven eight nine ten"))
    assert t.finish_reason is None and s.cancelled == []


def test_prefix_tokens_do_not_count_towards_the_step_guard():
    t = tracker(limits=StepLimits(max_step_tokens=5))
    s = FakeSession()
    feed(t, s, tokens(" one two three four five"))  # 5 generated tokens after a 3-token prefix
    assert t.finish_reason is None


def test_a_long_final_answer_line_is_not_cut_at_its_line_break():
    t = tracker()
    s = FakeSession()
    long_line = (
        " To find the difference in likelihood we subtract the second probability from the first one, which gives us"
    )
    feed(t, s, tokens(" a\nReasoning 1: b\nFinal Answer:" + long_line + "\n1/2 - 1/4 = 1/4\n\nmore"))
    assert t.finish_reason == "final_answer"
    assert t.text.endswith("1/2 - 1/4 = 1/4")


def test_a_short_final_answer_line_ends_the_solve():
    t = tracker()
    s = FakeSession()
    feed(t, s, tokens(" a\nReasoning 1: b\nFinal Answer: 42 apples\nextra words"))
    assert t.finish_reason == "final_answer" and t.text.endswith("Final Answer: 42 apples")
    assert t.answer_text() == "42 apples"


def plan_spans_of_script() -> tuple[tuple[int, int], tuple[int, int]]:
    plan1 = (PROMPT_LEN - PREFIX, PROMPT_LEN + 3)
    plan2_start = 3 + len(tokens("\nReasoning 1: 3 + 5 = 8"))
    plan2 = (PROMPT_LEN + plan2_start, PROMPT_LEN + plan2_start + len(tokens("\nPlan 2: answer")))
    return plan1, plan2


@pytest.mark.parametrize(
    "scope, reasoning2",
    [
        ("question+plan", "q+p2"),
        ("plan", "p2"),
        ("question+plans", "q+p1+p2"),
    ],
)
def test_reasoning_scope(scope, reasoning2):
    plan1, plan2 = plan_spans_of_script()
    expected = {"q+p2": [QUESTION, plan2], "p2": [plan2], "q+p1+p2": [QUESTION, plan1, plan2]}[reasoning2]
    t = tracker(reasoning_scope=scope)
    s = FakeSession()
    feed(t, s, SCRIPT)
    assert s.anchors[2] == (0, expected)  # reasoning 2
    assert s.anchors[1] == (0, [QUESTION])  # plan 2 anchors the question whatever the scope
    assert s.anchors[3] == (0, [QUESTION, plan2])  # the final line: question + last plan
    assert len(t.steps[3].anchors) == len(expected)
    with pytest.raises(ValueError, match="reasoning_scope"):
        tracker(reasoning_scope="everything")


def test_step_strength_scales_the_schedules_omega_per_kind():
    schedule = ConstantOmega(1.6)
    t = tracker(schedule, step_strength={"plan": 0.0, "reasoning": 1.0, "final": 0.5})
    assert t.initial_omega() == 1.0  # plan 1 opens unsteered
    s = FakeSession()
    feed(t, s, SCRIPT)
    by_kind = {(r.kind, r.index): r.omega for r in t.steps}
    assert by_kind[("plan", 1)] == 1.0 and by_kind[("plan", 2)] == 1.0
    assert by_kind[("reasoning", 1)] == pytest.approx(1.6) and by_kind[("reasoning", 2)] == pytest.approx(1.6)
    assert by_kind[("final", 1)] == pytest.approx(1.3)
    with pytest.raises(ValueError, match="step_strength"):
        tracker(step_strength={"answer": 1.0})
    with pytest.raises(ValueError, match="step_strength"):
        tracker(step_strength={"plan": -1.0})


def test_midline_labels_open_steps_only_when_asked():
    text = " add them. Reasoning 1: 3 + 5 = 8. Plan 2: answer. Reasoning 2: it is 8. Final Answer: 8\n"
    plain, midline = tracker(), tracker(midline_labels=True)
    for t in (plain, midline):
        feed(t, FakeSession(), tokens(text, 0.5))
    assert plain.steps == [] and plain.answer_text() is None  # one long plan step, still open
    assert [(r.kind, r.index) for r in midline.steps] == [
        ("plan", 1),
        ("reasoning", 1),
        ("plan", 2),
        ("reasoning", 2),
        ("final", 1),
    ]
    assert midline.answer_text() == "8"
    pattern = marker_pattern(StepMarkers(), midline=True)
    for line in ("so the plan: x", "as in plan: y", "the final answer: 3"):  # unnumbered mid-line is prose
        assert not pattern.search(line), line


def test_steps_record_what_steering_changed():
    t = tracker()
    s = FakeSession()
    events = [
        (" a", True, 0.2),
        (" b", False, 0.0),
        (" c", True, 0.4),
        ("\nReasoning 1:", False, 0.1),
        (" d", False, 0.3),
    ]
    for i, (text, flipped, kl) in enumerate(events):
        t.on_event(TokenEvent(0, 0, i, text, 0.5, 1.5, None, flipped, kl), s)
    t._finish("length", len(t.text))
    plan, reasoning = t.steps
    assert (plan.changed, plan.kl) == (2, pytest.approx(0.2))  # tokens a, b, c
    assert (reasoning.changed, reasoning.kl) == (0, pytest.approx(0.2))  # the label token and d
    assert plan.model_dump()["changed"] == 2 and "kl" in reasoning.model_dump()


def test_scaled_omega_closed_form():
    schedule = ScaledOmega(omega_base=1.4, alpha=0.5)
    assert schedule.initial() == 1.4
    assert schedule.next(1.0) == pytest.approx(1.4)
    assert schedule.next(0.0) == pytest.approx(2.1)
    assert schedule.next(0.6) == pytest.approx(1.4 * 1.2)
    assert schedule.next(float("nan")) == pytest.approx(2.1)
    assert ScaledOmega(2.0, 1.0, omega_max=3.0).next(0.0) == 3.0
    assert ScaledOmega(1.2, 0.0, omega_init=1.0).initial() == 1.0
    for bad in ({"omega_base": -1.0}, {"alpha": float("inf")}, {"omega_max": float("nan")}):
        with pytest.raises(ValueError):
            ScaledOmega(**bad)
