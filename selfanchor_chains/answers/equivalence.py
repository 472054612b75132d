"""MATH-500: LaTeX-aware equivalence of two answers (normalised text, value, equations, tuples, sets,
matrices)."""

from __future__ import annotations

import re

from .errors import GRADER_ERRORS
from .latex import _key, normalize_math
from .locate import _clean
from .safe_eval import _evaluate, _values_equal

_TRIALS = (0, 1, 2)


def _expr_equal(a: str, b: str) -> bool:
    for trial in _TRIALS:
        va, vb = _evaluate(a, trial), _evaluate(b, trial)
        if va is None or vb is None or not _values_equal(va, vb):
            return False
    return True


def _equation_equal(a: str, b: str) -> bool:
    """``lhs = rhs`` equations are equal when ``lhs - rhs`` of one is a non-zero multiple of the other's."""
    la, ra = a.split("=")
    lb, rb = b.split("=")
    fa, fb = f"({la})-({ra})", f"({lb})-({rb})"
    ratio: complex | None = None
    for trial in _TRIALS:
        va, vb = _evaluate(fa, trial), _evaluate(fb, trial)
        if va is None or vb is None:
            return False
        za, zb = complex(va), complex(vb)
        if abs(zb) < 1e-12 or abs(za) < 1e-12:
            if abs(za) >= 1e-12 or abs(zb) >= 1e-12:
                return False
            continue
        if ratio is None:
            ratio = za / zb
        elif abs(za - ratio * zb) > 1e-9 * max(1.0, abs(za)):
            return False
    return True


