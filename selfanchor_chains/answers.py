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

from __future__ import annotations

import cmath
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

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

Options = Sequence[str] | Mapping[str, str] | None

_BENCHES = ("gsm8k", "aqua", "math500", "strategyqa", "bbh", "t4d", "conflictqa")

# Answer format of each BBH task, read off the gold `target` values of the data.
BBH_TASK_FORMATS: dict[str, str] = {
    "boolean_expressions": "true_false",
    "causal_judgement": "Yes_No",
    "date_understanding": "option",
    "disambiguation_qa": "option",
    "dyck_languages": "dyck",
    "formal_fallacies": "valid_invalid",
    "geometric_shapes": "option",
    "hyperbaton": "option",
    "logical_deduction_five_objects": "option",
    "logical_deduction_seven_objects": "option",
    "logical_deduction_three_objects": "option",
    "movie_recommendation": "option",
    "multistep_arithmetic_two": "integer",
    "navigate": "Yes_No",
    "object_counting": "integer",
    "penguins_in_a_table": "option",
    "reasoning_about_colored_objects": "option",
    "ruin_names": "option",
    "salient_translation_error_detection": "option",
    "snarks": "option",
    "sports_understanding": "yes_no",
    "temporal_sequences": "option",
    "tracking_shuffled_objects_five_objects": "option",
    "tracking_shuffled_objects_seven_objects": "option",
    "tracking_shuffled_objects_three_objects": "option",
    "web_of_lies": "Yes_No",
    "word_sorting": "word_sorting",
}

_BBH_FORMAT_HINTS = {
    "option": "Give the final answer as the option letter in parentheses, e.g. (A).",
    "true_false": "Give the final answer as True or False.",
    "Yes_No": "Give the final answer as Yes or No.",
    "yes_no": "Give the final answer as yes or no.",
    "valid_invalid": "Give the final answer as valid or invalid.",
    "integer": "Give the final answer as a single integer.",
    "dyck": "Give the final answer as the sequence of closing brackets, separated by spaces.",
    "word_sorting": "Give the final answer as the sorted words, separated by spaces.",
}

ANSWER_HINTS: dict[str, str] = {
    "gsm8k": "Give the final answer as a single number.",
    "aqua": "Give the final answer as the option letter (A, B, C, D or E).",
    "math500": "Give the final answer as a simplified LaTeX expression.",
    "strategyqa": "Give the final answer as yes or no.",
    "bbh": "Give the final answer in the exact format the question asks for.",
    "t4d": "Give the final answer as the option letter (A, B, C or D).",
    "conflictqa": "Give the final answer as a short name or phrase, nothing else.",
    **{f"bbh:{task}": _BBH_FORMAT_HINTS[fmt] for task, fmt in BBH_TASK_FORMATS.items()},
}


def _split_spec(bench: str, task: str | None) -> tuple[str, str | None]:
    """Accept ``"bbh:task"`` as well as ``("bbh", task)``, and reject unknown benchmarks."""
    name = bench.strip().lower()
    if ":" in name:
        name, _, spec_task = name.partition(":")
        task = task or spec_task
    if name not in _BENCHES:
        raise ValueError(f"unknown benchmark {bench!r}; expected one of {', '.join(_BENCHES)}")
    return name, task


def answer_hint(bench: str, task: str | None = None) -> str:
    """The answer-format sentence to append to a prompt.

    Args:
        bench: Benchmark name, or ``"bbh:<task>"``.
        task: BBH task name (ignored for the other benchmarks).

    Returns:
        A one-sentence instruction such as ``"Give the final answer as a single number."``; BBH tasks get
        their own (option letter, True/False, the sorted words, ...), unknown BBH tasks the generic one.
    """
    name, task = _split_spec(bench, task)
    if name == "bbh" and task:
        return ANSWER_HINTS.get(f"bbh:{task}", ANSWER_HINTS["bbh"])
    return ANSWER_HINTS[name]


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


