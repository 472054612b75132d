"""MATH-500: LaTeX normalisation of answers before they are compared."""

from __future__ import annotations

import re

from .locate import _balanced, _boxed_contents

# --------------------------------------------------------------------------------------------------------
# MATH-500: LaTeX normalisation
# --------------------------------------------------------------------------------------------------------

_UNIT_WORDS_TEXT = """
    unit units square sq cubic cm centimeter centimeters centimetre centimetres meter meters metre metres km
    kilometer kilometers mm inch inches ft foot feet yard yards mile miles mph kmph hour hours hr hrs minute
    minutes min mins second seconds sec degree degrees radian radians cent cents dollar dollars pound pounds
    lb lbs kg gram grams liter liters litre litres ml gallon gallons ounce ounces oz day days week weeks month
    months year years percent m s g
"""
_UNIT_WORDS = frozenset(_UNIT_WORDS_TEXT.split())
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|mathit|operatorname)\s*\{")
_SPACING_RE = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad\b|~")
_SIZING_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)[lr]?(?![a-zA-Z])\.?")
_MIXED_RE = re.compile(r"(-?)(\d+)\s*\\frac\s*\{?(\d+)\}?\s*\{?(\d+)\}?")


def _replace_text_commands(s: str) -> str:
    """Unwrap ``\\text{...}``; drop it when it only names a unit after a value (``5.4 \\text{ cents}``)."""
    out = s
    while True:
        m = _TEXT_CMD_RE.search(out)
        if not m:
            return out
        group = _balanced(out, m.end() - 1)
        if group is None:
            return out
        content, end = group
        before = out[: m.start()].strip()
        words = content.strip().split()
        is_unit = bool(before) and bool(words) and all(w.strip("^{}.0123456789").lower() in _UNIT_WORDS for w in words)
        if is_unit:
            rest = re.sub(r"^\s*\^\s*\{?\d\}?", "", out[end:])
            out = out[: m.start()] + rest
        else:
            out = out[: m.start()] + content + out[end:]


def _strip_unit_words(s: str) -> str:
    while True:
        m = re.search(r"\s+([a-zA-Z]{2,})\s*(?:\^\s*\{?\d\}?)?\s*$", s)
        if not m or m.group(1).lower() not in _UNIT_WORDS or not re.search(r"\d", s[: m.start()]):
            return s
        s = s[: m.start()]


def normalize_math(answer: str) -> str:
    """Normalise a MATH answer string for comparison (still LaTeX, whitespace collapsed).

    Removes ``\\left``/``\\right``, spacing commands, ``$``/``\\$``, degree marks, ``\\%``, unit words and a
    trailing full stop; turns ``\\dfrac``/``\\tfrac`` into ``\\frac``; unwraps ``\\text{...}`` and ``\\boxed{}``;
    drops a ``x =`` / ``x \\in`` prefix; removes thousands separators; rewrites mixed numbers
    (``1\\frac{4}{5}``) as sums.

    Args:
        answer: A gold or predicted answer.

    Returns:
        The normalised string (possibly empty).
    """
    s = answer.strip()
    for src, dst in (
        ("\u2212", "-"), ("\u00d7", "\\times "), ("\u00f7", "\\div "), ("\u03c0", "\\pi "),
        ("\u221a", "\\sqrt"), ("\u221e", "\\infty "), ("\u00b0", ""), ("\u2264", "\\le "), ("\u2265", "\\ge "),
    ):  # fmt: skip
        s = s.replace(src, dst)
    boxed = _boxed_contents(s)
    if boxed:
        s = boxed[-1]
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = s.replace("\\displaystyle", "")
    s = _SIZING_RE.sub("", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\cfrac", r"\\frac", s)
    s = _SPACING_RE.sub(" ", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = _replace_text_commands(s)
    s = re.sub(r"\s+", " ", s).strip()
    s = _strip_unit_words(s)
    while s.endswith((".", "\\")):
        s = s[:-1].rstrip()
    s = re.sub(r"^[a-zA-Z]\s*\\in\s*", "", s)
    if s.count("=") == 1:
        lhs, rhs = s.split("=")
        if re.fullmatch(r"\s*[a-zA-Z]\s*", lhs) and rhs.strip():
            s = rhs.strip()
    s = s.replace("{,}", ",")
    compact = s.replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", compact):
        s = compact.replace(",", "")
    m = _MIXED_RE.fullmatch(s)
    if m:
        sign, whole, num, den = m.groups()
        s = f"{sign}({whole}+\\frac{{{num}}}{{{den}}})"
    return s


def _key(s: str) -> str:
    return s.replace(" ", "")
