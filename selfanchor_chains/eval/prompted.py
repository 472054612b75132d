"""The unsteered baselines (CoT, Plan-and-Solve+) on any LangChain LLM, for comparing against hosted models.

The prompt is the same text the steered chains send (system message with the benchmark's answer hint, the
question, the assistant prefix), rendered as one string, and the answer goes through the same extractor, so the
only difference from :class:`~selfanchor_chains.reasoning.chains.CoTChain` on a local model is the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..reasoning.methods import PROMPTED_METHODS

__all__ = ["PROMPTED_METHODS", "SteeringRequiredError", "make_prompted_chain", "render_baseline_prompt"]


class SteeringRequiredError(ValueError):
    """A method that steers attention (or tracks plan/reasoning steps while decoding) was given a plain LLM."""


def _template(method: str, bench: str) -> Any:
    from ..prompting.templates import baseline_template

    template = baseline_template(method, bench)
    if template is not None:
        return template
    raise SteeringRequiredError(
        f"method {method!r} needs a SteeredHFLLM (it steers attention or tracks steps while decoding); "
        f"with another LLM only {', '.join(PROMPTED_METHODS)} can run"
    )


def render_baseline_prompt(method: str, bench: str, question: str, task: str | None = None) -> str:
    """The baseline's prompt as one string: system message, user message, assistant prefix.

    Args:
        method: ``"cot"`` or ``"ps"``.
        bench: Benchmark name (selects the answer hint; StrategyQA gets Plan-and-Solve's commonsense prompt).
        question: The question text.
        task: BBH task (selects the task's answer hint).

    Returns:
        The prompt text; the model's reply continues the assistant prefix.

    Raises:
        SteeringRequiredError: ``method`` is not one of :data:`PROMPTED_METHODS`.
    """
    from ..answers import answer_hint

    template = _template(method, bench)
    # The steered chains send the question as escaped anchor markup that the tokenizer parses back to the raw
    # text, so the raw question is what their models read too.
    user = template.user.format(question_block=question)
    return f"{template.system_message(answer_hint(bench, task))}\n\n{user}\n\n{template.assistant_prefix}"


def _reply_fields(reply: Any) -> tuple[str, str, int | None, int | None]:
    """Text, finish reason and token counts of an LLM reply (a string, or a chat model's message)."""
    if isinstance(reply, str):
        return reply, "unknown", None, None
    content = getattr(reply, "content", reply)
    if isinstance(content, list):  # content blocks of multimodal chat models
        content = "".join(b.get("text", "") if isinstance(b, Mapping) else str(b) for b in content)
    meta = getattr(reply, "response_metadata", None) or {}
    finish = meta.get("finish_reason") or meta.get("stop_reason") or "unknown"
    usage = getattr(reply, "usage_metadata", None) or {}
    return str(content), str(finish), usage.get("output_tokens"), usage.get("input_tokens")


def make_prompted_chain(llm: Any, method: str, bench: str) -> Any:
    """An LCEL ``prompt | llm`` pipeline for a baseline that returns the reasoning chains' output dict.

    Args:
        llm: Any LangChain LLM or chat model (a chat model gets the rendered prompt as one human message).
        method: ``"cot"`` or ``"ps"``.
        bench: Benchmark name (answer hint and extractor).

    Returns:
        A runnable taking ``{"question", "task", "options"}`` and returning ``{answer, text, steps, finish_reason,
        usage, retried}``; ``text`` starts with the assistant prefix, as the steered chains' does. Token counts are
        None when the LLM does not report them.

    Raises:
        SteeringRequiredError: ``method`` needs steering.
    """
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

    from ..answers import extract_answer

    prefix = _template(method, bench).assistant_prefix

    def prompt(item: Mapping[str, Any]) -> str:
        return render_baseline_prompt(method, bench, item["question"], item.get("task"))

    def finish(result: Mapping[str, Any]) -> dict[str, Any]:
        item, (reply, reason, completion, prompt_tokens) = result["item"], _reply_fields(result["reply"])
        text = prefix + reply
        return {
            "answer": extract_answer(bench, text, task=item.get("task"), options=item.get("options")),
            "text": text,
            "steps": [],
            "finish_reason": reason,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion},
            "retried": False,
        }

    return RunnableParallel(item=RunnablePassthrough(), reply=RunnableLambda(prompt) | llm) | RunnableLambda(finish)
