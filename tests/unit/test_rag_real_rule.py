"""Issue #34's written decision rule as ``scripts/rag_real_study.py`` applies it (the best baseline, the paired gain,
the control condition, the tables), on synthetic per-item logs: no model, no data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
MODEL = "m"
WINNER = "rag-anchored-top1@2"


@pytest.fixture
def study(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the script imports its sibling study_logs.py
    spec = importlib.util.spec_from_file_location("rag_real_study_under_test", SCRIPTS / "rag_real_study.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "EVALS", tmp_path)
    return module


def _write(folder: Path, method: str, conflict_right: int, control_right: int, n_conflict: int = 100) -> None:
    """A log whose first ``conflict_right`` conflict items and first ``control_right`` of 20 control items carry the
    passage's answer (both graders agree)."""
    rows = []
    for i in range(n_conflict):
        right = i < conflict_right
        rows.append({"id": f"c{i}", "kind": "conflict", "context_match": right, "context_fair": right,
                     "memory_match": False, "memory_fair": False, "seconds": 1.0})  # fmt: skip
    for i in range(20):
        right = i < control_right
        rows.append({"id": f"k{i}", "kind": "control", "context_match": right, "context_fair": right,
                     "memory_match": False, "memory_fair": False, "seconds": 1.0})  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{method}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _logs(tmp_path: Path, winner: tuple[int, int], **baselines: tuple[int, int]) -> None:
    folder = tmp_path / f"{MODEL}-test" / "conflictqa"
    _write(folder, WINNER, *winner)
    for name, (conflict, control) in baselines.items():
        _write(folder, name.replace("_", "-"), conflict, control)


def test_the_winner_is_compared_with_the_best_baseline_not_plain_rag(study: ModuleType, tmp_path: Path) -> None:
    _logs(
        tmp_path, (60, 15), rag_plain=(40, 15), rag_instructed=(30, 15), rag_top1_only=(58, 15), rag_top1_last=(20, 15)
    )
    block = study.model_summary(MODEL, WINNER, "short")
    assert block["best_baseline"] == "rag-top1-only"
    gain = block["paired_conflict"]["rag-top1-only"]["fair"]
    # items 58 and 59 are the winner's alone: b = 2, c = 0 over 100 paired conflict items
    assert (gain["n"], gain["b"], gain["c"], gain["delta"]) == (100, 2, 0, 2.0)
    assert block["paired_conflict"]["rag-plain"]["fair"]["delta"] == 20.0
    assert block["target_met"] is False  # +20 over plain RAG does not count: +2 over the best baseline


def test_the_target_needs_three_points_significance_and_control(study: ModuleType, tmp_path: Path) -> None:
    _logs(
        tmp_path, (70, 15), rag_plain=(40, 15), rag_instructed=(30, 15), rag_top1_only=(50, 15), rag_top1_last=(20, 15)
    )
    block = study.model_summary(MODEL, WINNER, "short", alpha=0.025)
    assert block["paired_conflict"]["rag-top1-only"]["fair"]["delta"] == 20.0
    assert block["target_met"] is True
    # the same gain with control 3 of 20 items (15 points) below plain RAG's: more than the 2 points allowed
    _logs(
        tmp_path, (70, 12), rag_plain=(40, 15), rag_instructed=(30, 15), rag_top1_only=(50, 15), rag_top1_last=(20, 15)
    )
    block = study.model_summary(MODEL, WINNER, "short", alpha=0.025)
    assert block["target_met"] is False
    assert block["paired_control"]["rag-plain"]["delta"] == -15.0


def test_a_gain_that_is_not_significant_does_not_meet_the_target(study: ModuleType, tmp_path: Path) -> None:
    # +4 points from b/c = 4/0 is p = 0.125: not below 0.025
    _logs(
        tmp_path, (54, 15), rag_plain=(40, 15), rag_instructed=(30, 15), rag_top1_only=(50, 15), rag_top1_last=(20, 15)
    )
    block = study.model_summary(MODEL, WINNER, "short", alpha=0.025)
    assert block["paired_conflict"]["rag-top1-only"]["fair"]["p_value"] == pytest.approx(0.125)
    assert block["target_met"] is False


