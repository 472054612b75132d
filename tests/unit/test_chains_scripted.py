"""The reasoning chain on a tiny model whose words are scripted: the engine, both branches and the KV cache run for
real (a random 2-layer Llama), but each next token is forced from a script, so the chain's own logic is checked
in seconds: step detection, the anchors of each step, ω per step, the format retry and the streaming order."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
import torch

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"
SOLVE = (
    " add the apples\nReasoning 1: 3 + 5 = 8\nPlan 2: state the total\nReasoning 2: Tom has 8 apples\nFinal Answer: 8"
)
UNFORMATTED = " I think Tom has 8 apples."


class ScriptedModel(torch.nn.Module):
    """A causal LM whose next token follows a script (one script per prefill, in order), computed by a real model.

    The forced logits are a margin of 10 over every other token, so the original branch's confidence is about
    0.99 and steering never changes the choice. The script index of a row is its position past the prompt, the
    prompt's length being read off the last prefill from position 0 (the shared-prefix cache is off).
    """

    def __init__(self, inner: Any, tokenizer: Any, scripts: Sequence[str]) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.generation_config = inner.generation_config
        eos = tokenizer.eos_token_id
        self.scripts = [[*tokenizer(s, add_special_tokens=False)["input_ids"], eos] for s in scripts]
        self.passes = -1  # which script the current pass follows
        self.prompt_len = 0

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        **kwargs: Any,
    ) -> Any:
        assert position_ids is not None
        out = self.inner(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, **kwargs
        )
        if input_ids.shape[1] > 1 and int(position_ids[0, 0]) == 0:  # the original branch's prefill of a new pass
            self.passes += 1
            self.prompt_len = int(position_ids[0, -1]) + 1
        script = self.scripts[min(self.passes, len(self.scripts) - 1)]
        forced = torch.full_like(out.logits[:, -1, :], -5.0)
        for row in range(forced.shape[0]):
            k = int(position_ids[row, -1]) + 1 - self.prompt_len
            forced[row, script[min(k, len(script) - 1)]] = 5.0
        out.logits = torch.cat([out.logits[:, :-1, :], forced.unsqueeze(1)], dim=1)
        return out


def _llm(tiny_model: Any, byte_tokenizer: Any, *scripts: str) -> Any:
    from selfanchor_chains import SteeredHFLLM

    llm = SteeredHFLLM(model=ScriptedModel(tiny_model, byte_tokenizer, scripts), tokenizer=byte_tokenizer)
    llm.runtime.decoder.prefix_cache.max_tokens = 0  # every pass prefills its prompt from position 0
    return llm


def test_steps_are_detected_with_their_kinds_texts_and_answer(long_context_model: Any, byte_tokenizer: Any) -> None:
    from selfanchor_chains import SelfAnchorChain

    out = SelfAnchorChain(
        llm=_llm(long_context_model, byte_tokenizer, SOLVE), bench="gsm8k", max_new_tokens=200
    ).invoke(QUESTION)
    assert [(s["kind"], s["index"]) for s in out["steps"]] == [
        ("plan", 1),
        ("reasoning", 1),
        ("plan", 2),
        ("reasoning", 2),
        ("final", 1),
    ]
    assert out["text"] == "Plan 1:" + SOLVE
    assert out["answer"] == "8"
    assert out["finish_reason"] == "final_answer" and not out["retried"]  # the chain stops after the answer line
    assert "3 + 5 = 8" in out["steps"][1]["text"]


def test_plans_anchor_the_question_and_reasoning_its_plan(long_context_model: Any, byte_tokenizer: Any) -> None:
    from selfanchor_chains import SelfAnchorChain

    out = SelfAnchorChain(llm=_llm(long_context_model, byte_tokenizer, SOLVE), max_new_tokens=200).invoke(QUESTION)
    plan1, reason1, plan2, reason2, final = out["steps"]
    assert plan1["anchors"] == [QUESTION] and plan2["anchors"] == [QUESTION]
    assert reason1["anchors"][0] == QUESTION and "add the apples" in reason1["anchors"][1]
    assert "state the total" in reason2["anchors"][1] and "add the apples" not in " ".join(reason2["anchors"])
    assert final["anchors"][0] == QUESTION  # the final line: the question and the last plan
    assert "state the total" in final["anchors"][1]


def test_omega_follows_the_schedule_step_by_step(long_context_model: Any, byte_tokenizer: Any) -> None:
    from selfanchor_chains import SelfAnchorChain
    from selfanchor_chains.reasoning.schedules import ConfidenceOmega, ConstantOmega

    llm = _llm(long_context_model, byte_tokenizer, SOLVE)
    constant = SelfAnchorChain(llm=llm, schedule=ConstantOmega(1.7), max_new_tokens=200).invoke(QUESTION)
    assert {s["omega"] for s in constant["steps"]} == {1.7}
    llm = _llm(long_context_model, byte_tokenizer, SOLVE)
    adaptive = SelfAnchorChain(llm=llm, schedule=ConfidenceOmega(), max_new_tokens=200).invoke(QUESTION)
    steps = adaptive["steps"]
    assert all(0.9 < s["confidence"] <= 1.0 for s in steps)  # the script's margin: the model is sure
    # The first step has no confidence yet (ω_init); each later one is steered by the confidence of the step before
    # it, ω = 1 + 0.5·(1 − c): a sure model only a little.
    schedule = ConfidenceOmega()
    assert steps[0]["omega"] == pytest.approx(schedule.omega_init)
    for before, step in itertools.pairwise(steps):
        assert step["omega"] == pytest.approx(1 + 0.5 * (1 - before["confidence"]), abs=1e-4)


def test_an_unformatted_solve_is_retried_once_with_the_reminder(long_context_model: Any, byte_tokenizer: Any) -> None:
    from selfanchor_chains import SelfAnchorChain

    llm = _llm(long_context_model, byte_tokenizer, UNFORMATTED, SOLVE)
    chunks = list(SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=200, format_retries=1).stream(QUESTION))
    kinds = [next(iter(c)) for c in chunks]
    assert kinds.count("retry") == 1 and kinds[-1] == "output"
    assert chunks[kinds.index("retry")]["retry"]["text"] == "Plan 1:" + UNFORMATTED
    out = chunks[-1]["output"]
    assert out["retried"] and out["answer"] == "8" and out["text"] == "Plan 1:" + SOLVE
    no_retry = SelfAnchorChain(
        llm=_llm(long_context_model, byte_tokenizer, UNFORMATTED), max_new_tokens=200, format_retries=0
    )
    assert not no_retry.invoke(QUESTION)["retried"]


def test_stream_gives_tokens_then_each_step_as_it_ends_then_the_output(
    long_context_model: Any, byte_tokenizer: Any
) -> None:
    from selfanchor_chains import SelfAnchorChain

    chain = SelfAnchorChain(llm=_llm(long_context_model, byte_tokenizer, SOLVE), max_new_tokens=200)
    chunks = list(chain.stream(QUESTION))
    tokens = "".join(c["token"] for c in chunks if "token" in c)
    assert tokens == SOLVE
    steps = [c["step"] for c in chunks if "step" in c]
    assert [s["kind"] for s in steps] == ["plan", "reasoning", "plan", "reasoning", "final"]
    assert "output" in chunks[-1] and [s["text"] for s in chunks[-1]["output"]["steps"]] == [s["text"] for s in steps]
    # A step is reported once its text is complete: after the tokens that end it, before the ones after it.
    streamed = ""
    for chunk in chunks:
        if "token" in chunk:
            streamed += chunk["token"]
        elif "step" in chunk and chunk["step"]["kind"] != "final":
            assert chunk["step"]["text"].strip() in ("Plan 1:" + streamed)


@pytest.mark.parametrize("method", ["cot", "ps"])
def test_baselines_keep_one_step_and_find_the_answer(long_context_model: Any, byte_tokenizer: Any, method: str) -> None:
    from selfanchor_chains.reasoning.methods import make_chain

    text = " Tom has 3 + 5 = 8 apples.\nFinal Answer: 8"
    out = make_chain(method, _llm(long_context_model, byte_tokenizer, text), bench="gsm8k", max_new_tokens=100).invoke(
        QUESTION
    )
    assert out["answer"] == "8" and not out["retried"]
    assert {s["omega"] for s in out["steps"]} == {1.0}


class _LLMRunLog:
    """What a callback handler sees of the chain's child LLM runs: starts, tokens, ends and errors, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def tokens(self) -> str:
        return "".join(text for kind, text in self.events if kind == "token")


