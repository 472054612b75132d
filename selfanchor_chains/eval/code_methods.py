"""The methods compared on the code benchmarks (HumanEval, MBPP), on the same prompts.

Each problem becomes one chat turn asking for the function in a Python code block; the assistant's turn is begun
with the opening fence (```` ```python ````) and decoding stops at the closing one, so every method writes code
and nothing after it. The methods differ only in ω and in what is anchored:

- ``code-plain``: greedy decoding, no anchor (ω = 1);
- ``code-anchored``: the task description anchored (HumanEval: the function's signature and docstring, the
  benchmark's whole prompt; MBPP: the problem statement, not its test lines), ω = :data:`CODE_ANCHORED_OMEGA`.
  This is Selective Prompt Anchoring's set-up for code (Tian & Zhang, ICML 2025), with our arithmetic
  ``ω·l_orig + (1−ω)·l_masked``, the masked branch not seeing the anchor;
- ``code-spa``: the same anchor with SPA's probability-modulated strength (the ``anchoring`` package's
  ``modulated_by_prob``: each token's move scaled by its original probability over the top one's), same ω;
- ``code-anchored@ω`` / ``code-spa@ω`` set ω explicitly (for choosing ω on MBPP's train / validation splits).

Problem text is untrusted: control-token strings are neutralised and it is escaped, never read as markup.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .prompt_chains import OnePromptChain, generation_output, method_omega

__all__ = [
    "CODE_ANCHORED_OMEGA",
    "CODE_MAX_NEW_TOKENS",
    "CODE_METHODS",
    "CodeChain",
    "code_fingerprint",
    "make_code_chain",
    "parse_code_method",
]

CODE_METHODS = ("code-plain", "code-anchored", "code-spa")
CODE_ANCHORED_OMEGA = 1.5
"""ω of ``code-anchored``: the value the rule in ``results/code/README.md`` picked on MBPP's validation split
(Qwen2.5-Coder-0.5B; 37 passed of 90 vs 34 plain, within noise)."""
CODE_MAX_NEW_TOKENS = 512
"""Token budget of a solution (HumanEval's and MBPP's reference solutions are far shorter)."""

_PREFILL = "```python\n"
_STOP = ["```"]
_HUMANEVAL = (
    "Complete the following Python function. Write the whole function, with the imports it needs, in one Python "
    "code block.\n\n{task}"
)
_TASK = "{task}\n\nWrite the solution in one Python code block."
_TASK_TESTS = "{task}\n\nYour code should pass these tests:\n\n{tests}\n\nWrite the solution in one Python code block."
_MBPP = (
    "You are an expert Python programmer, and here is your task: {task} Your code should pass these tests:\n\n"
    "{tests}\n\nWrite the function in one Python code block."
)


def parse_code_method(name: str) -> tuple[str, float | None]:
    """``"code-anchored@2"`` → ``("code-anchored", 2.0)``; ``"code-plain"`` → ``("code-plain", None)``.

    Raises:
        ValueError: Unknown method, an ω on ``code-plain``, or an ω that is not a finite number ≥ 1.
    """
    base, sep, _ = name.partition("@")
    if base not in CODE_METHODS:
        raise ValueError(f"unknown code method {name!r}; choose from {', '.join(CODE_METHODS)}")
    if not sep:
        return base, None
    if base == "code-plain":
        raise ValueError(f"{base} takes no ω (only code-anchored and code-spa do), got {name!r}")
    return base, method_omega(name, example="code-anchored@2")


class CodeChain(OnePromptChain):
    """One code-writing prompt per problem, decoded in one batched call (continuous batching in the LLM).

    Input: ``{"bench": "humaneval" | "mbpp", "question": ..., "test_list": [...]}`` (MBPP shows its tests); without
    ``bench``, any task statement (``question``) with optional tests (``test_list``), in a neutral prompt.
    Output: ``{"text", "finish_reason", "usage", "steps": [], "omega", "prompt"}``; ``text`` is the code the model
    wrote (the opening fence was the prompt's, the closing one stopped it).

    Attributes:
        llm: A :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM` whose tokenizer has a chat template.
        method: ``code-plain``, ``code-anchored`` or ``code-spa``.
        omega: Steering strength of the anchored methods.
        max_new_tokens: Decoding budget.
    """

    methods = CODE_METHODS

    llm: Any
    method: str = "code-plain"
    omega: float = CODE_ANCHORED_OMEGA
    max_new_tokens: int = CODE_MAX_NEW_TOKENS

    def input_error(self, item: dict[str, Any]) -> Exception | None:
        try:
            self.prompt(item)
        except (TypeError, ValueError) as error:
            return error
        return None

    def user_message(self, inputs: dict[str, Any]) -> str:
        """The user turn with anchor markup (the task escaped, and anchored for ``code-anchored``).

        Raises:
            ValueError: Unknown benchmark, no question, or an MBPP input without tests.
        """
        from ..prompting.markup import anchor, escape_anchor_markup

        bench, question = inputs.get("bench"), str(inputs.get("question") or "")
        if not question.strip():
            raise ValueError("a code problem needs a non-empty question")
        task = anchor(question) if self.method != "code-plain" else escape_anchor_markup(question)
        if bench == "humaneval":
            return _HUMANEVAL.format(task=f"```python\n{task}```")
        if bench == "mbpp":
            tests = [str(t) for t in inputs.get("test_list") or []]
            if not tests:
                raise ValueError("an mbpp problem needs its test_list (the prompt shows the tests)")
            return _MBPP.format(task=task, tests=escape_anchor_markup("\n".join(tests)))
        if bench is None:
            tests = [str(t) for t in inputs.get("test_list") or []]
            if not tests:
                return _TASK.format(task=task)
            return _TASK_TESTS.format(task=task, tests=escape_anchor_markup("\n".join(tests)))
        raise ValueError(f"unknown code benchmark {bench!r}; expected humaneval, mbpp or none (a task statement)")

    def prompt(self, inputs: dict[str, Any]) -> str:
        """The whole prompt: the chat template around the user turn, then the assistant's opening fence; in anchor
        markup, for an LLM that does not apply the chat template again."""
        from ..prompting.chat import render_chat_with_anchors
        from ..prompting.inputs import markup_from_spans

        tokenizer = self.llm.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("code methods need a tokenizer with a chat template (an instruct model)")
        messages = [{"role": "user", "content": self.user_message(inputs)}]
        clean, spans = render_chat_with_anchors(tokenizer, messages, markup=self.llm.markup)
        return markup_from_spans(clean + _PREFILL, spans, self.llm.markup)

    def decode_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prompts = [self.prompt(item) for item in inputs]  # every input is checked before any decoding
        omega = self.omega if self.method != "code-plain" else 1.0
        scaling = "probability" if self.method == "code-spa" else "constant"
        raw = self.llm.model_copy(update={"chat": False})  # the prompt already holds the chat template
        result = raw.generate(
            prompts, stop=_STOP, omega=omega, omega_scaling=scaling, max_new_tokens=self.max_new_tokens
        )
        return [
            generation_output(prompt, gens[0], omega) for prompt, gens in zip(prompts, result.generations, strict=True)
        ]


def make_code_chain(method: str, llm: Any, *, max_new_tokens: int = CODE_MAX_NEW_TOKENS) -> CodeChain:
    """The runnable of a code method (``code-anchored@ω`` sets ω).

    Raises:
        ValueError: Unknown method or bad ω.
        TypeError: ``llm`` is not a SteeredHFLLM.
    """
    from ..langchain.llm import SteeredHFLLM

    base, omega = parse_code_method(method)
    if not isinstance(llm, SteeredHFLLM):
        raise TypeError(f"code methods need a SteeredHFLLM, got {type(llm).__name__}")
    return CodeChain(
        llm=llm,
        method=base,
        omega=CODE_ANCHORED_OMEGA if omega is None else omega,
        max_new_tokens=min(max_new_tokens, CODE_MAX_NEW_TOKENS),
    )


def code_fingerprint(chain: CodeChain) -> str:
    """A short hash of what decides a code method's answers besides the model: prompts, anchoring, ω, budget."""
    payload = {
        "method": chain.method,
        "templates": [_HUMANEVAL, _MBPP, _PREFILL, _STOP],  # the benchmark templates only (the hash is the eval's)
        "omega": chain.omega if chain.method != "code-plain" else 1.0,
        "max_new_tokens": chain.max_new_tokens,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def chain_input(problem: Any) -> dict[str, Any]:
    """A code problem as :class:`CodeChain` input."""
    return {"bench": problem.bench, "question": problem.question, "test_list": problem.extra.get("test_list") or []}
