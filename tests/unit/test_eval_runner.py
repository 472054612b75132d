"""selfanchor eval: resumable, interleaved runs over fake chains (and one tiny random model), CLI parsing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from selfanchor_chains.cli.eval_commands import add_eval_commands, cmd_eval
from selfanchor_chains.eval import (
    IncompatibleRunError,
    MethodSpec,
    ResultsFileError,
    SteeringRequiredError,
    parse_benches,
    parse_methods,
    pending_items,
    read_records,
    render_baseline_prompt,
    run_eval,
)

GSM8K = [{"id": f"gsm8k/test/{i:04d}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(7)]
BBH = [
    {"id": f"bbh/{task}/{i:03d}", "task": task, "question": f"{task} question {i}", "answer": answer}
    for i in range(3)
    for task, answer in (("boolean_expressions", "True"), ("object_counting", str(i + 1)))
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for bench, records in (("gsm8k", GSM8K), ("bbh", BBH)):
        (root / bench).mkdir(parents=True)
        (root / bench / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


GOLD = {r["question"]: r["answer"] for r in GSM8K + BBH}


class Interrupted(Exception):
    pass


class FakeFactory:
    """Chains that answer from a lookup table; ``good`` is always right, ``bad`` right on every other item.

    ``fail_after``: raise on that many-th ``batch`` call (counted over all chains), as a killed run would stop.
    """

    def __init__(self, fail_after: int | None = None, error: type[BaseException] = Interrupted) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []
        self.fail_after = fail_after
        self.error = error

    def __call__(self, method: str, bench: str) -> Any:
        factory = self

        class Chain:
            def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
                if factory.fail_after is not None and len(factory.calls) >= factory.fail_after:
                    raise factory.error
                factory.calls.append((method, bench, [i["question"] for i in inputs]))
                outputs = []
                for item in inputs:
                    gold = GOLD[item["question"]]
                    right = method == "good" or sum(map(ord, item["question"])) % 2 == 0
                    answer = gold if right else "999"
                    outputs.append(
                        {
                            "answer": answer,
                            "text": f"Plan 1: add.\nFinal Answer: {answer}",
                            "steps": [
                                {
                                    "kind": "plan",
                                    "index": 1,
                                    "text": "x",
                                    "omega": 1.5,
                                    "confidence": 0.9,
                                    "anchors": [],
                                    "tokens": 3,
                                }
                            ],
                            "finish_reason": "final_answer",
                            "usage": {"prompt_tokens": 20, "completion_tokens": 7},
                            "retried": False,
                        }
                    )
                return outputs

        return Chain()


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_records(path)]


def _raw_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def _run(out: Path, data_dir: Path, factory: Any, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"data_dir": data_dir, "batch_size": 2, "progress": False, "limit": 5}
    options.update(kwargs)
    methods = options.pop("methods", "good,bad")
    return run_eval("gsm8k,bbh", methods, factory, out, **options)


def test_complete_run_writes_records(tmp_path: Path, data_dir: Path) -> None:
    summary = _run(tmp_path / "out", data_dir, FakeFactory())
    assert {b: {m: s["n"] for m, s in by.items()} for b, by in summary.items()} == {
        "gsm8k": {"good": 5, "bad": 5},
        "bbh": {"good": 5, "bad": 5},
    }
    assert summary["gsm8k"]["good"]["accuracy"] == 1.0
    record = read_records(tmp_path / "out" / "gsm8k" / "good.jsonl")[0]
    assert record["id"] == "gsm8k/test/0000" and record["prediction"] == "0" and record["gold"] == "0"
    assert record["correct"] is True and record["tokens"] == 7 and record["prompt_tokens"] == 20
    assert record["steps"] == [{"kind": "plan", "omega": 1.5, "confidence": 0.9, "tokens": 3}]
    assert record["finish_reason"] == "final_answer" and record["retried"] is False and record["seconds"] >= 0
    bbh = read_records(tmp_path / "out" / "bbh" / "bad.jsonl")
    assert {r["task"] for r in bbh} == {"boolean_expressions", "object_counting"}  # limit spread over tasks
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["commands"][0]["status"] == "completed" and info["commands"][0]["new_items"] == 20
    assert info["settings"]["split"] == "dev" and info["package_version"]


def test_methods_interleave_per_batch(tmp_path: Path, data_dir: Path) -> None:
    factory = FakeFactory()
    _run(tmp_path / "out", data_dir, factory)
    gsm = [c for c in factory.calls if c[1] == "gsm8k"]
    assert [c[0] for c in gsm] == ["good", "bad"] * 3
    for first, second in zip(gsm[::2], gsm[1::2], strict=True):
        assert first[2] == second[2]  # both methods on the same items before the next batch
    assert [len(c[2]) for c in gsm[::2]] == [2, 2, 1]


@pytest.mark.parametrize("fail_after", [1, 3, 6])
def test_interrupted_run_resumes_without_duplicates(tmp_path: Path, data_dir: Path, fail_after: int) -> None:
    reference = _run(tmp_path / "ref", data_dir, FakeFactory())
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        _run(out, data_dir, FakeFactory(fail_after=fail_after))
    # Batches done before the failure are on disk; methods never differ by more than the batch in flight.
    done = {(b, m): len(_ids(out / b / f"{m}.jsonl")) for b in ("gsm8k", "bbh") for m in ("good", "bad")}
    assert sum(done.values()) == {1: 2, 3: 6, 6: 10}[fail_after]  # gsm8k's third batch holds one item
    assert abs(done["gsm8k", "good"] - done["gsm8k", "bad"]) <= 2
    info = json.loads((out / "run.json").read_text())
    assert info["commands"][0]["status"].startswith("failed")
    resumed_factory = FakeFactory()
    resumed = _run(out, data_dir, resumed_factory)
    assert {b: {m: (s["n"], s["correct"]) for m, s in by.items()} for b, by in resumed.items()} == {
        b: {m: (s["n"], s["correct"]) for m, s in by.items()} for b, by in reference.items()
    }
    for bench in ("gsm8k", "bbh"):
        for method in ("good", "bad"):
            ids = _raw_ids(out / bench / f"{method}.jsonl")
            assert len(ids) == len(set(ids)) == 5
            assert sorted(ids) == sorted(_raw_ids(tmp_path / "ref" / bench / f"{method}.jsonl"))
    assert sum(len(qs) for _, _, qs in resumed_factory.calls) == 20 - sum(done.values())  # nothing solved twice
    info = json.loads((out / "run.json").read_text())
    assert [c["status"] for c in info["commands"]][-1] == "completed" and len(info["commands"]) == 2


def test_rerun_of_a_complete_run_does_nothing(tmp_path: Path, data_dir: Path) -> None:
    _run(tmp_path / "out", data_dir, FakeFactory())
    again = FakeFactory()
    summary = _run(tmp_path / "out", data_dir, again)
    assert again.calls == []
    assert all(s["new"] == 0 and s["n"] == 5 for by in summary.values() for s in by.values())


def test_half_written_last_line_is_ignored_and_repaired(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    _run(out, data_dir, FakeFactory())
    path = out / "gsm8k" / "bad.jsonl"
    text = path.read_text()
    last_start = text.rstrip("\n").rfind("\n") + 1
    path.write_text(text[: last_start + 25])  # the last record cut mid-write
    assert len(read_records(path)) == 4
    factory = FakeFactory()
    _run(out, data_dir, factory)
    assert [(m, b, len(q)) for m, b, q in factory.calls] == [("bad", "gsm8k", 1)]
    assert path.read_text() == text  # the cut line is replaced by the same record


def test_complete_last_line_without_newline_is_kept(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    _run(out, data_dir, FakeFactory(), limit=3)
    path = out / "gsm8k" / "good.jsonl"
    path.write_text(path.read_text().rstrip("\n"))
    _run(out, data_dir, FakeFactory(), limit=4)
    ids = _raw_ids(path)
    assert len(ids) == len(set(ids)) == 4


def test_corrupt_line_inside_a_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ResultsFileError, match=r"x\.jsonl:2"):
        read_records(path)


def test_per_method_cap_takes_the_first_items(tmp_path: Path, data_dir: Path) -> None:
    factory = FakeFactory()
    summary = run_eval(
        "gsm8k", "good,bad:3", factory, tmp_path / "out", data_dir=data_dir, batch_size=2, progress=False
    )
    assert summary["gsm8k"]["good"]["n"] == 7 and summary["gsm8k"]["bad"]["n"] == 3
    assert _ids(tmp_path / "out" / "gsm8k" / "bad.jsonl") == [r["id"] for r in GSM8K[:3]]


def test_incompatible_folder_is_refused(tmp_path: Path, data_dir: Path) -> None:
    _run(tmp_path / "out", data_dir, FakeFactory(), model_name="m1")
    with pytest.raises(IncompatibleRunError, match="model"):
        _run(tmp_path / "out", data_dir, FakeFactory(), model_name="m2")
    with pytest.raises(IncompatibleRunError, match="max_new_tokens"):
        _run(tmp_path / "out", data_dir, FakeFactory(), model_name="m1", max_new_tokens=7)


def test_plain_llm_runs_unsteered_baselines(tmp_path: Path, data_dir: Path) -> None:
    from langchain_core.language_models import FakeListChatModel, FakeListLLM

    llm = FakeListLLM(responses=["2 + 2 = 4.\nFinal Answer: 4"])
    with pytest.raises(SteeringRequiredError, match="self-anchor"):
        run_eval("gsm8k", "cot,self-anchor", llm, tmp_path / "o1", data_dir=data_dir, progress=False)
    summary = run_eval("gsm8k", "cot,ps", llm, tmp_path / "o1", data_dir=data_dir, limit=3, progress=False)
    assert summary["gsm8k"]["cot"]["n"] == 3 and summary["gsm8k"]["cot"]["correct"] == 1  # gold 0, 2, 4
    record = read_records(tmp_path / "o1" / "gsm8k" / "ps.jsonl")[2]
    assert record["prediction"] == "4" and record["correct"] is True  # item 2: 2 + 2
    assert record["text"].startswith("Let's first understand the problem")
    chat = FakeListChatModel(responses=["Final Answer: 2"])
    run_eval("gsm8k", "cot", chat, tmp_path / "o2", data_dir=data_dir, limit=2, progress=False)
    records = read_records(tmp_path / "o2" / "gsm8k" / "cot.jsonl")
    assert [r["correct"] for r in records] == [False, True]


def test_baseline_prompt_has_hint_question_and_prefix() -> None:
    prompt = render_baseline_prompt("cot", "bbh", "Is x < y?", task="navigate")
    assert "Never write code" in prompt and "Give the final answer as Yes or No." in prompt
    assert "Is x < y?" in prompt and prompt.endswith("Let's think step by step.\n")
    assert "commonsense" in render_baseline_prompt("ps", "strategyqa", "q")


@pytest.fixture(scope="module")
def long_context_tiny_model(long_context_model: Any) -> Any:
    """A 1-layer random Llama whose context holds the methods' prompts (byte tokens: ~600 of them)."""
    return long_context_model


