"""Third-party noise while a model loads, kept out of normal output; shown with ``SELFANCHOR_DEBUG=1`` (which
``selfanchor --debug`` sets).

Loading a model imports transformers' quantizers, which import torchao when it is installed; torchao then logs
"Failed to load …/_C_mxfp8….so" and "…/_C_cutlass_90a.abi3.so" (CUDA kernels a CPU machine cannot load, and
needs no more than it needs CUDA) and "Detected no triton", and registers enums with torch's pytree, which logs a
deprecation warning for each. None of it concerns the user, and it came before every command's own first line.
transformers' per-load progress bars ("Loading weights: 100%") are hidden too: the CLI prints its own load line.
Only these loggers are raised to ERROR, and only while loading: their errors, and every other library's warnings,
still show.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

__all__ = ["DEBUG_ENV", "debug_enabled", "quiet_loading"]

DEBUG_ENV = "SELFANCHOR_DEBUG"
_NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def debug_enabled() -> bool:
    """Whether third-party loading messages are wanted (``SELFANCHOR_DEBUG`` set to anything but ``""``/``0``)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """While the block runs (a model load), torchao's and torch pytree's warnings and transformers' progress bars
    are hidden, unless :func:`debug_enabled`."""
    if debug_enabled():
        yield
        return
    from transformers.utils import logging as hf_logging

    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    bars = hf_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
