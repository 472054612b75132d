"""Answer extraction and scoring for the six reasoning benchmarks.

Every method (Self-Anchor, CoT, Plan-and-Solve) is scored by exactly these functions, so differences in
accuracy come from the reasoning and not from the grader. Extraction looks, in order, at:

1. the text after the last ``Final Answer:`` (or ``final answer is``), the format the prompts ask for;
2. the last ``\\boxed{...}`` (braces balanced), which small Qwen models write out of habit;
3. the last ``the answer is ...`` / ``Answer: ...``;
4. a benchmark-specific fallback (last number, last option letter, last yes/no, ...).

A candidate that cannot be read in the benchmark's format (``Final Answer: see above``) falls through to the
next source. Fenced code blocks are ignored first, since a ``print("Final Answer:", x)`` line is not an answer;
only when nothing is found without them is the full text searched again.

MATH-500 answers are compared with a LaTeX-aware equivalence (normalisation plus a small exact/numeric
evaluator that never calls ``eval``), not string equality.
"""

from .equivalence import math_equal
from .errors import GRADER_ERRORS
from .formats import ANSWER_HINTS, BBH_TASK_FORMATS, answer_hint
from .grading import MAX_ANSWER_CHARS, MAX_OUTPUT_CHARS, Grade, extract_answer, grade, is_correct, score
from .latex import normalize_math
from .locate import short_answer
from .readers import parse_options

__all__ = [
    "ANSWER_HINTS",
    "BBH_TASK_FORMATS",
    "GRADER_ERRORS",
    "MAX_ANSWER_CHARS",
    "MAX_OUTPUT_CHARS",
    "Grade",
    "answer_hint",
    "extract_answer",
    "grade",
    "is_correct",
    "math_equal",
    "normalize_math",
    "parse_options",
    "score",
    "short_answer",
]