def test_tiny_model_end_to_end(
    tmp_path: Path, data_dir: Path, long_context_tiny_model: Any, byte_tokenizer: Any
) -> None:
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=long_context_tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    summary = run_eval(
        "gsm8k",
        "self-anchor,cot",
        llm,
        tmp_path / "out",
        data_dir=data_dir,
        limit=2,
        batch_size=2,
        max_new_tokens=6,
        progress=False,
    )
    assert summary["gsm8k"]["self-anchor"]["n"] == 2 and summary["gsm8k"]["cot"]["n"] == 2
    for record in read_records(tmp_path / "out" / "gsm8k" / "self-anchor.jsonl"):
        assert record["text"].startswith("Plan 1:") and 0 < record["tokens"] <= 6 and record["prompt_tokens"] > 0
        assert record["steps"] and record["steps"][0]["kind"] == "plan"
    assert json.loads((tmp_path / "out" / "run.json").read_text())["model"] == "tiny"


def test_traced_records_keep_each_tokens_steering_and_the_pages_shade_them(
    tmp_path: Path, data_dir: Path, long_context_tiny_model: Any, byte_tokenizer: Any
) -> None:
    from selfanchor_chains.eval.report import write_report
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=long_context_tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    options: dict[str, Any] = {"data_dir": data_dir, "limit": 4, "batch_size": 2, "max_new_tokens": 6}
    run_eval("gsm8k", "self-anchor,cot", llm, tmp_path / "out", progress=False, trace_tokens=True, **options)
    untraced = tmp_path / "plain"
    run_eval("gsm8k", "self-anchor,cot", llm, untraced, progress=False, **options)
    for method in ("self-anchor", "cot"):
        traced = read_records(tmp_path / "out" / "gsm8k" / f"{method}.jsonl")
        plain = read_records(untraced / "gsm8k" / f"{method}.jsonl")
        assert [r["text"] for r in traced] == [r["text"] for r in plain]  # the trace changes no answer
        for record in traced:
            assert len(record["trace"]) == record["tokens"]
            assert (
                "".join(t["text"] for t in record["trace"])
                == record["text"][len(record["text"]) - len("".join(t["text"] for t in record["trace"])) :]
            )
            assert {"kl", "flipped", "omega", "confidence", "original"} <= set(record["trace"][0])
        assert all("trace" not in r for r in plain)
    # A page per disagreement; with the trace its text is shaded token by token.
    from selfanchor_chains.eval.steering_view import render_disagreement_html

    record = read_records(tmp_path / "out" / "gsm8k" / "self-anchor.jsonl")[0]
    page = render_disagreement_html(record["id"], {"self-anchor": record}, "What is 0 + 0?")
    assert page.count('class="tok') == len(record["trace"])
    assert write_report(tmp_path / "out", plots=False, pages=2)["markdown"].is_file()


