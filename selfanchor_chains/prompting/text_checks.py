"""Text a tokenizer cannot encode, caught before it reaches the tokenizer (and so before any forward).

A Python ``str`` may hold lone surrogates (U+D800–U+DFFF: ``"a \\ud800 b"``, what ``json.loads`` makes of a
malformed ``"\\ud800"`` escape); they have no UTF-8 form, and the Rust tokenizers fail on them with an unhelpful
``TypeError: TextEncodeInput must be Union[...]``. Here they become a typed ``ValueError`` that says where.
"""

from __future__ import annotations

__all__ = ["UnencodableTextError", "check_encodable"]


class UnencodableTextError(ValueError):
    """Text holds a character with no UTF-8 form (a lone surrogate), so no tokenizer can encode it.

    Attributes:
        what: Which text (``"prompt"``, ``"message 1 content"``, ``"anchor 0"``, ...).
        position: The character index of the first such character in that text.
    """

    def __init__(self, what: str, position: int, char: str) -> None:
        super().__init__(
            f"{what} holds a lone surrogate U+{ord(char):04X} at index {position}: it has no UTF-8 form, so the "
            f"tokenizer cannot encode it (decode the source text with errors='replace', or remove it)"
        )
        self.what = what
        self.position = position


def check_encodable(text: str, what: str = "prompt") -> str:
    """Return ``text`` unchanged when a tokenizer can encode it.

    Raises:
        UnencodableTextError: ``text`` holds a lone surrogate; the error names ``what`` and the index.
    """
    try:
        text.encode("utf-8")  # C speed; fails exactly on the surrogates
    except UnicodeEncodeError as exc:
        raise UnencodableTextError(what, exc.start, text[exc.start]) from None
    return text