# --------------------------------------------------------------------------------------------------------
# MATH-500: a small safe evaluator (exact fractions where possible, complex floats otherwise)
# --------------------------------------------------------------------------------------------------------

Value = Fraction | complex


class _EvalError(Exception):
    pass


_TOKEN_RE = re.compile(r"\s*(?:(\d+\.\d*|\.\d+|\d+)|(\\[a-zA-Z]+|\\.)|(\S))")
_FUNCS: dict[str, Callable[[complex], complex]] = {
    "sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "ln": cmath.log, "log": cmath.log, "exp": cmath.exp,
    "cot": lambda z: 1 / cmath.tan(z), "sec": lambda z: 1 / cmath.cos(z), "csc": lambda z: 1 / cmath.sin(z),
    "arcsin": cmath.asin, "arccos": cmath.acos, "arctan": cmath.atan,
    "sinh": cmath.sinh, "cosh": cmath.cosh, "tanh": cmath.tanh,
}  # fmt: skip
_ATOM_CMDS = frozenset({"frac", "sqrt", "pi", "{", *_FUNCS})
_MAX_TOKENS = 400


def _sample(letter: str, k: int) -> Fraction:
    """A fixed rational value for a variable: distinct per letter and per trial, the same for both sides."""
    return Fraction(3 * ord(letter) + 11 * k + 5, 7 + 4 * k)


