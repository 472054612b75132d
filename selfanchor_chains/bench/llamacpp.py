"""llama.cpp's plain decoding of the same GGUF, the speed anchor of ``selfanchor bench speed`` (issue #11).

A registry model is converted from a GGUF file; llama.cpp decoding that very file is the fastest plain CPU decode
of the same weights, so the speed bench shows it beside ours where llama.cpp is installed. It comes from the
prebuilt ``xllamacpp`` wheel, which this package does not depend on::

    pip install --no-deps xllamacpp==2026.10.11549

Each run starts a llama.cpp server of its own (its load is not timed: an idle server's threads would otherwise
compete with the other methods for the same cores), warms it up with 8 tokens, then times one completion of the
bench's prompt ids, greedy, forced to the bench's token count (``ignore_eos``), prompt prefilled (no prompt cache).
llama.cpp decodes the GGUF's own quantized weights; ours decode the dequantized (or re-quantized) weights.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install --no-deps xllamacpp==2026.10.11549"


def llamacpp_available() -> bool:
    """Whether ``xllamacpp`` (prebuilt llama.cpp) can be imported."""
    return importlib.util.find_spec("xllamacpp") is not None


class LlamaCppDecode:
    """Times llama.cpp's plain decoding of one prompt.

    Args:
        gguf: The GGUF file (a registry model's, see :func:`~selfanchor_chains.models.cache.resolve_gguf`).
        prompt_ids: The prompt's token ids (the same ids the other methods decode from).
        new_tokens: Tokens to decode (EOS ignored, so every run produces this many).
        threads: CPU threads for prefill and decoding.

    Raises:
        FileNotFoundError: ``gguf`` is not a file.
        ValueError: ``prompt_ids`` is empty or ``new_tokens``/``threads`` is below 1.
    """

    def __init__(self, gguf: str | Path, prompt_ids: Sequence[int], new_tokens: int, threads: int) -> None:
        if not Path(gguf).is_file():
            raise FileNotFoundError(f"no GGUF file at {str(gguf)!r}")
        if not prompt_ids or new_tokens < 1 or threads < 1:
            raise ValueError("llama.cpp needs prompt ids, new_tokens >= 1 and threads >= 1")
        self.gguf = str(gguf)
        self.threads = threads
        self.request = {
            "prompt": [int(i) for i in prompt_ids],
            "max_tokens": new_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "cache_prompt": False,  # every run prefills the prompt, as ours do
        }
        self.context = len(prompt_ids) + new_tokens + 16

    def _params(self) -> object:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = self.gguf
        params.n_ctx = max(512, self.context)
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        return params

    def __call__(self) -> tuple[float, int]:
        """One timed run: ``(seconds, tokens decoded)``."""
        import xllamacpp

        server = xllamacpp.Server(self._params())
        try:
            server.handle_completions({**self.request, "max_tokens": 8})  # warm-up, untimed
            start = time.perf_counter()
            out = server.handle_completions(self.request)
            elapsed = time.perf_counter() - start
        finally:
            del server
            gc.collect()  # the server's threads end with it, before the next method runs
        return elapsed, int(out["timings"]["predicted_n"])


# -- the llama.cpp steering backend beside plain llama.cpp, in one process (issue #37) ---------------------------


def plain_llamacpp_greedy(model: Any, prompts: Sequence[Sequence[int]], new_tokens: int) -> list[list[int]]:
    """Plain llama.cpp greedy decoding of each prompt (one sequence per row, all rows in one ``llama_decode`` per
    step, the argmax of each row's logits), EOS ignored: the baseline of the steering backend's speed and the
    reference of its ω = 1 exactness.

    Args:
        model: A :class:`~selfanchor_chains.engine.llamacpp_model.LlamaCppModel`.
        prompts: Token ids per row.
        new_tokens: Tokens to decode per row.

    Raises:
        RuntimeError: Fewer free slots than rows.
    """
    import numpy as np

    from ..engine.llamacpp_model import BatchEntry

    slots = [model.acquire_slot() for _ in prompts]
    try:
        if any(slot is None for slot in slots):
            raise RuntimeError(f"{len(prompts)} rows need as many free slots of the llama.cpp context")
        seqs = [2 * int(slot) for slot in slots if slot is not None]
        rows = [[int(t) for t in p] for p in prompts]
        entries = [
            BatchEntry(token, t, (seq,), t == len(row) - 1) for row, seq in zip(rows, seqs, strict=True)
            for t, token in enumerate(row)
        ]  # fmt: skip
        out: list[list[int]] = [[] for _ in rows]
        for _ in range(new_tokens):
            logits = model.decode(entries)
            entries = []
            for k, (row, seq) in enumerate(zip(rows, seqs, strict=True)):
                token = int(np.argmax(logits[k]))
                out[k].append(token)
                entries.append(BatchEntry(token, len(row) + len(out[k]) - 1, (seq,), True))
        return out
    finally:
        for slot in slots:
            if slot is not None:
                model.release_slot(slot)