def test_the_table_shows_control_pairs_and_no_time_ratio(study: ModuleType, tmp_path: Path) -> None:
    _logs(
        tmp_path, (60, 15), rag_plain=(40, 14), rag_instructed=(30, 15), rag_top1_only=(58, 16), rag_top1_last=(20, 15)
    )
    block = study.model_summary(MODEL, WINNER, "short")
    text = "\n".join(study._markdown({"winner": WINNER, "runs": {"m, short answers": block}}))
    assert "Paired on control items (fair grader), `rag-anchored-top1@2` − baseline:" in text
    assert "- vs `rag-plain`: +5.0 (b/c 1/0, p = 1)" in text
    assert "- vs `rag-top1-only`: -5.0 (b/c 0/1, p = 1)" in text
    assert "time" not in text and "time_ratio_vs_plain" not in block


def test_no_summary_before_the_winner_and_plain_rag_have_items(study: ModuleType, tmp_path: Path) -> None:
    _write(tmp_path / f"{MODEL}-test" / "conflictqa", "rag-plain", 40, 15)
    assert study.model_summary(MODEL, WINNER, "short") is None


# -- rule 3: the shipped default -----------------------------------------------------------------------------------

WINNER_2 = "rag-anchored-top1-only@2"
MODELS = ("m1", "m2")


NO_MEMORY = {"memory_match": False, "memory_fair": False}


def _test_split(tmp_path: Path, model: str, method: str, conflict_right: int, control_right: int) -> None:
    """A complete test-split log (300 conflict + 100 control items), the first items right."""
    rows = [
        {"id": f"{kind}-{i}", "kind": kind, "context_fair": i < right, "context_match": i < right, **NO_MEMORY}
        for kind, n, right in (("conflict", 300, conflict_right), ("control", 100, control_right))
        for i in range(n)
    ]
    folder = tmp_path / f"{model}-test" / "conflictqa"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{method}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _three(tmp_path: Path, model: str, plain: tuple[int, int], one: tuple[int, int], two: tuple[int, int]) -> None:
    for method, (conflict, control) in (("rag-plain", plain), (WINNER, one), (WINNER_2, two)):
        _test_split(tmp_path, model, method, conflict, control)


def test_rule_3_of_two_eligible_winners_ships_the_one_within_the_cost_target(study: ModuleType, tmp_path: Path) -> None:
    for model in MODELS:
        _three(tmp_path, model, plain=(100, 50), one=(140, 55), two=(130, 50))
    default = study.shipped_default((WINNER, WINNER_2), MODELS)
    assert default["decided"] and default["eligible"] == [WINNER, WINNER_2]
    assert default["default"] == WINNER_2  # 0.32x plain RAG's time; rule 1's winner costs 1.48x


def test_rule_3_a_winner_significantly_worse_anywhere_is_out(study: ModuleType, tmp_path: Path) -> None:
    _three(tmp_path, "m1", plain=(100, 50), one=(140, 55), two=(130, 50))
    _three(tmp_path, "m2", plain=(100, 50), one=(140, 55), two=(130, 38))  # control 12 of 100 below: b/c 0/12
    default = study.shipped_default((WINNER, WINNER_2), MODELS)
    assert default["default"] == WINNER and default["eligible"] == [WINNER]
    assert default["worse"][WINNER_2] == ["m2 short control: -12.0 (b/c 0/12, p = 0.000488)"]
    # a lower rate that is not significant keeps a winner in (5 of 100: b/c 0/5, p = 0.0625)
    _three(tmp_path, "m2", plain=(100, 50), one=(140, 55), two=(130, 45))
    assert study.shipped_default((WINNER, WINNER_2), MODELS)["default"] == WINNER_2


