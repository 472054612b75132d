"""Continuous batching in the reasoning chains (tiny random model, float32): problems stream through a few slots,
each solve identical to solving it alone, whatever joined or left around it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

QUESTIONS = [
    "Tom has 3 apples and buys 5 more. How many apples?",
    "What is 12 times 4?",
    "A train leaves at 3 pm and arrives at 7 pm. How long is the trip?",
    "Is a whale a fish?",
    "Sum the numbers 1 to 10.",
]


@pytest.fixture(scope="module")
def llm(byte_tokenizer: Any) -> Any:
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from tests.conftest import build_long_context_llama

    model = build_long_context_llama(len(byte_tokenizer), initializer_range=0.5)  # its own: the test edits EOS
    llm = SteeredHFLLM(model=model, tokenizer=byte_tokenizer, model_id="tiny")
    # Rows of different lengths: end a row at a byte the random model emits at different points of each solve.
    probe = [r.token_ids for r in llm.runtime.decoder.generate(_rows(llm), max_new_tokens=14)]

    def first_positions(token: int) -> list[int]:
        return [p.index(token) if token in p else len(p) for p in probe]

    candidates = {t for p in probe for t in p}
    spread = max(candidates, key=lambda t: (min(first_positions(t)) >= 2, len(set(first_positions(t)))))
    llm.runtime.decoder.eos_token_ids = frozenset({spread})
    return llm


def _rows(llm: Any) -> list[Any]:
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    chain = SelfAnchorChain(llm=llm, max_new_tokens=14, worked_example=False)  # short prompts, whatever the default
    return chain._rows([chain._build(i, chain._coerce(q)) for i, q in enumerate(QUESTIONS)])


@pytest.mark.parametrize("retries", [0, 1])
def test_continuous_solves_equal_solving_each_alone(llm: Any, retries: int) -> None:
    from selfanchor_chains.reasoning.chains import SelfAnchorChain
    from selfanchor_chains.reasoning.schedules import ConstantOmega

    def chain(**kwargs: Any) -> Any:
        return SelfAnchorChain(
            llm=llm,
            max_new_tokens=14,
            schedule=ConstantOmega(1.5),
            format_retries=retries,
            worked_example=False,  # the probe's prompts (see _rows), whatever the default
            **kwargs,
        )

    alone = [chain().invoke(q) for q in QUESTIONS]
    lengths = {o["usage"]["completion_tokens"] for o in alone}
    assert len(lengths) > 1  # rows end at different steps, so places free up mid-decode
    sessions: list[Any] = []
    start = llm.runtime.decoder.start

    def counting_start(*args: Any, **kwargs: Any) -> Any:
        sessions.append(start(*args, **kwargs))
        return sessions[-1]

    llm.runtime.decoder.start = counting_start
    try:
        streamed = chain(batch_size=2).batch(QUESTIONS)
    finally:
        del llm.runtime.decoder.start
    # One decode session: problems (and retries) joined it as places freed up, two at a time at most.
    assert len(sessions) == 1 and sessions[0].row_count == len(QUESTIONS) * (1 + retries)
    for a, b in zip(alone, streamed, strict=True):
        assert (a["text"], a["retried"], a["finish_reason"]) == (b["text"], b["retried"], b["finish_reason"])
        exact = ("kind", "index", "text", "omega", "anchors", "tokens", "changed")
        assert [{k: x[k] for k in exact} for x in a["steps"]] == [{k: x[k] for k in exact} for x in b["steps"]]
        for x, y in zip(a["steps"], b["steps"], strict=True):  # float sums over differently padded batches
            assert x["confidence"] == pytest.approx(y["confidence"], abs=1e-6)
            assert x["kl"] == pytest.approx(y["kl"], abs=1e-6)
        assert a["usage"]["completion_tokens"] == b["usage"]["completion_tokens"]
    # The async path and as_completed give the same outputs; as_completed yields each problem once.
    assert [o["text"] for o in asyncio.run(chain(batch_size=2).abatch(QUESTIONS))] == [o["text"] for o in alone]
    seen = dict(chain(batch_size=3).as_completed(QUESTIONS))
    assert sorted(seen) == list(range(len(QUESTIONS)))
    assert [seen[i]["text"] for i in range(len(QUESTIONS))] == [o["text"] for o in alone]


def test_continuous_stream_reports_every_problem_in_order_of_finishing(llm: Any) -> None:
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    chain = SelfAnchorChain(llm=llm, max_new_tokens=14, batch_size=2, format_retries=0)
    order = [i for i, _ in chain.as_completed(QUESTIONS)]
    assert sorted(order) == list(range(len(QUESTIONS)))
    with pytest.raises(ValueError):
        SelfAnchorChain(llm=llm, batch_size=0)
