"""Readers of one answer in a benchmark's format (numbers, option letters, words, brackets), and the fallbacks
that read the whole output."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from .equivalence import _parse_math
from .formats import Options
from .locate import _MARKDOWN_RE, _clean
from .safe_eval import _math_value

# --------------------------------------------------------------------------------------------------------
# Numbers (GSM8K, BBH integer tasks, fallbacks)
# --------------------------------------------------------------------------------------------------------

_NUM_RE = re.compile(r"(?<![\w.])-?(?:\d+(?:\.\d+)?|\.\d+)")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER_WORDS_TEXT = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {w: i for i, w in enumerate(_NUMBER_WORDS_TEXT.split())}


def _number_text(s: str) -> str:
    s = s.replace("\u2212", "-").replace("\u2013", "-").replace("\\!", "").replace("{,}", ",")
    s = s.replace("\\$", " ").replace("$", " ").replace("\\%", " ").replace("%", " ")
    return _THOUSANDS_RE.sub("", s)


def _fmt_number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:
        return format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return f"{value.numerator}/{value.denominator}"


def _parse_number(segment: str, *, words: bool = False) -> Fraction | None:
    """The number an answer string states: after the last ``=``, the first number (``$1,800.00`` -> 1800)."""
    s = _number_text(_clean(segment))
    if "\\frac" in s or "\\dfrac" in s:
        value = _math_value(s.rsplit("=", 1)[-1])
        if isinstance(value, Fraction):
            return value
    tail = s.rsplit("=", 1)[-1]
    if _NUM_RE.search(tail):
        s = tail
    m = _NUM_RE.search(s)
    if m:
        return Fraction(m.group(0))
    if words:
        w = re.search(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", s, re.IGNORECASE)
        if w:
            return Fraction(_NUMBER_WORDS[w.group(1).lower()])
    return None


def _last_number(text: str) -> Fraction | None:
    matches = _NUM_RE.findall(_number_text(text))
    return Fraction(matches[-1]) if matches else None


def _as_number(s: str) -> Fraction | None:
    try:
        return Fraction(_number_text(s).strip().replace(" ", ""))
    except (ValueError, ZeroDivisionError):
        return _parse_number(s)


# --------------------------------------------------------------------------------------------------------
# Option letters (AQuA, T4D, BBH multiple choice)
# --------------------------------------------------------------------------------------------------------

_OPTION_LINE_RE = re.compile(r"^\s*\(?([A-Z])\s*[).:]\s*(.*?)\s*$", re.DOTALL)


def parse_options(question: str) -> dict[str, str]:
    """Options listed in a question: ``(A) ...`` (AQuA, BBH) or ``A. ...`` lines (T4D).

    Args:
        question: The full question text.

    Returns:
        ``{"A": "text", ...}`` in letter order, or ``{}`` when the question lists no lettered options (or the
        letters found do not run A, B, C, ...).
    """
    marker = max(question.rfind("Answer Choices:"), question.rfind("Options:"))
    tail = question[marker:] if marker >= 0 else question
    parts = re.split(r"\(([A-Z])\)\s*", tail)
    found: dict[str, str] = {}
    if len(parts) >= 3:
        for i in range(1, len(parts) - 1, 2):
            found[parts[i]] = parts[i + 1].strip()
    else:
        for line in tail.splitlines():
            m = re.match(r"^([A-Z])[.)]\s+(.+)$", line.strip())
            if m:
                found[m.group(1)] = m.group(2).strip()
    letters = "".join(found)
    return found if letters and "ABCDEFGHIJKLMNOPQRSTUVWXYZ".startswith(letters) else {}


def _options_map(options: Options) -> dict[str, str]:
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return {str(k).strip("() ").upper(): str(v) for k, v in options.items()}
    found: dict[str, str] = {}
    for item in options:
        m = _OPTION_LINE_RE.match(str(item))
        if m:
            found[m.group(1)] = m.group(2)
    return found


def _letter_at_start(s: str, letters: str) -> str | None:
    """A letter the answer string opens with: ``B``, ``(B)``, ``B)``, ``B.``, ``option B``, ``Answer: (B)``."""
    s = re.sub(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is\b)?\s*:?\s*", "", s, flags=re.I)
    if re.fullmatch(r"\(?\[?[a-z]\]?\)?", s) and s.strip("()[]").upper() in letters:
        return s.strip("()[]").upper()
    m = re.match(r"[(\[]?([A-Z])(?:[)\]]|[.:,;])?(?=\s|$|[)\]*])(\s+\S+)?", s)
    if not m or m.group(1) not in letters:
        return None
    # "A" and "I" open ordinary sentences ("A total of 40", "I think"): not an option without brackets.
    bracketed = s[:1] in "([" or s[1:2] in ")]"
    if m.group(1) in "AI" and not bracketed and m.group(2) and m.group(2).strip()[:1].islower():
        return None
    return m.group(1)


def _letter_in(s: str, letters: str) -> str | None:
    """An explicit option letter anywhere in an answer string: ``(B)``, ``option B``, ``B)``."""
    cls = f"[{letters}]"
    for pattern in (rf"\(({cls})\)", rf"(?:option|choice)\s*\(?({cls})\b", rf"(?<![\w(])({cls})\)"):
        m = re.search(pattern, s, re.IGNORECASE if "option" in pattern else 0)
        if m:
            return m.group(1).upper()
    return None


def _last_letter(text: str, letters: str) -> str | None:
    """The last standalone option letter in free text (fallback when no answer marker was written)."""
    cls = f"[{letters}]"
    patterns = (
        rf"\(({cls})\)",
        rf"(?<![\w(])({cls})\)",
        rf"(?i:option|choice)\s+\(?({cls})\b",
        rf"(?m)^\s*\(?({cls})\)?\.?\s*$",
    )
    best: tuple[int, str] | None = None
    for pattern in patterns:
        for m in re.finditer(pattern, text):
            if best is None or m.start(1) > best[0]:
                best = (m.start(1), m.group(1))
    return best[1] if best else None


def _norm_text(s: str) -> str:
    return re.sub(r"\s+", " ", _MARKDOWN_RE.sub("", s)).strip().strip(".").strip().lower()


def _letter_from_value(s: str, options: dict[str, str]) -> str | None:
    """Map an answer given as an option's value (``40``, ``Nathan``) to that option's letter."""
    if not options:
        return None
    target = _norm_text(s)
    if not target:
        return None
    same = [k for k, v in options.items() if _norm_text(v) == target]
    if len(same) == 1:
        return same[0]
    if same:
        return None
    value = _option_number(s)
    if value is not None:
        numeric = [k for k, v in options.items() if _option_number(v) == value]
        if len(numeric) == 1:
            return numeric[0]
        if numeric:
            return None
    # T4D answers often name the character in a sentence; accept it when exactly one option is named.
    named = [
        k
        for k, v in options.items()
        if _norm_text(v) and re.search(rf"(?<!\w){re.escape(_norm_text(v))}(?!\w)", target)
    ]
    return named[0] if len(named) == 1 else None


def _option_number(s: str) -> Fraction | None:
    """The value of an option such as ``3.85 miles``, ``$9,000`` or ``1/2``; None for prose or several numbers."""
    t = re.sub(r"\s+", " ", _number_text(_clean(s))).strip()
    if len(t) > 80:
        return None
    if not re.fullmatch(r"-?[\d./ ]+\s*(?:[a-zA-Z][a-zA-Z./ ]*)?", t) or len(re.findall(r"\d+(?:\.\d+)?", t)) > 2:
        return None
    m = re.match(r"(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?", t)
    if not m:
        return None
    try:
        num = Fraction(m.group(1))
        return num / Fraction(m.group(2)) if m.group(2) else num
    except ZeroDivisionError:
        return None


def _parse_choice(segment: str, letters: str, options: dict[str, str]) -> str | None:
    s = _clean(_unwrap_text(segment))
    return _letter_at_start(s, letters) or _letter_in(s, letters) or _letter_from_value(s, options)


def _unwrap_text(s: str) -> str:
    return re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", s)


def _letters_for(options: dict[str, str], default: str) -> str:
    return "".join(options) if options else default


# --------------------------------------------------------------------------------------------------------
# Words (StrategyQA and BBH binary tasks)
# --------------------------------------------------------------------------------------------------------

_BINARY = {
    "true_false": (("true", "True"), ("false", "False")),
    "Yes_No": (("yes", "Yes"), ("no", "No")),
    "yes_no": (("yes", "yes"), ("no", "no")),
    "valid_invalid": (("valid", "valid"), ("invalid", "invalid")),
}


def _first_word(s: str, words: Mapping[str, str]) -> str | None:
    s = _clean(_unwrap_text(s))
    if re.search(r"\bnot\s+valid\b", s, re.IGNORECASE) and "invalid" in words.values():
        return "invalid"
    m = re.search(r"\b(" + "|".join(words) + r")\b", s, re.IGNORECASE)
    return words[m.group(1).lower()] if m else None


def _last_word(text: str, words: Mapping[str, str]) -> str | None:
    found = re.findall(r"\b(" + "|".join(words) + r")\b", text, re.IGNORECASE)
    return words[found[-1].lower()] if found else None


_STRATEGYQA_WORDS = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}


# --------------------------------------------------------------------------------------------------------
# BBH free-form tasks
# --------------------------------------------------------------------------------------------------------

_BRACKETS = "()[]{}<>"


def _dyck(s: str) -> str | None:
    tokens = [ch for ch in _clean(s) if ch in _BRACKETS]
    return " ".join(tokens) if tokens else None


def _last_bracket_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        stripped = line.strip().strip("`*$").strip()
        if stripped and all(ch in _BRACKETS or ch.isspace() or ch == "," for ch in stripped):
            return _dyck(stripped)
    return None


def _words(s: str) -> str | None:
    s = _clean(s)
    s = re.sub(r"(?m)^\s*(?:\d+[.)]|[-*•])\s+", " ", s)
    tokens = [t.strip("\"'`.,;:()[]*").lower() for t in re.split(r"[\s,;]+", s)]
    # List markers ("1.", "-") survive when a numbered list was joined onto one line.
    tokens = [t for t in tokens if t and not re.fullmatch(r"\d+|[-•]", t)]
    return " ".join(tokens) if tokens else None


def _last_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line
    return None


def _infer_bbh_format(gold: str) -> str:
    g = gold.strip()
    if re.fullmatch(r"\([A-Z]\)", g):
        return "option"
    if g in ("True", "False"):
        return "true_false"
    if g in ("Yes", "No"):
        return "Yes_No"
    if g in ("yes", "no"):
        return "yes_no"
    if g in ("valid", "invalid"):
        return "valid_invalid"
    if re.fullmatch(r"-?\d+", g):
        return "integer"
    if g and all(ch in _BRACKETS or ch.isspace() for ch in g):
        return "dyck"
    return "word_sorting"


_PROSE_WORDS = 12  # an answer line with more words than this (and no "=") is a sentence of reasoning


@dataclass(frozen=True)
class Reader:
    """How answers of one format are read.

    Attributes:
        candidate: Reads one candidate answer string (the text after ``Final Answer:``, a ``\\boxed{}``, ...).
        fallback: Reads the whole output when no candidate could be read.
    """

    candidate: Callable[[str], str | None]
    fallback: Callable[[str], str | None]


def _read_number(s: str, *, words: bool) -> str | None:
    # "Final Answer: To find the difference, we compare the roll greater than 3 with ..." is reasoning written
    # under the answer label, not a stated answer: its first number is no answer, so look further on.
    if len(s.split()) > _PROSE_WORDS and "=" not in s:
        return None
    value = _parse_number(s, words=words)
    return _fmt_number(value) if value is not None else None


def _last_number_text(text: str) -> str | None:
    value = _last_number(text)
    return _fmt_number(value) if value is not None else None


def _number_reader(options: dict[str, str], *, words: bool = False) -> Reader:
    return Reader(lambda s: _read_number(s, words=words), _last_number_text)


def _letter_reader(options: dict[str, str]) -> Reader:
    letters = _letters_for(options, "ABCDE")
    return Reader(lambda s: _parse_choice(s, letters, options), lambda text: _last_letter(text, letters))


def _option_reader(options: dict[str, str]) -> Reader:
    letters = _letters_for(options, "ABCDEFGHIJKLMNOPQR")

    def in_parentheses(letter: str | None) -> str | None:
        return f"({letter})" if letter else None

    return Reader(
        lambda s: in_parentheses(_parse_choice(s, letters, options)),
        lambda text: in_parentheses(_last_letter(text, letters)),
    )


def _words_reader(candidate_words: dict[str, str], fallback_words: dict[str, str]) -> Callable[..., Reader]:
    return lambda options: Reader(
        lambda s: _first_word(s, candidate_words), lambda text: _last_word(text, fallback_words)
    )


def _sorted_words_fallback(text: str) -> str | None:
    line = _last_line(text)
    return _words(line) if line else None


# The reader of each answer format: a benchmark's own format (gsm8k, aqua, ...) or a BBH task's (option, dyck, ...).
_READERS: dict[str, Callable[[dict[str, str]], Reader]] = {
    "gsm8k": _number_reader,
    "aqua": _letter_reader,
    "t4d": _letter_reader,
    "math500": lambda options: Reader(_parse_math, _last_number_text),
    "strategyqa": _words_reader(_STRATEGYQA_WORDS, {"yes": "yes", "no": "no"}),
    "option": _option_reader,
    "integer": lambda options: _number_reader(options, words=True),
    "dyck": lambda options: Reader(_dyck, _last_bracket_line),
    "word_sorting": lambda options: Reader(_words, _sorted_words_fallback),
    **{fmt: _words_reader(dict(words), dict(words)) for fmt, words in _BINARY.items()},
}


def reader_for(bench: str, fmt: str | None, options: dict[str, str]) -> Reader:
    """The reader of a benchmark's answers (``fmt``: a BBH task's format); free text for an unknown format."""
    build = _READERS.get(bench) or _READERS.get(fmt or "")
    if build is None:
        return Reader(lambda s: _clean(s) or None, lambda text: None)
    return build(options)
