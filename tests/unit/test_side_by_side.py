"""Several methods on one question in one engine session (``selfanchor solve --compare``): each method's solve is
the one it makes alone (tiny random model, float32), and the session is shared."""

from __future__ import annotations

from typing import Any

import pytest

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"


@pytest.fixture(scope="module")
def llm(byte_tokenizer: Any) -> Any:
    from selfanchor_chains import SteeredHFLLM
    from tests.conftest import build_long_context_llama

    model = build_long_context_llama(len(byte_tokenizer), initializer_range=0.5)  # output depends on the prompt
    return SteeredHFLLM(model=model, tokenizer=byte_tokenizer, model_id="tiny")


def _chains(llm: Any) -> list[Any]:
    from selfanchor_chains.reasoning.methods import make_chain
    from selfanchor_chains.reasoning.schedules import ConstantOmega

    return [
        make_chain("self-anchor", llm, max_new_tokens=24, schedule=ConstantOmega(1.5), format_retries=0),
        make_chain("cot", llm, max_new_tokens=24),
        make_chain("spa", llm, max_new_tokens=24),
    ]


def test_each_method_solves_as_it_does_alone_in_one_session(llm: Any) -> None:
    from selfanchor_chains.reasoning.side_by_side import solve_side_by_side

    alone = [chain.invoke(QUESTION) for chain in _chains(llm)]
    sessions: list[Any] = []
    start = llm.runtime.decoder.start

    def counting_start(*args: Any, **kwargs: Any) -> Any:
        session = start(*args, **kwargs)
        sessions.append(session)
        return session

    llm.runtime.decoder.start = counting_start
    try:
        pairs = list(solve_side_by_side(_chains(llm), QUESTION))
    finally:
        llm.runtime.decoder.start = start
    assert len(sessions) == 1 and len(sessions[0].results()) == 3  # one engine session, three rows
    outputs = {k: chunk["output"] for k, chunk in pairs if "output" in chunk}
    for k, expected in enumerate(alone):
        got = outputs[k]
        assert (got["text"], got["answer"], got["finish_reason"]) == (
            expected["text"],
            expected["answer"],
            expected["finish_reason"],
        )
        assert [s["omega"] for s in got["steps"]] == [s["omega"] for s in expected["steps"]]
        streamed = "".join(c["token"] for j, c in pairs if j == k and "token" in c)
        assert expected["text"].endswith(streamed)
        last = max(i for i, (j, _) in enumerate(pairs) if j == k)
        assert "output" in pairs[last][1]  # a method's output comes after all its tokens and steps


def test_methods_on_different_budgets_cannot_share_a_session(llm: Any) -> None:
    from selfanchor_chains.reasoning.methods import make_chain
    from selfanchor_chains.reasoning.side_by_side import solve_side_by_side

    mixed = [make_chain("cot", llm, max_new_tokens=8), make_chain("cot", llm, max_new_tokens=9)]
    with pytest.raises(ValueError, match="same LLM and max_new_tokens"):
        list(solve_side_by_side(mixed, QUESTION))
    with pytest.raises(ValueError, match="no methods"):
        list(solve_side_by_side([], QUESTION))


def test_solve_compare_shows_every_method_from_one_session(
    llm: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from selfanchor_chains.cli import commands, main

    monkeypatch.setattr(commands, "load_model", lambda args: (llm.model, llm.tokenizer, {}))
    code = main(["solve", QUESTION, "--compare", "cot,spa", "--plain", "--max-new-tokens", "12"])
    assert code == 0
    shown = capsys.readouterr().out
    assert all(method in shown for method in ("self-anchor", "cot", "spa"))


@pytest.mark.parametrize(
    ("flag", "expected"), [([], None), (["--worked-example"], True), (["--no-worked-example"], False)]
)
def test_solve_compare_shows_every_method_the_same_worked_example(
    llm: Any, monkeypatch: pytest.MonkeyPatch, flag: list[str], expected: bool | None
) -> None:
    from selfanchor_chains.cli import commands, main
    from selfanchor_chains.eval.method_specs import default_worked_example
    from selfanchor_chains.reasoning.methods import make_chain

    built: dict[str, bool] = {}

    def recording_make_chain(method: str, llm_: Any, **kwargs: Any) -> Any:
        chain = make_chain(method, llm_, **kwargs)
        built[method] = chain.worked_example
        return chain

    monkeypatch.setattr(commands, "load_model", lambda args: (llm.model, llm.tokenizer, {}))
    monkeypatch.setattr(commands, "make_chain", recording_make_chain)
    code = main(["solve", QUESTION, "--compare", "cot,ps", "--plain", "--max-new-tokens", "4", *flag])
    assert code == 0
    wanted = default_worked_example() if expected is None else expected
    assert built == {"self-anchor": wanted, "cot": wanted, "ps": wanted}
