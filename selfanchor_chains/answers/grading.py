"""Grading: extract the answer, compare it with the gold one, and never raise on model output."""

from __future__ import annotations

from dataclasses import dataclass

from .equivalence import _math_equal, _parse_math
from .errors import GRADER_ERRORS
from .formats import Options, _bbh_format, _split_spec
from .latex import _key
from .locate import _candidates, _strip_code_blocks, short_answer
from .mentions import mentions
from .readers import _as_number, _infer_bbh_format, _options_map, _parse_number, reader_for

MAX_OUTPUT_CHARS = 20_000
"""Extraction reads at most the last this many characters of a model output (the answer is at its end)."""

MAX_ANSWER_CHARS = 1_000
"""A prediction longer than this is graded wrong without being parsed (no answer is that long)."""


@dataclass(frozen=True)
class Grade:
    """The outcome of grading one prediction.

    Attributes:
        correct: Whether it matches the gold answer.
        error: Why it could not be read or compared (then ``correct`` is False); None when it could.
    """

    correct: bool
    error: str | None = None


def grade(bench: str, prediction: str | None, gold: str, *, task: str | None = None) -> Grade:
    """:func:`is_correct` that never raises on model output: an unreadable prediction is wrong, with the reason.

    Raises:
        ValueError: Only for an unknown benchmark (a caller's error, not the model's).
    """
    _split_spec(bench, task)
    if prediction is not None and len(prediction) > MAX_ANSWER_CHARS:
        return Grade(False, f"prediction of {len(prediction)} characters (more than {MAX_ANSWER_CHARS})")
    try:
        return Grade(bool(_is_correct(bench, prediction, gold, task=task)))
    except GRADER_ERRORS as exc:
        return Grade(False, f"{type(exc).__name__}: {str(exc)[:200]}")


def extract_answer(bench: str, text: str, *, task: str | None = None, options: Options = None) -> str | None:
    """Read the final answer out of a model output, in the benchmark's canonical form.

    Args:
        bench: Benchmark name (``gsm8k``, ``aqua``, ``math500``, ``strategyqa``, ``bbh``, ``t4d``), or
            ``"bbh:<task>"``.
        text: The model's full output.
        task: BBH task name; selects the answer format (option letter, True/False, integer, ...).
        options: The item's options, as a list like ``["A)40", ...]`` / ``["A. Carter", ...]`` or a mapping
            ``{"A": "40"}``; lets an answer given as an option's value map to its letter. For BBH pass
            :func:`parse_options` of the question.

    Returns:
        ``"18"`` (gsm8k, BBH integers), ``"B"`` (aqua, t4d), a LaTeX string (math500), ``"yes"``/``"no"``
        (strategyqa), the BBH target format (``"(A)"``, ``"True"``, ``"Yes"``, ``"valid"``, ``") ]"``, the
        lower-cased words), or None when no answer is found (or the text cannot be read: this never raises on
        model output; only the last :data:`MAX_OUTPUT_CHARS` characters are read).
    """
    name, task = _split_spec(bench, task)
    text = text[-MAX_OUTPUT_CHARS:]
    try:
        return _extract_answer(name, task, text, options)
    except GRADER_ERRORS:
        return None


def _extract_answer(name: str, task: str | None, text: str, options: Options) -> str | None:
    if name == "conflictqa":
        return short_answer(text)
    fmt = _bbh_format(task) if name == "bbh" else None
    opts = _options_map(options)
    reader = reader_for(name, fmt, opts)
    stripped = _strip_code_blocks(text)
    for source in (stripped, text) if stripped != text else (text,):
        for candidate in _candidates(source):
            answer = reader.candidate(candidate)
            if answer is not None:
                return answer
        answer = reader.fallback(source)
        if answer is not None:
            return answer
    return None


def is_correct(bench: str, prediction: str | None, gold: str, *, task: str | None = None) -> bool:
    """Whether an extracted answer matches the gold answer (never raises on model output; see :func:`grade`).

    Args:
        bench: Benchmark name, or ``"bbh:<task>"``.
        prediction: The extracted answer (None scores as wrong).
        gold: The record's ``answer``.
        task: BBH task name; without it the format is inferred from the gold answer.
    """
    return grade(bench, prediction, gold, task=task).correct


def _is_correct(bench: str, prediction: str | None, gold: str, *, task: str | None = None) -> bool:
    """Whether an extracted answer matches the gold answer.

    ``prediction`` may also be a raw answer string (``"(B)"``, ``"$18.00"``, ``"Yes."``): it is read in the
    benchmark's format before comparing.

    Args:
        bench: Benchmark name, or ``"bbh:<task>"``.
        prediction: The extracted answer (None scores as wrong).
        gold: The record's ``answer``.
        task: BBH task name; without it the format is inferred from the gold answer.

    Returns:
        True when they match: numerically (gsm8k, BBH integers), by letter (aqua, t4d, BBH options),
        LaTeX-equivalence (math500), case-insensitively (yes/no, True/False, valid/invalid), by bracket tokens
        (dyck_languages) or word lists (word_sorting).
    """
    name, task = _split_spec(bench, task)
    if prediction is None or not prediction.strip():
        return False
    if name == "math500":
        return _math_equal(_parse_math(prediction) or prediction, gold)  # raises: grade() records why
    if name == "conflictqa":
        return mentions(prediction, [gold])
    fmt = (_bbh_format(task) or _infer_bbh_format(gold)) if name == "bbh" else None
    if name == "gsm8k" or fmt == "integer":
        p, g = _parse_number(prediction), _as_number(gold)
        return p is not None and g is not None and p == g
    read = reader_for(name, fmt, {}).candidate
    p_norm, g_norm = read(prediction), read(gold)
    if p_norm is None or g_norm is None:
        return False
    if fmt == "dyck":
        return _key(p_norm) == _key(g_norm)
    return p_norm.lower() == g_norm.lower()


def score(
    bench: str, text: str, gold: str, task: str | None = None, *, options: Options = None
) -> tuple[str | None, bool]:
    """Extract the answer from a model output and grade it.

    Args:
        bench: Benchmark name, or ``"bbh:<task>"``.
        text: The model's full output.
        gold: The record's ``answer``.
        task: BBH task name.
        options: The item's options (see :func:`extract_answer`).

    Returns:
        ``(extracted answer or None, correct)``.
    """
    answer = extract_answer(bench, text, task=task, options=options)
    return answer, is_correct(bench, answer, gold, task=task)
