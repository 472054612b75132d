"""What reading or comparing odd model output can raise, shared by the public functions that must not raise."""

from __future__ import annotations

GRADER_ERRORS: tuple[type[BaseException], ...] = (ArithmeticError, ValueError, RecursionError, TypeError)
"""What reading or comparing odd model output can raise (e.g. ``ValueError`` past Python's int-to-str limit,
``RecursionError`` on deep nesting); the grader turns them into a wrong answer."""