class _Parser:
    """Recursive-descent evaluator for the arithmetic subset of LaTeX that MATH answers use."""

    def __init__(self, text: str, trial: int) -> None:
        self.tokens: list[tuple[str, str]] = []
        for m in _TOKEN_RE.finditer(text):
            if m.group(1):
                self.tokens.append(("num", m.group(1)))
            elif m.group(2):
                self.tokens.append(("cmd", m.group(2)[1:]))
            elif m.group(3):
                self.tokens.append(("chr", m.group(3)))
        if len(self.tokens) > _MAX_TOKENS:
            raise _EvalError("too long")
        self.pos = 0
        self.trial = trial
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _EvalError("unexpected end")
        self.pos += 1
        return tok

    def expect(self, ch: str) -> None:
        if self.take() != ("chr", ch):
            raise _EvalError(f"expected {ch}")

    def parse(self) -> Value:
        value = self.expr()
        if self.peek() is not None:
            raise _EvalError("trailing input")
        return value

    def expr(self) -> Value:
        self.depth += 1
        if self.depth > 60:
            raise _EvalError("too deep")
        value = self.term()
        while (tok := self.peek()) in (("chr", "+"), ("chr", "-")):
            self.take()
            rhs = self.term()
            value = value + rhs if tok == ("chr", "+") else value - rhs
        self.depth -= 1
        return value

    def starts_atom(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        kind, val = tok
        return (
            kind == "num"
            or (kind == "chr" and (val.isalpha() or val in "({["))
            or (kind == "cmd" and val in _ATOM_CMDS)
        )

    def term(self) -> Value:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in (("chr", "*"), ("cmd", "cdot"), ("cmd", "times"), ("cmd", "ast")):
                self.take()
                value = value * self.unary()
            elif tok in (("chr", "/"), ("cmd", "div")):
                self.take()
                value = _div(value, self.unary())
            elif self.starts_atom():
                value = value * self.power()
            else:
                return value

    def unary(self) -> Value:
        tok = self.peek()
        if tok == ("chr", "-"):
            self.take()
            return -self.unary()
        if tok == ("chr", "+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Value:
        base = self.postfix(self.atom())
        if self.peek() == ("chr", "^"):
            self.take()
            signed = self.peek() in (("chr", "-"), ("chr", "+"))
            return _pow(base, self.unary() if signed else self.postfix(self.atom()))
        return base

    def postfix(self, value: Value) -> Value:
        while self.peek() == ("chr", "!"):
            self.take()
            if not (isinstance(value, Fraction) and value.denominator == 1 and 0 <= value <= 200):
                raise _EvalError("bad factorial")
            value = Fraction(math.factorial(int(value)))
        return value

    def arg(self) -> Value:
        """A macro argument: a brace group or a single character (``\\frac43``, ``\\sqrt3``)."""
        tok = self.peek()
        if tok == ("chr", "{"):
            self.take()
            value = self.expr()
            self.expect("}")
            return value
        if tok is not None and tok[0] == "num" and len(tok[1]) > 1:
            self.tokens[self.pos] = ("num", tok[1][1:])
            return Fraction(tok[1][0])
        return self.atom()

    def atom(self) -> Value:
        kind, val = self.take()
        if kind == "num":
            return Fraction(val)
        if kind == "chr":
            closing = {"(": ")", "{": "}", "[": "]", "|": "|"}.get(val)
            if closing:
                inner = self.expr()
                self.expect(closing)
                if val == "|":
                    return abs(inner) if isinstance(inner, Fraction) else complex(abs(inner))
                return inner
            if val == "i":
                return 1j
            if val.isalpha() and val.isascii():
                return _sample(val, self.trial)
            raise _EvalError(f"unexpected {val!r}")
        if val == "{":
            inner = self.expr()
            if self.take() != ("cmd", "}"):
                raise _EvalError("expected \\}")
            return inner
        if val == "frac":
            num = self.arg()
            return _div(num, self.arg())
        if val == "sqrt":
            if self.peek() == ("chr", "["):
                self.take()
                index = self.expr()
                self.expect("]")
                return _pow(self.arg(), _div(Fraction(1), index))
            return _sqrt(self.arg())
        if val == "pi":
            return complex(math.pi)
        if val in _FUNCS:
            exponent: Value | None = None
            if self.peek() == ("chr", "^"):
                self.take()
                exponent = self.atom()
            result: Value = _FUNCS[val](complex(self.unary()))
            return _pow(result, exponent) if exponent is not None else result
        raise _EvalError(f"unsupported \\{val}")


def _div(a: Value, b: Value) -> Value:
    if b == 0:
        raise _EvalError("division by zero")
    return a / b


def _sqrt(a: Value) -> Value:
    if isinstance(a, Fraction) and a >= 0:
        rn, rd = math.isqrt(a.numerator), math.isqrt(a.denominator)
        if rn * rn == a.numerator and rd * rd == a.denominator:
            return Fraction(rn, rd)
    return cmath.sqrt(complex(a))


def _pow(base: Value, exponent: Value) -> Value:
    if isinstance(base, Fraction) and isinstance(exponent, Fraction):
        if exponent.denominator == 1 and abs(exponent) <= 256 and max(abs(base.numerator), base.denominator) < 10**40:
            if base == 0 and exponent < 0:
                raise _EvalError("division by zero")
            return base ** int(exponent)
        if exponent == Fraction(1, 2):
            return _sqrt(base)
    try:
        result = complex(base) ** complex(exponent)
    except (OverflowError, ZeroDivisionError) as exc:
        raise _EvalError("pow") from exc
    return result


def _evaluate(text: str, trial: int = 0) -> Value | None:
    """Value of an expression, or None when it is not plain arithmetic (text, intervals, \\infty, ...)."""
    if re.search(r"[a-zA-Z]{3,}", re.sub(r"\\[a-zA-Z]+", " ", text)):
        return None  # a word ("east", "ellipse") is text, not a product of variables
    try:
        value = _Parser(text, trial).parse()
    except (_EvalError, ValueError, OverflowError, ZeroDivisionError, RecursionError):
        return None
    if isinstance(value, complex) and not (math.isfinite(value.real) and math.isfinite(value.imag)):
        return None
    return value


def _math_value(text: str) -> Value | None:
    return _evaluate(normalize_math(text))


def _values_equal(a: Value, b: Value) -> bool:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    za, zb = complex(a), complex(b)
    return abs(za - zb) <= 1e-9 * max(1.0, abs(za), abs(zb))


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
    """LaTeX-aware equivalence for MATH answers.

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


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def _bbh_format(task: str | None) -> str | None:
    return BBH_TASK_FORMATS.get(task) if task else None


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


def _parser_for(bench: str, fmt: str | None, options: dict[str, str]) -> Callable[[str], str | None]:
    """How one candidate answer string is read in a benchmark's format."""

    def number(s: str) -> str | None:
        # "Final Answer: To find the difference, we compare the roll greater than 3 with ..." is reasoning written
        # under the answer label, not a stated answer: its first number is no answer, so look further on.
        if len(s.split()) > _PROSE_WORDS and "=" not in s:
            return None
        value = _parse_number(s, words=fmt == "integer")
        return _fmt_number(value) if value is not None else None

    if bench == "gsm8k":
        return number
    if bench in ("aqua", "t4d"):
        letters = _letters_for(options, "ABCDE")
        return lambda s: _parse_choice(s, letters, options)
    if bench == "math500":
        return _parse_math
    if bench == "strategyqa":
        return lambda s: _first_word(s, _STRATEGYQA_WORDS)
    # bbh
    if fmt == "option":
        letters = _letters_for(options, "ABCDEFGHIJKLMNOPQR")

        def option(s: str) -> str | None:
            letter = _parse_choice(s, letters, options)
            return f"({letter})" if letter else None

        return option
    if fmt in _BINARY:
        words = dict(_BINARY[fmt])
        return lambda s: _first_word(s, words)
    if fmt == "integer":
        return number
    if fmt == "dyck":
        return _dyck
    if fmt == "word_sorting":
        return _words
    return lambda s: _clean(s) or None


def _fallback(bench: str, fmt: str | None, text: str, options: dict[str, str]) -> str | None:
    if bench in ("gsm8k", "math500") or fmt == "integer":
        value = _last_number(text)
        return _fmt_number(value) if value is not None else None
    if bench in ("aqua", "t4d"):
        return _last_letter(text, _letters_for(options, "ABCDE"))
    if bench == "strategyqa":
        return _last_word(text, {"yes": "yes", "no": "no"})
    if fmt == "option":
        letter = _last_letter(text, _letters_for(options, "ABCDEFGHIJKLMNOPQR"))
        return f"({letter})" if letter else None
    if fmt in _BINARY:
        return _last_word(text, dict(_BINARY[fmt]))
    if fmt == "dyck":
        return _last_bracket_line(text)
    if fmt == "word_sorting":
        line = _last_line(text)
        return _words(line) if line else None
    return None


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


MAX_OUTPUT_CHARS = 20_000
"""Extraction reads at most the last this many characters of a model output (the answer is at its end)."""

MAX_ANSWER_CHARS = 1_000
"""A prediction longer than this is graded wrong without being parsed (no answer is that long)."""

GRADER_ERRORS: tuple[type[BaseException], ...] = (ArithmeticError, ValueError, RecursionError, TypeError)
"""What reading or comparing odd model output can raise (e.g. ``OverflowError`` on ``(10^{39})^{256}``,
``ValueError`` past Python's int-to-str limit); the grader turns them into a wrong answer."""


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
    parse = _parser_for(name, fmt, opts)
    stripped = _strip_code_blocks(text)
    for source in (stripped, text) if stripped != text else (text,):
        for candidate in _candidates(source):
            answer = parse(candidate)
            if answer is not None:
                return answer
        answer = _fallback(name, fmt, source, opts)
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
        return math_equal(_parse_math(prediction) or prediction, gold)
    if name == "conflictqa":
        from .conflict import mentions

        return mentions(prediction, [gold])
    fmt = (_bbh_format(task) or _infer_bbh_format(gold)) if name == "bbh" else None
    if name == "gsm8k" or fmt == "integer":
        p, g = _parse_number(prediction), _as_number(gold)
        return p is not None and g is not None and p == g
    parse = _parser_for(name, fmt, {})
    p_norm, g_norm = parse(prediction), parse(gold)
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
