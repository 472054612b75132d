"""The steering study's written selection rules (``scripts/study_select.py``) and its results folders
(``scripts/study.py``), on synthetic screening numbers: no model, no data."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"study_script_{name}", SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(**correct: int) -> dict[str, Any]:
    return {name.replace("_", "-"): {"accuracy": k / 100, "correct": k, "n": 100} for name, k in correct.items()}


@pytest.fixture(scope="module")
def select() -> ModuleType:
    return _script("study_select")


def test_the_best_steering_option_is_combined_with_the_example(select: ModuleType) -> None:
    screening = _cells(sa_default=55, sa_example=58, sa_noretry=60, sa_reasoning_only=56, sa_scope_plans=55)
    # sa-noretry is a format variant, not a steering option
    assert select.combined_finalist(screening, list(screening)) == "sa-example-reasoning-only"
    tied = {**screening, **_cells(sa_final_none=56)}
    # a tie goes to the shorter name (fewer changed options)
    assert select.combined_finalist(tied, list(tied)) == "sa-example-final-none"


def test_no_combination_when_no_steering_option_beats_the_default(select: ModuleType) -> None:
    screening = _cells(sa_default=55, sa_example=58, sa_final_none=55, sa_replace=53)
    assert select.combined_finalist(screening, list(screening)) is None


def test_an_unfinished_option_does_not_count(select: ModuleType) -> None:
    screening = {**_cells(sa_default=55, sa_example=58, sa_gate=54), "sa-final-question": None}
    assert select.combined_finalist(screening, list(screening)) is None


def test_each_training_pool_other_than_train_has_its_own_folder() -> None:
    study = _script("study")
    assert study.run_folder("m", "bfloat16", "train") == "m-bfloat16"
    assert study.run_folder("m", "bfloat16", "official_dev") == "m-bfloat16-official_dev"


def test_the_references_due_after_the_winner_match_its_format(select: ModuleType) -> None:
    assert select.references_due("sa-reasoning-only") == ["cot"]
    assert select.references_due("sa-example") == ["cot", "structure-example", "cot-example"]
    assert select.references_due("sa-example-reasoning-only") == ["cot", "structure-example", "cot-example"]


def test_only_screened_variants_compete_for_the_finalists(select: ModuleType) -> None:
    screening = _cells(
        sa_default=55, sa_example=58, sa_reasoning_only=56, sa_final_none=55, sa_example_reasoning_only=64, cot=64
    )
    screened = ["sa-default", "sa-example", "sa-reasoning-only", "sa-final-none"]
    # sa-example-reasoning-only's screening items came after the rule named it: it joins as the combination, once
    assert select.choose_finalists(screening, screened) == [
        "sa-example",
        "sa-reasoning-only",
        "sa-default",
        "sa-example-reasoning-only",
    ]


def test_the_final_run_covers_the_issue_s_table(select: ModuleType) -> None:
    final = _script("final_run")
    runs = final.commands(worked_example=False)
    gsm8k = [r for r in runs if r[1] == "gsm8k"]
    others = [r for r in runs if r[1] != "gsm8k"]
    assert [r[r.index("--limit") + 1] for r in gsm8k] == ["150", "300"]
    assert [r[r.index("--limit") + 1] for r in others] == ["50", "100"]
    assert all(r[r.index("--methods") + 1] == "self-anchor,structure-only,cot,ps" for r in gsm8k)
    assert all(set(r[1].split(",")) == {"aqua", "math500", "strategyqa", "t4d", "bbh"} for r in others)
    assert all(r[r.index("--methods") + 1] == "self-anchor,structure-only,cot" for r in others)
    assert all(r[r.index("--batch") + 1] == "8" and r[r.index("--max-new-tokens") + 1] == "512" for r in runs)
    assert not any("--worked-example" in r for r in runs)
    assert all("--worked-example" in r for r in final.commands(worked_example=True))


def test_the_final_run_refuses_a_default_that_is_not_the_winner() -> None:
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    final = _script("final_run")
    shown = SelfAnchorChain.model_fields["worked_example"].default
    # the chain's defaults are compared with the winner's settings, field by field
    assert final.default_mismatches({"worked_example": shown, "reasoning_scope": "question+plan"}) == []
    mismatched = final.default_mismatches({"worked_example": not shown, "reasoning_scope": "question+plan"})
    assert [m.split(":")[0] for m in mismatched] == ["worked_example"]
    assert "step_strength" in "".join(final.default_mismatches({"step_strength": {"plan": 0.25}}))
    with pytest.raises(SystemExit, match="not a Self-Anchor variant"):
        final.winner_settings("cot")


def test_the_final_run_saves_its_logs_so_far_without_a_winner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gzip

    final = _script("final_run")
    runs, logs = tmp_path / "final", tmp_path / "logs"
    (runs / "m-bfloat16" / "gsm8k").mkdir(parents=True)
    (runs / "m-bfloat16" / "gsm8k" / "cot.jsonl").write_text('{"id": "q1", "correct": true}\n')
    (runs / "m-bfloat16" / "run.json").write_text("{}")
    monkeypatch.setattr(final, "RUNS", runs)
    monkeypatch.setattr(final, "LOGS", logs)
    assert final.main(["--save"]) == 0
    saved = logs / "m-bfloat16" / "gsm8k" / "cot.jsonl.gz"
    assert gzip.decompress(saved.read_bytes()) == b'{"id": "q1", "correct": true}\n'
    assert (logs / "m-bfloat16" / "run.json").read_text() == "{}"
    with pytest.raises(SystemExit):  # anything else needs the winner
        final.main(["--dry-run"])


def test_the_confirmation_table_reports_pools_so_far_and_pairs_with_structure(
    select: ModuleType, tmp_path: Path
) -> None:
    import json

    out = tmp_path / "m-bfloat16"
    (out / "gsm8k").mkdir(parents=True)
    ids = [f"q{i}" for i in range(4)]
    rows = {"structure": [True, False, False, True], "sa-x": [True, True, False]}  # sa-x: 3 of 4 items so far
    for name, correct in rows.items():
        lines = [json.dumps({"id": i, "correct": c}) for i, c in zip(ids, correct, strict=False)]
        (out / "gsm8k" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    table = select.confirmation_table(out, {"gsm8k": ids}, ["sa-x", "structure"]).splitlines()
    assert table[2].startswith("| sa-x | 2/3 (so far) [")
    assert table[2].endswith("| - | 1 / 0 (1.00) |")  # no complete pool yet; q1 only it, none only structure
    assert table[3].startswith("| structure | 2/4 [") and "50.0% (1 pools)" in table[3]
