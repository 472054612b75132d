"""Locating the answer text in a model's output: ``Final Answer:``, ``\\boxed{}``, "the answer is"; code blocks
skipped."""

from __future__ import annotations

import re
from collections.abc import Iterator

# --------------------------------------------------------------------------------------------------------
# Locating the answer text
# --------------------------------------------------------------------------------------------------------

_FINAL_RE = re.compile(r"final\s+answer\**\s*(?:\bis\b\s*:?|:|(?=\n))", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"(?<!final )\banswer\**\s*(?:\bis\b\s*:?|:)", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_CODE_BLOCK_RE = re.compile(r"```([^\n`]*)\n?(.*?)(?:```|\Z)", re.DOTALL)
# Fenced blocks whose tag says they hold prose or results, not code, may carry the answer.
_NON_CODE_TAGS = frozenset({"", "output", "text", "txt", "plaintext", "latex", "tex", "math", "markdown", "md"})
_OPEN_DELIMS = frozenset({"", "$$", "\\[", "\\(", "$"})


def _balanced(text: str, open_idx: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[open_idx] == "{"`` and the index after it."""
    depth = 0
    for i in range(open_idx, len(text)):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            continue
        if ch == "{" and not (i > 0 and text[i - 1] == "\\"):
            depth += 1
        elif ch == "}" and not (i > 0 and text[i - 1] == "\\"):
            depth -= 1
            if depth == 0:
                return text[open_idx + 1 : i], i + 1
    return None


def _brace_pairs(text: str) -> dict[int, int]:
    """For every brace that opens a group, the index of the brace that closes it (escaped braces are text).

    One pass with a stack: the same groups as :func:`_balanced` finds from each opening brace, in linear time
    (calling it for each of many unclosed ``\\boxed{`` was quadratic).
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch not in "{}" or (i > 0 and text[i - 1] == "\\"):
            continue
        if ch == "{":
            stack.append(i)
        elif stack:
            pairs[stack.pop()] = i
    return pairs


def _boxed_contents(text: str) -> list[str]:
    """All ``\\boxed{...}`` contents, in order; nested braces are kept whole."""
    found = []
    pairs: dict[int, int] | None = None
    for m in _BOXED_RE.finditer(text):
        if pairs is None:
            pairs = _brace_pairs(text)
        close = pairs.get(m.end() - 1)
        if close is not None:
            found.append(text[m.end() : close].strip())
    return found


def _strip_code_blocks(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        return m.group(0) if m.group(1).strip().lower() in _NON_CODE_TAGS else "\n"

    return _CODE_BLOCK_RE.sub(repl, text)


def _segment_after(text: str, start: int) -> str:
    """The answer text following a marker: the rest of its line, or the next block if that is empty."""
    lines = text[start:].split("\n")
    first = lines[0].strip().strip("*#:").strip()
    if first not in _OPEN_DELIMS:
        return first
    # "Final Answer:\n\\[\n\\boxed{5}\n\\]" or "Final Answer:\n- a\n- b": gather up to a blank line.
    block = [first] if first else []
    for line in lines[1:20]:
        if not line.strip():
            if any(part not in _OPEN_DELIMS for part in block):
                break
            continue
        block.append(line.strip())
    return " ".join(block).strip()


def _candidates(text: str) -> Iterator[str]:
    """Answer strings in priority order (see the module docstring)."""
    for m in reversed(list(_FINAL_RE.finditer(text))):
        segment = _segment_after(text, m.end())
        boxed = _boxed_contents(segment)
        if boxed:
            yield boxed[-1]
        if segment:
            yield segment
    boxed = _boxed_contents(text)
    if boxed:
        yield boxed[-1]
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        segment = _segment_after(text, m.end())
        if segment:
            yield segment


_MARKDOWN_RE = re.compile(r"\*\*|__|`")


def _clean(segment: str) -> str:
    """Drop markdown emphasis, math delimiters and a trailing full stop around an answer string."""
    s = _MARKDOWN_RE.sub("", segment).strip()
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = s.strip().strip("*").strip()
    while s.endswith((".", "。")) and not s.endswith("..."):
        s = s[:-1].rstrip()
    if s.startswith("$$") and s.endswith("$$") and len(s) > 4:
        s = s[2:-2].strip()
    elif s.startswith("$") and s.endswith("$") and s.count("$") == 2 and not s.startswith("$$"):
        s = s[1:-1].strip()
    while s.endswith(".") and not s.endswith("..."):
        s = s[:-1].rstrip()
    return s


_LEAD_IN_RE = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is\s*)?:?\s*", re.IGNORECASE)


def short_answer(text: str) -> str | None:
    """A short free-form answer (conflictqa): the ``Final Answer:`` segment if there is one, else the first
    non-empty line, without a leading "Answer:", markdown or a trailing full stop.

    Returns:
        The answer text, or None when the output is empty.
    """
    stripped = _strip_code_blocks(text)
    for candidate in _candidates(stripped):
        cleaned = _clean(_LEAD_IN_RE.sub("", candidate.strip()))
        if cleaned:
            return cleaned
    for line in stripped.splitlines():
        cleaned = _clean(_LEAD_IN_RE.sub("", line.strip().lstrip("#*-> ").strip()))
        if cleaned:
            return cleaned
    return None
