"""One parse of a GGUF file per load.

transformers reads a GGUF file three times to load it (the config, the tokenizer and the weights each call
``load_gguf_checkpoint``, which builds a fresh ``gguf.GGUFReader``), and rebuilds gguf's tensor-name map once per
module of the model (about 400 times for a 24-layer model). Parsing is the slow part: ``GGUFReader`` walks the
vocabulary and merges field by field (2.5 s for SmolLM2-135M, 8.5 s for the Qwen2.5 files with 152k tokens, on
the 2-core CPU of session 21), and each name map costs about 10 ms. Inside :func:`gguf_parsed_once` the first
reader of a path is kept and handed out again, and the name map is memoised: the same objects transformers would
build, built once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["gguf_parsed_once"]

# The memoising stand-ins replace gguf's module attributes for the whole process while a load runs, so loads
# take turns (re-entrant: a load inside a load reuses the outer one's readers).
_LOADING = threading.RLock()


@contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """While active, ``gguf.GGUFReader(path)`` returns one reader per (path, mode) and ``gguf.get_tensor_name_map``
    is memoised; both are restored on exit, even on error."""
    import gguf

    with _LOADING:
        reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
        if getattr(reader_class, "_selfanchor_memoised", False):  # nested: the outer load's stand-ins serve
            yield
            return
        readers: dict[tuple[str, str], Any] = {}

        def shared_reader(path: Any, mode: Any = "r") -> Any:
            key = (str(path), mode)
            if key not in readers:
                readers[key] = reader_class(path, mode)
            return readers[key]

        shared_reader._selfanchor_memoised = True  # type: ignore[attr-defined]
        setattr(gguf, "GGUFReader", shared_reader)  # noqa: B010 (a module attribute swapped, not a typo)
        setattr(gguf, "get_tensor_name_map", functools.cache(name_map))  # noqa: B010
        try:
            yield
        finally:
            setattr(gguf, "GGUFReader", reader_class)  # noqa: B010
            setattr(gguf, "get_tensor_name_map", name_map)  # noqa: B010
            readers.clear()
