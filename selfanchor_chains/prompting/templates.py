"""Prompt templates: Self-Anchor's plan/reason format and the CoT and Plan-and-Solve+ baselines.

All methods share one instruction core (reason in plain words, never write code, end with ``Final Answer:``)
and the same per-benchmark answer hint, so an evaluation compares the reasoning and not the wording of the format.
The Coder models this project runs on like to answer with a Python program and then invent its output; the
"never write code" sentence and an assistant prefix that starts the reasoning in prose keep them from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.documents import Document

from .markup import anchor, format_docs_anchored

__all__ = [
    "COT",
    "PLAN_AND_SOLVE",
    "PLAN_AND_SOLVE_STRATEGYQA",
    "SELF_ANCHOR",
    "WORKED_EXAMPLES",
    "ReasoningTemplate",
    "StepMarkers",
    "WorkedExample",
    "render_user_message",
    "worked_example",
]

_CORE = (
    "Reason in plain words and arithmetic. Never write code or programs. "
    "When you are done, write one last line of the form 'Final Answer: <the answer only>'."
)


@dataclass(frozen=True)
class StepMarkers:
    """The line labels that open each kind of step (matched case-insensitively, with or without a number)."""

    plan: str = "Plan"
    reasoning: str = "Reasoning"
    final: str = "Final Answer"


@dataclass(frozen=True)
class ReasoningTemplate:
    """A method's prompt: system message, user message, and the start of the assistant's reply.

    ``system`` may use ``{hint}`` (the benchmark's answer format); ``user`` must use ``{question_block}``.
    """

    name: str
    system: str
    user: str = "{question_block}"
    assistant_prefix: str = ""
    markers: StepMarkers = StepMarkers()

    def system_message(self, hint: str) -> str:
        return self.system.format(hint=hint).strip()


SELF_ANCHOR = ReasoningTemplate(
    name="self-anchor",
    system=(
        "Solve the problem by alternating short plans and reasoning. " + _CORE + "\n"
        "Use exactly this format:\n"
        "Plan 1: <one sentence: the first sub-goal>\n"
        "Reasoning 1: <carry out that sub-goal and work out its result>\n"
        "Plan 2: <one sentence: the next sub-goal>\n"
        "Reasoning 2: <carry out that sub-goal and work out its result>\n"
        "(as many plan and reasoning steps as needed)\n"
        "Final Answer: <the answer only>\n"
        "{hint}"
    ),
    assistant_prefix="Plan 1:",
)

COT = ReasoningTemplate(
    name="cot",
    system="Solve the problem. " + _CORE + "\n{hint}",
    assistant_prefix="Let's think step by step.\n",
)

# Plan-and-Solve+ (Wang et al. 2023), prompt 301, as the start of the answer.
PLAN_AND_SOLVE = ReasoningTemplate(
    name="ps",
    system="Solve the problem. " + _CORE + "\n{hint}",
    assistant_prefix=(
        "Let's first understand the problem, extract relevant variables and their corresponding numerals, and "
        "devise a plan. Then, let's carry out the plan, calculate intermediate variables (pay attention to correct "
        "numeral calculation and commonsense), solve the problem step by step, and show the answer.\n"
    ),
)

# Plan-and-Solve's commonsense variant (prompt 306), used for StrategyQA.
PLAN_AND_SOLVE_STRATEGYQA = ReasoningTemplate(
    name="ps",
    system="Solve the problem. " + _CORE + "\n{hint}",
    assistant_prefix=(
        "Let's first prepare relevant information and make a plan. Then, let's answer the question step by step "
        "(pay attention to commonsense and logical coherence).\n"
    ),
)


def plan_and_solve_template(bench: str | None, default: ReasoningTemplate = PLAN_AND_SOLVE) -> ReasoningTemplate:
    """Plan-and-Solve+'s prompt for a benchmark: its commonsense variant for StrategyQA, else ``default``."""
    return PLAN_AND_SOLVE_STRATEGYQA if bench == "strategyqa" else default


def baseline_template(method: str, bench: str | None) -> ReasoningTemplate | None:
    """The prompt of a prompting-only baseline (``"cot"``, ``"ps"``); None for a method that steers."""
    if method == "cot":
        return COT
    if method == "ps":
        return plan_and_solve_template(bench)
    return None


def render_user_message(
    template: ReasoningTemplate,
    question: str,
    context: Sequence[Document | str] | str | None = None,
    *,
    anchor_question: bool = True,
    anchor_context: bool | int = True,
) -> str:
    """The user message with the question (and retrieved context) as escaped anchors.

    Retrieved passages are untrusted: they are escaped, so markup inside them cannot move the anchors.
    ``anchor_context``: True anchors every document, False none, a number n only the first n (rank order).
    """
    blocks = []
    if context:
        docs = [context] if isinstance(context, str) else list(context)
        if anchor_context is True:
            blocks.append("Context:\n" + format_docs_anchored(docs))
        elif anchor_context is not False:
            blocks.append("Context:\n" + format_docs_anchored(docs, top=anchor_context))
        else:
            from .markup import escape_anchor_markup

            texts = [d.page_content if isinstance(d, Document) else str(d) for d in docs]
            blocks.append("Context:\n" + "\n\n".join(escape_anchor_markup(t) for t in texts))
        blocks.append("Question: " + (anchor(question) if anchor_question else _escaped(question)))
    else:
        blocks.append(anchor(question) if anchor_question else _escaped(question))
    return template.user.format(question_block="\n\n".join(blocks))


def _escaped(text: str) -> str:
    from .markup import escape_anchor_markup

    return escape_anchor_markup(text)


@dataclass(frozen=True)
class WorkedExample:
    """One solved problem, written both in Self-Anchor's plan/reason format and as a plain CoT trace, so that a
    comparison that shows it to one method can show the same example to the other.

    Written for this project (no benchmark item): a small model given only the format's description tends to
    restate its plan in the reasoning step; an example shows a reasoning step that computes.
    """

    question: str
    plan_reason: str
    cot: str

    def render(self, template: ReasoningTemplate) -> str:
        """The example as text for a system message, in the format of ``template``."""
        trace = self.plan_reason if template.name == "self-anchor" else self.cot
        return f"Example:\nQuestion: {self.question}\n{trace}"


WORKED_EXAMPLES: dict[str, WorkedExample] = {
    "number": WorkedExample(
        question=(
            "A shop sells pencils at $3 each and notebooks at $5 each. Mia buys 4 pencils and 2 notebooks and pays "
            "with a $50 bill. How much change does she get?"
        ),
        plan_reason=(
            "Plan 1: Find the cost of the pencils.\n"
            "Reasoning 1: 4 pencils at $3 each cost 4 * 3 = $12.\n"
            "Plan 2: Find the cost of the notebooks.\n"
            "Reasoning 2: 2 notebooks at $5 each cost 2 * 5 = $10.\n"
            "Plan 3: Find the total cost and the change.\n"
            "Reasoning 3: The total is 12 + 10 = $22, so the change is 50 - 22 = $28.\n"
            "Final Answer: 28"
        ),
        cot=(
            "Let's think step by step.\n"
            "4 pencils at $3 each cost 4 * 3 = $12. 2 notebooks at $5 each cost 2 * 5 = $10. "
            "The total is 12 + 10 = $22, so the change is 50 - 22 = $28.\n"
            "Final Answer: 28"
        ),
    ),
    "yes_no": WorkedExample(
        question="Could a penguin fly to its nesting site?",
        plan_reason=(
            "Plan 1: Find out whether penguins can fly.\n"
            "Reasoning 1: Penguins are flightless birds; their wings are flippers used for swimming.\n"
            "Plan 2: Decide whether a penguin could fly to its nesting site.\n"
            "Reasoning 2: A bird that cannot fly cannot fly anywhere, so it walks or swims to its nest.\n"
            "Final Answer: no"
        ),
        cot=(
            "Let's think step by step.\n"
            "Penguins are flightless birds; their wings are flippers used for swimming. A bird that cannot fly "
            "cannot fly anywhere, so it walks or swims to its nest.\n"
            "Final Answer: no"
        ),
    ),
    "option": WorkedExample(
        question=(
            "A train travels 150 km in 2.5 hours. What is its average speed? "
            "Options: A)50 km/h B)55 km/h C)60 km/h D)65 km/h E)75 km/h"
        ),
        plan_reason=(
            "Plan 1: Find the average speed.\n"
            "Reasoning 1: Speed is distance over time: 150 / 2.5 = 60 km/h.\n"
            "Plan 2: Match the result with the options.\n"
            "Reasoning 2: 60 km/h is option C.\n"
            "Final Answer: C"
        ),
        cot=(
            "Let's think step by step.\n"
            "Speed is distance over time: 150 / 2.5 = 60 km/h, which is option C.\n"
            "Final Answer: C"
        ),
    ),
    "option_paren": WorkedExample(
        question=(
            "A train travels 150 km in 2.5 hours. What is its average speed?\n"
            "Options:\n(A) 50 km/h\n(B) 55 km/h\n(C) 60 km/h\n(D) 65 km/h"
        ),
        plan_reason=(
            "Plan 1: Find the average speed.\n"
            "Reasoning 1: Speed is distance over time: 150 / 2.5 = 60 km/h.\n"
            "Plan 2: Match the result with the options.\n"
            "Reasoning 2: 60 km/h is option (C).\n"
            "Final Answer: (C)"
        ),
        cot=(
            "Let's think step by step.\n"
            "Speed is distance over time: 150 / 2.5 = 60 km/h, which is option (C).\n"
            "Final Answer: (C)"
        ),
    ),
    "true_false": WorkedExample(
        question="not ( False or True ) and True is",
        plan_reason=(
            "Plan 1: Evaluate the parentheses.\n"
            "Reasoning 1: False or True is True.\n"
            "Plan 2: Apply the not, then the and.\n"
            "Reasoning 2: not True is False, and False and True is False.\n"
            "Final Answer: False"
        ),
        cot=(
            "Let's think step by step.\n"
            "False or True is True. not True is False, and False and True is False.\n"
            "Final Answer: False"
        ),
    ),
    "valid_invalid": WorkedExample(
        question=(
            "Every cat is an animal. Tom is not an animal. Is the argument that Tom is not a cat, given these "
            "premises, deductively valid or invalid?"
        ),
        plan_reason=(
            "Plan 1: Suppose the conclusion were false and check the premises.\n"
            "Reasoning 1: If Tom were a cat, the first premise would make Tom an animal, against the second premise.\n"
            "Plan 2: Decide whether the conclusion follows.\n"
            "Reasoning 2: Tom cannot be a cat, so the conclusion follows from the premises.\n"
            "Final Answer: valid"
        ),
        cot=(
            "Let's think step by step.\n"
            "If Tom were a cat, the first premise would make Tom an animal, against the second premise. So Tom "
            "cannot be a cat: the conclusion follows from the premises.\n"
            "Final Answer: valid"
        ),
    ),
    "dyck": WorkedExample(
        question=(
            "Complete the rest of the sequence, making sure that the parentheses are closed properly. Input: [ ( {"
        ),
        plan_reason=(
            "Plan 1: List the brackets still open, innermost last.\n"
            "Reasoning 1: Open are [ then ( then {.\n"
            "Plan 2: Close them from the innermost out.\n"
            "Reasoning 2: { closes with }, ( with ), [ with ], so the rest is } ) ].\n"
            "Final Answer: } ) ]"
        ),
        cot=(
            "Let's think step by step.\n"
            "Open are [ then ( then {. Closing from the innermost out: } then ) then ].\n"
            "Final Answer: } ) ]"
        ),
    ),
    "word_sorting": WorkedExample(
        question="Sort the following words alphabetically: List: pear apple mango",
        plan_reason=(
            "Plan 1: Compare the first letters.\n"
            "Reasoning 1: apple starts with a, mango with m, pear with p; a comes before m, m before p.\n"
            "Plan 2: Write the words in that order.\n"
            "Reasoning 2: apple, mango, pear.\n"
            "Final Answer: apple mango pear"
        ),
        cot=(
            "Let's think step by step.\n"
            "apple starts with a, mango with m, pear with p, and a < m < p.\n"
            "Final Answer: apple mango pear"
        ),
    ),
}
"""Worked examples by answer format (see :func:`worked_example`)."""

_EXAMPLE_FOR_BENCH = {"gsm8k": "number", "math500": "number", "strategyqa": "yes_no", "aqua": "option", "t4d": "option"}
# BBH tasks by their answer format (``answers.formats.BBH_TASK_FORMATS``): the example whose final line has that form
_EXAMPLE_FOR_BBH_FORMAT = {
    "option": "option_paren",
    "integer": "number",
    "yes_no": "yes_no",
    "Yes_No": "Yes_No",
    "true_false": "true_false",
    "valid_invalid": "valid_invalid",
    "dyck": "dyck",
    "word_sorting": "word_sorting",
}


def _capitalised_answer(example: WorkedExample) -> WorkedExample:
    """The same example with its final answer capitalised (BBH's ``Yes``/``No`` tasks)."""

    def final(trace: str) -> str:
        head, _, answer = trace.rpartition("Final Answer: ")
        return f"{head}Final Answer: {answer.capitalize()}"

    return WorkedExample(example.question, final(example.plan_reason), final(example.cot))


WORKED_EXAMPLES["Yes_No"] = _capitalised_answer(WORKED_EXAMPLES["yes_no"])


def worked_example(bench: str | None, task: str | None = None) -> WorkedExample | None:
    """The worked example whose final answer has the benchmark's answer format.

    Args:
        bench: Benchmark name, or ``"bbh:<task>"``; None or an unknown name: the numeric example.
        task: BBH task (when ``bench`` is ``"bbh"``).

    Returns:
        The example; None for BBH without a known task (its tasks answer in eight formats, and an example in the
        wrong one would teach the wrong answer line).
    """
    from ..answers.formats import BBH_TASK_FORMATS

    name, _, spec_task = (bench or "").partition(":")
    if name == "bbh":
        fmt = BBH_TASK_FORMATS.get(task or spec_task)
        return WORKED_EXAMPLES[_EXAMPLE_FOR_BBH_FORMAT[fmt]] if fmt else None
    return WORKED_EXAMPLES[_EXAMPLE_FOR_BENCH.get(name, "number")]
