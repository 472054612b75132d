"""Grading model-written code: the code read from a reply, the program that tests it, and its sandboxed verdict.

HumanEval and MBPP are scored the way their authors score them: a solution passes when the benchmark's own tests
run without error (HumanEval: ``check(entry_point)``; MBPP: the three ``assert`` lines of ``test_list``). Every
program runs in :func:`~selfanchor_chains.answers.sandbox.run_program`, never in this process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .sandbox import SandboxLimits, run_program

__all__ = ["CODE_BENCHMARKS", "extract_code", "grade_code", "humaneval_program", "mbpp_program"]

CODE_BENCHMARKS = ("humaneval", "mbpp")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_IMPORT = re.compile(r"^(?:from\s+\S+\s+import\s+.+|import\s+.+)$")


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code of a reply: its first fenced block that defines ``entry_point`` (else its first Python or unlabelled
    block); without a fence, the reply itself up to a closing fence (a reply that began inside a code block).

    Never raises; a reply with no code gives the empty string or its text, which then fails its tests.
    """
    if not isinstance(text, str):
        return ""
    if text.count("```") % 2 == 1:  # an odd fence closes a block the reply began in (the prompt opened it)
        text = text.split("```", 1)[0]
        if not _FENCE.search(text):
            return text
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    python = [body for lang, body in blocks if lang in ("", "python", "py", "python3")]
    if entry_point:
        for body in python:
            if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", body, re.MULTILINE):
                return body
    if python:
        return python[0]
    return text


def _header_imports(prompt: str) -> str:
    """The import lines of a HumanEval prompt (``from typing import List``), which a reply may leave out."""
    return "\n".join(line for line in prompt.splitlines() if _IMPORT.match(line.strip()) and not line[:1].isspace())


def humaneval_program(prompt: str, reply: str, test: str, entry_point: str) -> str:
    """The HumanEval test program for a reply: the prompt's imports, the solution, the tests, ``check(...)``.

    A reply that writes only the body of the function (no ``def entry_point``) is appended to the prompt, as in
    completion-style evaluation.
    """
    code = extract_code(reply, entry_point)
    if not re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        code = prompt + code
    return f"{_header_imports(prompt)}\n\n{code}\n\n{test}\n\ncheck({entry_point})\n"


def mbpp_program(reply: str, test_list: Sequence[str], setup: str = "") -> str:
    """The MBPP test program for a reply: the solution, the set-up code, then the ``assert`` lines."""
    code = extract_code(reply)
    return "\n".join([code, "", setup or "", *test_list, ""])


def grade_code(
    bench: str, question: str, reply: str, extra: Mapping[str, Any], limits: SandboxLimits | None = None
) -> dict[str, Any]:
    """Run a reply's test program in the sandbox.

    Args:
        bench: ``humaneval`` or ``mbpp``.
        question: The problem's prompt (HumanEval's signature and docstring; unused for MBPP).
        reply: The model's reply.
        extra: The problem's test fields (``entry_point`` and ``test``; ``test_list`` and ``test_setup_code``).
        limits: Sandbox limits (defaults: 10 s, 1 GiB).

    Returns:
        ``{"correct", "error_kind", "code", "stderr"}``: ``error_kind`` is None when the tests pass, else the
        sandbox's kind (``assertion``, ``timeout``, ``syntax``, ...); ``stderr`` is the end of the error output.

    Raises:
        ValueError: ``bench`` is not a code benchmark, or the problem lacks its test fields.
    """
    if bench == "humaneval":
        if not extra.get("entry_point") or not extra.get("test"):
            raise ValueError("a humaneval problem needs entry_point and test")
        program = humaneval_program(question, reply, str(extra["test"]), str(extra["entry_point"]))
        code = extract_code(reply, str(extra["entry_point"]))
    elif bench == "mbpp":
        tests = extra.get("test_list")
        if not isinstance(tests, list) or not tests:
            raise ValueError("an mbpp problem needs a non-empty test_list")
        program = mbpp_program(reply, [str(t) for t in tests], str(extra.get("test_setup_code") or ""))
        code = extract_code(reply)
    else:
        raise ValueError(f"not a code benchmark: {bench!r}; expected one of {', '.join(CODE_BENCHMARKS)}")
    result = run_program(program.replace("\x00", ""), limits)
    return {"correct": result.passed, "error_kind": result.error, "code": code, "stderr": result.stderr[-500:]}