def _sync_handler(log: _LLMRunLog) -> Any:
    from langchain_core.callbacks import BaseCallbackHandler

    class Handler(BaseCallbackHandler):
        def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
            log.events.append(("start", prompts[0]))

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            log.events.append(("token", token))

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            log.events.append(("end", response.generations[0][0].text))

        def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            log.events.append(("error", error))

    return Handler()


def _async_handler(log: _LLMRunLog) -> Any:
    from langchain_core.callbacks import AsyncCallbackHandler

    class Handler(AsyncCallbackHandler):
        async def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
            log.events.append(("start", prompts[0]))

        async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            log.events.append(("token", token))

        async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            log.events.append(("end", response.generations[0][0].text))

        async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            log.events.append(("error", error))

    return Handler()


def test_each_face_reports_one_child_llm_run_fed_its_tokens(long_context_model: Any, byte_tokenizer: Any) -> None:
    import asyncio

    from selfanchor_chains import SelfAnchorChain

    chain = SelfAnchorChain(llm=_llm(long_context_model, byte_tokenizer, SOLVE), max_new_tokens=200)
    faces = {
        "invoke": lambda log: chain.invoke(QUESTION, {"callbacks": [_sync_handler(log)]}),
        "stream": lambda log: list(chain.stream(QUESTION, {"callbacks": [_sync_handler(log)]}))[-1]["output"],
        "ainvoke": lambda log: asyncio.run(chain.ainvoke(QUESTION, {"callbacks": [_async_handler(log)]})),
        "astream": lambda log: asyncio.run(_last_output(chain.astream(QUESTION, {"callbacks": [_async_handler(log)]}))),
    }
    for face, call in faces.items():
        log = _LLMRunLog()
        out = call(log)
        kinds = [kind for kind, _ in log.events]
        assert kinds[0] == "start" and kinds[-1] == "end" and "error" not in kinds, face
        assert log.events[0][1] == QUESTION and log.tokens() == SOLVE == log.events[-1][1][len("Plan 1:") :], face
        assert out["answer"] == "8", face