def _split_top(s: str, sep: str) -> list[str]:
    """Split at ``sep`` where no bracket of any kind is open (``(3,4]`` counts as balanced)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _bracketed(s: str) -> tuple[str, list[str], str] | None:
    """``(a, b]`` -> ("(", ["a", "b"], "]") when the outer brackets enclose the whole string."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    if s.startswith("\\{"):
        return None
    inner = s[1:-1]
    depth = 0
    for ch in inner:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return None
    items = _split_top(inner, ",")
    return (s[0], items, s[-1]) if len(items) > 1 else None


def _matrix(s: str) -> list[list[str]] | None:
    m = re.fullmatch(r"\\begin\{([pbv]?matrix)\}(.*)\\end\{\1\}", s.strip(), re.DOTALL)
    if not m:
        return None
    rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
    return [[c.strip() for c in row.split("&")] for row in rows]


def _unordered_equal(a: list[str], b: list[str]) -> bool:
    if len(a) != len(b):
        return False
    remaining = list(b)
    for item in a:
        for j, other in enumerate(remaining):
            if _struct_equal(item, other):
                del remaining[j]
                break
        else:
            return False
    return True


def _ordered_equal(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and all(_struct_equal(x, y) for x, y in zip(a, b, strict=True))


def _flat_items(s: str) -> list[str] | None:
    """Elements of a vector written as a matrix, a tuple or a bare list."""
    mat = _matrix(s)
    if mat is not None:
        if len(mat) == 1 or all(len(row) == 1 for row in mat):
            return [c for row in mat for c in row]
        return None
    br = _bracketed(s)
    if br is not None and br[0] == "(" and br[2] == ")":
        return br[1]
    items = _split_top(s, ",")
    return items if len(items) > 1 else None


def _base_subscript(s: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"(\w+?)_\{?(\d+)\}?", _key(s))
    return (m.group(1), m.group(2)) if m else None


def _struct_equal(pred: str, gold: str) -> bool:
    """Equivalence of normalised answers: unions, matrices, intervals, tuples, lists, equations, values."""
    if _key(pred) == _key(gold):
        return True
    if re.fullmatch(r"[A-Za-z]{2,}[A-Za-z ]*", gold) and re.fullmatch(r"[A-Za-z]{2,}[A-Za-z ]*", pred):
        return _key(pred).lower() == _key(gold).lower()
    g_union, p_union = _split_top(gold, "\\cup"), _split_top(pred, "\\cup")
    if len(g_union) > 1 or len(p_union) > 1:
        return _unordered_equal(p_union, g_union)
    g_mat, p_mat = _matrix(gold), _matrix(pred)
    if g_mat is not None and p_mat is not None:
        return len(g_mat) == len(p_mat) and all(_ordered_equal(pr, gr) for pr, gr in zip(p_mat, g_mat, strict=True))
    if g_mat is not None or p_mat is not None:
        g_flat, p_flat = _flat_items(gold), _flat_items(pred)
        return g_flat is not None and p_flat is not None and _ordered_equal(p_flat, g_flat)
    g_br, p_br = _bracketed(gold), _bracketed(pred)
    if g_br is not None:
        if p_br is not None:
            # "(" and ")" alone are tuples; any "[" / "]" makes it an interval whose ends must agree.
            if (g_br[0], g_br[2]) != (p_br[0], p_br[2]):
                return False
            return _ordered_equal(p_br[1], g_br[1])
        p_items = _split_top(pred, ",")
        return g_br[0] == "(" and g_br[2] == ")" and len(p_items) > 1 and _ordered_equal(p_items, g_br[1])
    g_items = _split_top(gold, ",")
    if len(g_items) > 1:
        p_items = p_br[1] if p_br is not None and p_br[0] == "(" else _split_top(pred, ",")
        return _unordered_equal(p_items, g_items)
    if p_br is not None or len(_split_top(pred, ",")) > 1:
        return False
    if gold.count("=") == 1 and pred.count("=") == 1:
        return _equation_equal(pred, gold)
    if "=" in gold or "=" in pred:
        return False
    base = _base_subscript(gold)
    if base is not None:
        p_base = _base_subscript(pred)
        return (p_base or (_key(pred), base[1])) == base
    return _expr_equal(pred, gold)


def math_equal(prediction: str, gold: str) -> bool:
    """LaTeX-aware equivalence for MATH answers; never raises on any strings (see :func:`_math_equal`).

    Returns:
        Whether the two denote the same answer; False when they cannot be compared (a value past Python's
        int-to-str limit, nesting past the recursion limit).
    """
    try:
        return _math_equal(prediction, gold)
    except GRADER_ERRORS:
        return False


def _math_equal(prediction: str, gold: str) -> bool:
    """LaTeX-aware equivalence for MATH answers; may raise one of :data:`GRADER_ERRORS` on odd input (the grader
    records which).

    Both strings are normalised (:func:`normalize_math`), then compared as unions, matrices, intervals (the
    brackets must agree), tuples (ordered), bare lists (unordered), equations (up to a non-zero factor),
    option letters, words (case-insensitive) or values. Values are evaluated exactly with fractions where
    possible (so ``0.5 == \\frac12`` and ``18.00 == 18``), numerically otherwise (``\\sqrt``, ``\\pi``);
    expressions with variables are compared at three fixed rational points.

    Args:
        prediction: The extracted answer.
        gold: The reference answer.

    Returns:
        Whether the two denote the same answer.
    """
    pred, ref = normalize_math(prediction), normalize_math(gold)
    if not pred or not ref:
        return False
    p_letter = re.fullmatch(r"\(?([A-Z])\)?", _key(pred))
    g_letter = re.fullmatch(r"\(([A-Z])\)", _key(ref))
    if g_letter:
        return p_letter is not None and p_letter.group(1) == g_letter.group(1)
    return _struct_equal(pred, ref)


def _parse_math(segment: str) -> str | None:
    s = segment.strip()
    spans = re.findall(r"\$\$(.+?)\$\$|\$(.+?)\$", s, re.DOTALL)
    if spans and not (s.startswith("$") and s.endswith("$") and len(spans) == 1):
        # Prose with inline math ("The area is $12\pi$ square units."): the last formula is the answer.
        s = next(x for x in spans[-1] if x)
    s = _clean(s)
    s = re.sub(r"^(?:the\s+)?(?:final\s+)?(?:answer|result|value|solution)\s*(?:is|=|:)\s*", "", s, flags=re.I)
    return s or None