def test_changed_prompt_is_refused_before_anything_runs(
    tmp_path: Path, data_dir: Path, long_context_tiny_model: Any, byte_tokenizer: Any
) -> None:
    import dataclasses

    from selfanchor_chains.eval.store import IncompatibleRunError
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from selfanchor_chains.prompting.templates import SELF_ANCHOR
    from selfanchor_chains.reasoning.chains import CoTChain, SelfAnchorChain

    llm = SteeredHFLLM(model=long_context_tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    reworded = dataclasses.replace(SELF_ANCHOR, system=SELF_ANCHOR.system.replace("short plans", "brief plans"))

    def factory(template: Any) -> Any:
        def make(method: str, bench: str) -> Any:
            if method == "cot":
                return CoTChain(llm=llm, bench=bench, max_new_tokens=4)
            return SelfAnchorChain(llm=llm, bench=bench, max_new_tokens=4, template=template)

        return make

    out = tmp_path / "out"
    kwargs: dict[str, Any] = {"data_dir": data_dir, "batch_size": 2, "progress": False}
    run_eval("gsm8k", "self-anchor,cot", factory(SELF_ANCHOR), out, limit=2, **kwargs)
    stored = json.loads((out / "run.json").read_text())["fingerprints"]
    assert set(stored) == {"gsm8k/self-anchor", "gsm8k/cot"} and all(len(v) == 16 for v in stored.values())
    # The same configuration resumes; a reworded Self-Anchor prompt is refused, and nothing is written.
    run_eval("gsm8k", "self-anchor,cot", factory(SELF_ANCHOR), out, limit=3, **kwargs)
    before = {m: _raw_ids(out / "gsm8k" / f"{m}.jsonl") for m in ("self-anchor", "cot")}
    assert len(before["self-anchor"]) == 3
    with pytest.raises(IncompatibleRunError, match="gsm8k/self-anchor"):
        run_eval("gsm8k", "self-anchor,cot", factory(reworded), out, limit=4, **kwargs)
    assert {m: _raw_ids(out / "gsm8k" / f"{m}.jsonl") for m in ("self-anchor", "cot")} == before
    # A finished method is not checked (nothing would be appended to it).
    run_eval("gsm8k", "self-anchor", factory(reworded), out, limit=3, **kwargs)
    # Moving the old results away frees the method for its new configuration.
    (out / "gsm8k" / "self-anchor.jsonl").rename(tmp_path / "old-self-anchor.jsonl")
    run_eval("gsm8k", "self-anchor", factory(reworded), out, limit=2, **kwargs)
    assert len(_raw_ids(out / "gsm8k" / "self-anchor.jsonl")) == 2
    stored = json.loads((out / "run.json").read_text())["fingerprints"]
    assert stored["gsm8k/self-anchor"] != stored["gsm8k/cot"]
    with pytest.raises(IncompatibleRunError, match="gsm8k/self-anchor"):
        run_eval("gsm8k", "self-anchor", factory(SELF_ANCHOR), out, limit=3, **kwargs)


def test_fingerprint_tells_methods_and_settings_apart(long_context_tiny_model: Any, byte_tokenizer: Any) -> None:
    from selfanchor_chains.eval.runner import method_fingerprint
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from selfanchor_chains.reasoning.chains import SelfAnchorChain, constant_omega, structure_only

    llm = SteeredHFLLM(model=long_context_tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    chains = [SelfAnchorChain(llm=llm), structure_only(llm), constant_omega(llm, 1.5), constant_omega(llm, 2.0)]
    prints = [method_fingerprint(c, llm, "x", "gsm8k") for c in chains]
    assert len(set(prints)) == 4
    assert method_fingerprint(SelfAnchorChain(llm=llm), llm, "x", "gsm8k") == prints[0]  # stable
    assert method_fingerprint(object(), lambda m, b: None, "x", "gsm8k") is None  # a user's own chain


def _throughput(data_dir: Path, model: Any, tokenizer: Any, modes: Any = ("static",)) -> tuple[Any, Any, list[str]]:
    """The throughput bench on the tiny model: 3 problems in batches of 2, self-anchor and cot, 5 tokens."""
    from selfanchor_chains.bench.speed import run_throughput_bench
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=model, tokenizer=tokenizer, model_id="tiny")
    lines: list[str] = []
    options: dict[str, Any] = {"problems": 3, "batch": 2, "max_new_tokens": 5, "data_dir": str(data_dir)}
    result = run_throughput_bench(llm, methods=["self-anchor", "cot"], modes=modes, log=lines.append, **options)
    return llm, result, lines


def test_throughput_bench_times_methods_side_by_side(
    data_dir: Path, long_context_tiny_model: Any, byte_tokenizer: Any
) -> None:
    llm, result, lines = _throughput(data_dir, long_context_tiny_model, byte_tokenizer)
    assert result["problems"] == 3 and len(lines) == 4  # two batches (2 + 1 problems), two methods each
    for method in ("self-anchor", "cot"):
        assert 0 < result["tokens"][method] <= 3 * 5
        assert result["problems_per_min"][method] == pytest.approx(60 * 3 / result["seconds"][method])
    slowdown = result["slowdown_vs_cot"]
    assert slowdown["cot"] == 1.0
    assert slowdown["self-anchor"] == pytest.approx(result["seconds"]["self-anchor"] / result["seconds"]["cot"])
    # The warm-up stored a shared prompt prefix per method (their system prompts differ).
    assert len(llm.runtime.decoder.prefix_cache.entries) >= 2


@pytest.mark.parametrize("shown", [True, False])
def test_throughput_bench_shows_the_example_as_eval_does(
    shown: bool, monkeypatch: pytest.MonkeyPatch, data_dir: Path, long_context_tiny_model: Any, byte_tokenizer: Any
) -> None:
    from selfanchor_chains.bench.speed import run_throughput_bench
    from selfanchor_chains.eval import method_specs
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    built: list[Any] = []
    make = method_specs._make_chain

    def spy(*args: Any) -> Any:
        built.append(make(*args))
        return built[-1]

    monkeypatch.setattr(method_specs, "_make_chain", spy)
    monkeypatch.setattr(method_specs, "default_worked_example", lambda: shown)
    llm = SteeredHFLLM(model=long_context_tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    options: dict[str, Any] = {"problems": 1, "batch": 1, "max_new_tokens": 2, "data_dir": str(data_dir)}
    run_throughput_bench(llm, methods=["self-anchor", "cot"], log=lambda line: None, **options)
    # by default every method does what SelfAnchorChain does by default, as in an evaluation
    assert [c.worked_example for c in built] == [shown, shown]
    built.clear()
    run_throughput_bench(llm, methods=["cot"], log=lambda line: None, worked_example=not shown, **options)
    assert [c.worked_example for c in built] == [not shown]


def test_throughput_bench_compares_static_and_continuous_batching(
    data_dir: Path, long_context_tiny_model: Any, byte_tokenizer: Any
) -> None:
    from selfanchor_chains.bench.speed import run_throughput_bench

    llm, result, lines = _throughput(data_dir, long_context_tiny_model, byte_tokenizer, ["static", "continuous"])
    assert set(result["seconds"]) == {"self-anchor", "cot", "self-anchor@continuous", "cot@continuous"}
    assert len(lines) == 4 + 2  # two static batches per method, one continuous run per method
    for method in ("self-anchor", "cot"):
        speedup = result["continuous_speedup"][method]
        assert speedup == pytest.approx(result["seconds"][method] / result["seconds"][f"{method}@continuous"])
        # float32: continuous batching changes no answer (each row decodes as it would alone)
        assert result["answers_differ"][method] == 0
        assert result["answers"][method] == result["answers"][f"{method}@continuous"]
    with pytest.raises(ValueError, match="modes"):
        run_throughput_bench(llm, problems=1, data_dir=str(data_dir), modes=["dynamic"])


# -- parsing ---------------------------------------------------------------------------------------------------


def test_parse_methods_with_caps() -> None:
    assert parse_methods("self-anchor,cot,ps,spa:100,structure-only:100") == [
        MethodSpec("self-anchor"),
        MethodSpec("cot"),
        MethodSpec("ps"),
        MethodSpec("spa", 100),
        MethodSpec("structure-only", 100),
    ]
    with pytest.raises(ValueError, match="unknown method 'sc'"):
        parse_methods("cot,sc")
    with pytest.raises(ValueError, match="twice"):
        parse_methods("cot,cot:3")
    with pytest.raises(ValueError, match="method:N"):
        parse_methods("cot:many")
    assert parse_methods("mine:2", known=None) == [MethodSpec("mine", 2)]


def test_parse_benches() -> None:
    assert parse_benches("gsm8k, BBH:navigate,gsm8k,t4d") == ["gsm8k", "bbh:navigate", "t4d"]
    with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'"):
        parse_benches("gsm9k")
    with pytest.raises(ValueError, match="unknown BBH task 'nope'"):
        parse_benches("bbh:nope")
    with pytest.raises(ValueError, match="no tasks"):
        parse_benches("gsm8k:x")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfanchor")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_eval_arguments() -> None:
    args = _parser().parse_args(
        [
            *("eval", "gsm8k,bbh:navigate", "--methods", "self-anchor,cot,spa:100", "--model", "smollm2-135m"),
            *("--limit", "5", "--batch", "4", "--max-new-tokens", "64", "--out", "o", "--seed", "3"),
            *("--dtype", "float32"),
        ]
    )
    assert args.func is cmd_eval and args.benches == ["gsm8k", "bbh:navigate"]
    assert args.methods == [MethodSpec("self-anchor"), MethodSpec("cot"), MethodSpec("spa", 100)]
    assert (args.limit, args.batch, args.max_new_tokens, args.out, args.seed, args.dtype) == (
        5,
        4,
        64,
        "o",
        3,
        "float32",
    )
    defaults = _parser().parse_args(["eval", "aqua"])
    assert [m.name for m in defaults.methods] == ["self-anchor", "cot", "ps", "spa", "structure-only", "constant-omega"]
    assert defaults.split == "dev" and defaults.dtype == "auto" and defaults.progress is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "gsm8k", "--methods", "cot,tot"], "unknown method 'tot'"),
        (["eval", "gsm9k"], "unknown benchmark 'gsm9k'"),
        (["eval", "bbh:nope"], "unknown BBH task 'nope'"),
        (["eval", "gsm8k", "--batch", "0"], "must be >= 1"),
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_reports_data_errors_before_loading_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["eval", "gsm8k", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert args.func(args) == 2
    assert "does not exist" in capsys.readouterr().err


def test_pending_items_counts_what_is_left(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    assert pending_items("gsm8k,bbh", "good,bad:2", out, data_dir=data_dir, limit=5) == 5 + 2 + 5 + 2
    with pytest.raises(Interrupted):
        _run(out, data_dir, FakeFactory(fail_after=3), methods="good,bad:2")
    assert pending_items("gsm8k,bbh", "good,bad:2", out, data_dir=data_dir, limit=5) == 14 - 6


def test_cli_finished_run_needs_no_model(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    run_eval("gsm8k", "cot,ps", FakeFactory(), out, data_dir=data_dir, limit=3, progress=False, model_name="m@float32")
    argv = ["eval", "gsm8k", "--methods", "cot,ps", "--model", "m", "--dtype", "float32", "--limit", "3"]
    args = _parser().parse_args([*argv, "--data-dir", str(data_dir), "--out", str(out), "--no-progress"])
    assert args.func(args) == 0  # "m" is no model anyone could load: nothing was loaded
    assert "gsm8k        cot                   3      0" in capsys.readouterr().out
    info = json.loads((out / "run.json").read_text())
    assert info["commands"][-1]["status"] == "completed" and info["commands"][-1]["new_items"] == 0
    args = _parser().parse_args([*argv, "--data-dir", str(data_dir), "--out", str(out), "--max-new-tokens", "9"])
    assert args.func(args) == 2
    assert "max_new_tokens=512" in capsys.readouterr().err


def test_keyboard_interrupt_is_recorded_and_resumable(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _run(out, data_dir, FakeFactory(fail_after=4, error=KeyboardInterrupt))
    info = json.loads((out / "run.json").read_text())
    assert info["commands"][0]["status"] == "interrupted" and info["commands"][0]["new_items"] == 8
    assert len(_ids(out / "gsm8k" / "good.jsonl")) == len(_ids(out / "gsm8k" / "bad.jsonl")) == 4
    resumed = FakeFactory()
    _run(out, data_dir, resumed)
    assert sum(len(q) for _, _, q in resumed.calls) == 20 - 8


def test_method_names_match_the_main_cli() -> None:
    from selfanchor_chains.cli import METHODS
    from selfanchor_chains.eval import METHOD_NAMES

    assert METHOD_NAMES == METHODS


def test_continuous_run_writes_the_same_results_as_batches(
    tmp_path: Path, data_dir: Path, long_context_tiny_model: Any, byte_tokenizer: Any
) -> None:
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=long_context_tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    kwargs: dict[str, Any] = {"data_dir": data_dir, "batch_size": 2, "max_new_tokens": 6, "progress": False}
    run_eval("gsm8k", "self-anchor,cot", llm, tmp_path / "static", limit=5, **kwargs)
    run_eval("gsm8k", "self-anchor,cot", llm, tmp_path / "continuous", limit=5, continuous=True, **kwargs)
    for method in ("self-anchor", "cot"):
        static = {r["id"]: r for r in read_records(tmp_path / "static" / "gsm8k" / f"{method}.jsonl")}
        streamed = {r["id"]: r for r in read_records(tmp_path / "continuous" / "gsm8k" / f"{method}.jsonl")}
        assert set(static) == set(streamed) and len(static) == 5
        for item, record in static.items():
            assert (record["text"], record["correct"]) == (streamed[item]["text"], streamed[item]["correct"])
    assert json.loads((tmp_path / "continuous" / "run.json").read_text())["settings"]["continuous"] is True


def test_worked_example_reaches_every_method_and_binds_the_folder(
    tmp_path: Path, data_dir: Path, long_context_tiny_model: Any, byte_tokenizer: Any
) -> None:
    from selfanchor_chains.eval.method_specs import WorkedExampleError
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from selfanchor_chains.prompting.templates import WORKED_EXAMPLES

    llm = SteeredHFLLM(model=long_context_tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    options: dict[str, Any] = {"data_dir": data_dir, "limit": 2, "batch_size": 2, "max_new_tokens": 4}
    out = tmp_path / "out"
    run_eval("gsm8k", "self-anchor,structure-only,cot,ps", llm, out, progress=False, worked_example=True, **options)
    with_example = json.loads((out / "run.json").read_text())["fingerprints"]
    run_eval(
        "gsm8k",
        "self-anchor,structure-only,cot,ps",
        llm,
        tmp_path / "plain",
        progress=False,
        worked_example=False,
        **options,
    )
    plain = json.loads((tmp_path / "plain" / "run.json").read_text())["fingerprints"]
    assert all(with_example[key] != plain[key] for key in plain)  # every method was shown the example
    for method in ("self-anchor", "structure-only", "cot", "ps"):
        prompts = [r["prompt_tokens"] for r in read_records(out / "gsm8k" / f"{method}.jsonl")]
        shorter = [r["prompt_tokens"] for r in read_records(tmp_path / "plain" / "gsm8k" / f"{method}.jsonl")]
        assert all(a > b for a, b in zip(prompts, shorter, strict=True))
    # resuming the folder without the example is refused: its methods were run with it
    with pytest.raises(IncompatibleRunError, match="gsm8k/"):
        run_eval("gsm8k", "self-anchor,cot", llm, out, progress=False, worked_example=False, **{**options, "limit": 3})
    assert len(read_records(out / "gsm8k" / "cot.jsonl")) == 2
    # a chain without a worked example is refused before anything runs
    with pytest.raises(WorkedExampleError, match="no worked example"):
        run_eval("gsm8k", "cot", FakeFactory(), tmp_path / "fake", progress=False, worked_example=True, **options)
    assert not (tmp_path / "fake" / "gsm8k").exists()
    assert WORKED_EXAMPLES["number"].question  # the example the gsm8k prompts carry


@pytest.mark.parametrize("shown", [True, False])
def test_by_default_every_method_does_as_self_anchor_does_by_default(
    shown: bool, monkeypatch: pytest.MonkeyPatch, tiny_model: Any, byte_tokenizer: Any
) -> None:
    from selfanchor_chains.eval import method_specs
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    monkeypatch.setattr(method_specs, "default_worked_example", lambda: shown)
    for method in ("self-anchor", "structure-only", "cot", "ps"):
        # None: the package default, the same for every method of the comparison
        assert method_specs._make_chain(llm, method, "gsm8k", 8, None).worked_example is shown
        # an explicit choice overrides it
        assert method_specs._make_chain(llm, method, "gsm8k", 8, not shown).worked_example is not shown
    # a factory's chain has no example to show: left as built when nothing is asked of it
    factory = FakeFactory()
    built = method_specs._make_chain(factory, "cot", "gsm8k", 8, None)
    assert type(built).__qualname__ == type(factory("cot", "gsm8k")).__qualname__  # a class per call
    assert not hasattr(built, "worked_example")
    # a factory of package chains (the study's variants) keeps each chain's own choice unless one is asked
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    def variants(method: str, bench: str) -> SelfAnchorChain:
        return SelfAnchorChain(llm=llm, bench=bench, worked_example=method == "with-example")

    for method in ("with-example", "without"):
        assert method_specs._make_chain(variants, method, "gsm8k", 8, None).worked_example is (method == "with-example")
        assert method_specs._make_chain(variants, method, "gsm8k", 8, not shown).worked_example is not shown


def test_the_cli_passes_the_example_choice_or_none(tmp_path: Path) -> None:
    parse = _parser().parse_args
    assert parse(["eval", "gsm8k"]).worked_example is None
    assert parse(["eval", "gsm8k", "--worked-example"]).worked_example is True
    assert parse(["eval", "gsm8k", "--no-worked-example"]).worked_example is False
    with pytest.raises(SystemExit):
        parse(["eval", "gsm8k", "--worked-example", "--no-worked-example"])


def test_cli_refuses_a_worked_example_on_conflictqa_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["eval", "conflictqa", "--worked-example", "--out", str(tmp_path / "out")])
    assert args.worked_example and args.func(args) == 2
    assert "--worked-example" in capsys.readouterr().err