def test_rule_3_plain_rag_when_every_winner_is_worse_and_no_decision_before_the_runs_end(
    study: ModuleType, tmp_path: Path
) -> None:
    _three(tmp_path, "m1", plain=(100, 50), one=(80, 50), two=(100, 30))
    _three(tmp_path, "m2", plain=(100, 50), one=(140, 55), two=(130, 50))
    default = study.shipped_default((WINNER, WINNER_2), MODELS)
    assert default["default"] == "rag-plain" and default["eligible"] == []
    _test_split(tmp_path, "m2", WINNER_2, 130, 0)
    (tmp_path / "m2-test" / "conflictqa" / f"{WINNER_2}.jsonl").write_text("")  # m2's run not started
    undecided = study.shipped_default((WINNER, WINNER_2), MODELS)
    assert undecided["decided"] is False and undecided["default"] is None


# -- rule 4: the sentence twins, staged ----------------------------------------------------------------------------


def test_rule_4_sentence_answers_are_compared_with_plain_and_top1_only_alone(study: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / f"{MODEL}-test" / "conflictqa"
    _write(folder, "rag-anchored-top1-only-sentence@2", 60, 15)
    _write(folder, "rag-plain-sentence", 40, 15)
    _write(folder, "rag-top1-only-sentence", 50, 15)
    # twins decoded before rule 4 (a few items, one scoring far above the rest) are neither shown nor compared
    _write(folder, "rag-instructed-sentence", 30, 15, n_conflict=32)
    _write(folder, "rag-top1-last-sentence", 32, 15, n_conflict=32)
    block = study.model_summary(MODEL, WINNER_2, "sentence", (WINNER,), alpha=0.025)
    assert block["reference"] == "rag-anchored-top1-only-sentence@2"
    assert set(block["paired_conflict"]) == {"rag-plain-sentence", "rag-top1-only-sentence"}
    assert set(block["scores"]) == {"rag-anchored-top1-only-sentence@2", "rag-plain-sentence", "rag-top1-only-sentence"}
    assert block["best_baseline"] == "rag-top1-only-sentence"
    assert block["paired_conflict"]["rag-top1-only-sentence"]["fair"]["delta"] == 10.0


def test_rule_4_stage_2_runs_only_when_stage_1_takes_the_default_out(study: ModuleType, tmp_path: Path) -> None:
    for model in MODELS:
        _test_split(tmp_path, model, "rag-plain-sentence", 100, 50)
        _test_split(tmp_path, model, "rag-anchored-top1-only-sentence@2", 130, 50)
    assert study.needs_stage_2(WINNER_2, MODELS) is False
    _test_split(tmp_path, "m2", "rag-anchored-top1-only-sentence@2", 130, 38)  # control b/c 0/12 on m2
    assert study.needs_stage_2(WINNER_2, MODELS) is True
    # and rule 3 then takes the default out, leaving rule 1's winner (its short answers worse nowhere)
    for model in MODELS:
        _three(tmp_path, model, plain=(100, 50), one=(140, 55), two=(130, 50))
    default = study.shipped_default((WINNER, WINNER_2), MODELS)
    assert default["default"] == WINNER
    assert default["worse"][WINNER_2] == ["m2 sentence control: -12.0 (b/c 0/12, p = 0.000488)"]


def test_rule_4_the_summary_leaves_out_rule_1s_sentence_twin_without_stage_2(
    study: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(study, "FINAL_MODELS", MODELS)
    monkeypatch.setattr(study, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(study, "snapshot", lambda: None)
    for model in MODELS:
        _three(tmp_path, model, plain=(100, 50), one=(140, 55), two=(130, 50))
        for method, (conflict, control) in (
            ("rag-plain", (100, 50)),
            ("rag-top1-only", (120, 50)),
            (WINNER_2, (130, 50)),
        ):
            _test_split(tmp_path, model, study.sentence_twin(method), conflict, control)
        _write(tmp_path / f"{model}-test" / "conflictqa", "rag-anchored-top1-sentence@2", 30, 15, n_conflict=32)
    study.summarise(WINNER, WINNER_2)
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    sentence = {run: block for run, block in summary["runs"].items() if "sentence" in run}
    assert sorted(sentence) == [f"{m}, sentence answers, rule 2: rag-anchored-top1-only-sentence@2" for m in MODELS]
    for block in sentence.values():
        assert "rag-anchored-top1-sentence@2" not in block["scores"]
        assert block["best_baseline"] == "rag-top1-only-sentence"