async def _last_output(chunks: Any) -> Any:
    return [c async for c in chunks][-1]["output"]


def test_a_failing_solve_reports_the_error_to_its_child_run(long_context_model: Any, byte_tokenizer: Any) -> None:
    from selfanchor_chains import SelfAnchorChain

    class Broken(RuntimeError):
        pass

    llm = _llm(long_context_model, byte_tokenizer, SOLVE)
    model = llm.runtime.model
    forward = model.forward
    calls = itertools.count()

    def failing_forward(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == 5:
            raise Broken("the device went away")
        return forward(*args, **kwargs)

    model.forward = failing_forward
    log = _LLMRunLog()
    with pytest.raises(Broken):
        SelfAnchorChain(llm=llm, max_new_tokens=200).invoke(QUESTION, {"callbacks": [_sync_handler(log)]})
    kinds = [kind for kind, _ in log.events]
    assert kinds[0] == "start" and kinds[-1] == "error" and "end" not in kinds
    assert isinstance(log.events[-1][1], Broken)


def test_an_abandoned_astream_releases_the_model(long_context_model: Any, byte_tokenizer: Any) -> None:
    import asyncio

    from selfanchor_chains import SelfAnchorChain

    chain = SelfAnchorChain(llm=_llm(long_context_model, byte_tokenizer, SOLVE, SOLVE), max_new_tokens=200)

    async def first_token_then_walk_away() -> str:
        stream = chain.astream(QUESTION)
        async for chunk in stream:
            if "token" in chunk:
                await stream.aclose()
                return str(chunk["token"])
        raise AssertionError("no token streamed")

    assert asyncio.run(first_token_then_walk_away())
    # The walked-away decode freed the model: a new call decodes to the end (a held lock would block it forever).
    assert chain.invoke(QUESTION)["answer"] == "8"


def test_prompt_ids_are_what_a_solve_starts_from(long_context_model: Any, byte_tokenizer: Any) -> None:
    from selfanchor_chains import SelfAnchorChain

    llm = _llm(long_context_model, byte_tokenizer, SOLVE)
    chain = SelfAnchorChain(llm=llm, max_new_tokens=200)
    ids = chain.prompt_ids(QUESTION)
    text = byte_tokenizer.decode(ids)
    assert text.endswith("Plan 1:") and QUESTION in text
    assert chain.invoke(QUESTION)["usage"]["prompt_tokens"] == len(ids)
