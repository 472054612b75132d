"""The command line refuses bad arguments with one clear line and a non-zero exit, before loading any model."""

from __future__ import annotations

from typing import Any

import pytest

from selfanchor_chains import cli


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    from selfanchor_chains import models

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(models.loading, "load_model_and_tokenizer", refuse)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", ""], "must not be empty"),
        (["solve", "  "], "must not be empty"),
        (["solve", "2+2?", "--bench", "nosuch"], "unknown benchmark"),
        (["solve", "2+2?", "--max-new-tokens", "0"], "must be >= 1"),
        (["generate", "x", "--omega", "nan"], "finite number"),
        (["generate", "x", "--omega", "-1"], "finite number"),
        (["generate", "x", "--temperature", "-1"], "finite number"),
        (["generate", "x", "--top-p", "0"], "finite number"),
        (["eval", "mbpp", "--methods", "code-anchored@0.5"], "finite number >= 1"),
        (["eval", "mbpp", "--methods", "code-anchored@inf"], "finite number >= 1"),
        (["eval", "conflictqa", "--methods", "rag-anchored-top1-only@inf"], "finite number >= 1"),
        (["eval", "conflictqa", "--methods", "rag-adaptive@nan"], "finite number >= 1"),
        (["eval", "mbpp", "--methods", "code-plain", "--limit", "0"], "must be >= 1"),
    ],
)
@pytest.mark.usefixtures("no_model_loading")
def test_bad_arguments_are_refused_by_the_parser(argv: list[str], message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "x <anchor>y"], "AnchorMarkupError"),
        (["generate", "hello world", "--anchor", "zzz"], "AnchorNotFoundError"),
    ],
)
@pytest.mark.usefixtures("no_model_loading")
def test_bad_input_is_one_line_before_loading(argv: list[str], message: str, capsys: Any) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("selfanchor: error:") and message in err[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", "2+2?", "--model", "nosuchmodel"], "not a registry model"),
        (["solve", "2+2?", "--model", "./no/such/folder"], "No model folder"),
    ],
)
def test_an_unknown_model_is_one_line(argv: list[str], message: str, capsys: Any) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("selfanchor: error:") and message in err[-1] and "Traceback" not in "".join(err)


@pytest.mark.usefixtures("no_model_loading")
def test_debug_shows_the_traceback() -> None:
    from selfanchor_chains.prompting.markup import AnchorMarkupError

    with pytest.raises(AnchorMarkupError):
        cli.main(["--debug", "generate", "x <anchor>y"])


def test_eval_with_an_unknown_model_is_one_line_and_writes_nothing(tmp_path: Any, capsys: Any) -> None:
    out = tmp_path / "out"
    assert cli.main(["eval", "gsm8k", "--model", "nosuchmodel", "--limit", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "not a registry model" in err[-1] and "Traceback" not in "".join(err)
    assert not list(out.rglob("*.jsonl"))
