"""One results-file line per solved item: prediction, grade, cost and the steps with their steering diagnostics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..answers.code import CODE_BENCHMARKS

STEP_LOG_KEYS = ("kind", "omega", "confidence", "tokens", "changed", "kl")


# -- records -----------------------------------------------------------------------------------------------------


def make_record(
    problem: Any, method: str, output: Mapping[str, Any], seconds: float, bench: str | None = None
) -> dict[str, Any]:
    """One line of a results file: the item's prediction, grade, cost and trace.

    Args:
        problem: The :class:`~selfanchor_chains.eval.datasets.Problem`.
        method: Method name.
        output: The chain's output dict; without ``answer`` the answer is extracted from ``text``.
        seconds: Wall time charged to this item (its batch's time divided by the batch size).
        bench: Benchmark name (default ``problem.bench``).

    Returns:
        ``{id, bench, task, method, prediction, gold, correct, tokens, prompt_tokens, seconds, steps,
        finish_reason, retried, text}``; ``tokens`` are completion tokens, ``steps`` keep kind, ω, confidence
        and tokens of each step; with a traced chain also ``trace``, the steering of every generated token.
    """
    from ..answers import extract_answer, grade

    bench = bench or problem.bench
    text = str(output.get("text") or "")
    if bench in CODE_BENCHMARKS:
        return _code_record(problem, method, output, seconds, bench)
    if "answer" in output:
        prediction = output["answer"]
    else:
        prediction = extract_answer(bench, text, task=problem.task, options=problem.options)
    usage = output.get("usage") or {}
    steps = [{k: step[k] for k in STEP_LOG_KEYS if k in step} for step in output.get("steps") or []]
    graded = grade(bench, prediction, problem.answer, task=problem.task)
    record = {
        "id": problem.id,
        "bench": bench,
        "task": problem.task,
        "method": method,
        "prediction": prediction,
        "gold": problem.answer,
        "correct": graded.correct,
        "tokens": usage.get("completion_tokens"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "seconds": round(seconds, 4),
        "steps": steps,
        "finish_reason": output.get("finish_reason"),
        "retried": bool(output.get("retried", False)),
        "text": text,
    }
    if isinstance(output.get("tokens"), list) and output["tokens"]:  # the chain's per-token trace (trace_tokens)
        record["trace"] = [
            {**token, "kl": round(float(token.get("kl") or 0.0), 6), "confidence": round(float(token["confidence"]), 4)}
            for token in output["tokens"]
        ]
    if graded.error is not None:
        record["grade_error"] = graded.error  # the prediction could not be read; it is graded wrong
    if bench == "conflictqa":
        from .conflict_set import grade_conflict

        record.update(grade_conflict(prediction, problem.extra))
        if output.get("anchored_passage") is not None:  # rag-anchored-top1: which passage the ranker anchored
            record["anchored_passage"] = output["anchored_passage"]
            record["anchored_evidence"] = output["anchored_passage"] == problem.extra.get("evidence_index")
        if output.get("ranked_first") is not None:  # the ranked methods: was the ranker right (accuracy@1)?
            record["ranked_first"] = output["ranked_first"]
            record["ranked_first_is_evidence"] = output["ranked_first"] == problem.extra.get("evidence_index")
    return record


def _code_record(problem: Any, method: str, output: Mapping[str, Any], seconds: float, bench: str) -> dict[str, Any]:
    """A code problem's line: the reply run against the benchmark's tests in the sandbox (``correct`` = Pass@1)."""
    from ..answers.code import grade_code

    text = str(output.get("text") or "")
    graded = grade_code(bench, problem.question, text, problem.extra)
    usage = output.get("usage") or {}
    return {
        "id": problem.id,
        "bench": bench,
        "task": problem.task,
        "method": method,
        "prediction": None,
        "gold": None,  # the reference solution is not logged: the tests are the gold
        "correct": graded["correct"],
        "error_kind": graded["error_kind"],
        "stderr": graded["stderr"],
        "tokens": usage.get("completion_tokens"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "seconds": round(seconds, 4),
        "steps": [],
        "finish_reason": output.get("finish_reason"),
        "retried": False,
        "omega": output.get("omega"),
        "text": text,
    }


def _chain_input(problem: Any) -> dict[str, Any]:
    if problem.bench in CODE_BENCHMARKS:
        from .code_methods import chain_input

        return chain_input(problem)
    if problem.bench == "conflictqa":
        from .conflict_set import chain_input

        return chain_input(problem)
    return {"question": problem.question, "task": problem.task, "options": problem.options}
