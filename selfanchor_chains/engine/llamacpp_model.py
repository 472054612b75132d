"""A GGUF model in llama.cpp (through ``llama-cpp-python``'s low-level API), prepared for two-branch decoding.

One llama.cpp context serves every decode session over the model. Each row of a session holds a *slot*: two
sequence ids of the context's unified KV cache, the original branch (``2·slot``) and the masked branch
(``2·slot + 1``). The masked sequence holds the same tokens minus the anchors, each at its original position, and
shares the cells of the prefix before the first anchor with the original sequence (a cell may belong to several
sequences); every row's tokens of both branches go through one ``llama_decode`` per step.

llama.cpp (since mid-2025) rejects a sequence whose positions have a hole; ``scripts/llamacpp_build.py`` builds
``llama-cpp-python`` with that check relaxed to "positions increase" (:func:`gaps_supported` tells which build is
installed). The rest of llama.cpp is unchanged: its kernels for every GGUF quantisation, no conversion.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .requests import DecodingInputError

__all__ = [
    "INSTALL_HINT",
    "BatchEntry",
    "LlamaCppDecodeError",
    "LlamaCppModel",
    "LlamaCppUnavailableError",
    "gaps_supported",
    "llamacpp_available",
]

INSTALL_HINT = (
    "python scripts/llamacpp_build.py (llama-cpp-python 0.3.36 with position gaps allowed; make setup runs it)"
)


class LlamaCppUnavailableError(ImportError):
    """``llama-cpp-python`` is not installed, or its build rejects the position gaps the masked branch needs."""


class LlamaCppDecodeError(RuntimeError):
    """``llama_decode`` failed (its return code and what it means are in the message)."""


def llamacpp_available() -> bool:
    """Whether ``llama_cpp`` (llama-cpp-python) can be imported."""
    return importlib.util.find_spec("llama_cpp") is not None


@functools.cache
def gaps_supported() -> bool:
    """Whether the installed llama-cpp-python is the build that accepts a hole in a sequence's positions."""
    try:
        return importlib.metadata.version("llama-cpp-python").endswith("+gaps")
    except importlib.metadata.PackageNotFoundError:
        return False


_DECODE_CODES = {
    1: "no room in the KV cache for the batch (raise n_ctx or decode fewer rows at once)",
    2: "aborted",
    -1: "invalid input batch",
}

_BACKEND_READY = False
_BACKEND_GUARD = threading.Lock()


def _llama() -> Any:
    """The ``llama_cpp`` module, its backend initialised once and its logging quiet; raises when unavailable."""
    global _BACKEND_READY
    if not llamacpp_available():
        raise LlamaCppUnavailableError(f"the llama.cpp backend needs llama-cpp-python: {INSTALL_HINT}")
    import llama_cpp

    with _BACKEND_GUARD:
        if not _BACKEND_READY:
            llama_cpp.llama_backend_init()
            _quiet_logs(llama_cpp)
            _BACKEND_READY = True
    return llama_cpp


_LOG_CALLBACK: Any = None  # kept alive: llama.cpp calls it for as long as the process runs


def _quiet_logs(llama_cpp: Any) -> None:
    """Send llama.cpp's load chatter nowhere, errors to stderr (SELFANCHOR_LLAMA_LOG=1 keeps everything)."""
    global _LOG_CALLBACK
    if os.environ.get("SELFANCHOR_LLAMA_LOG") == "1":
        return

    def log(level: int, text: bytes, _data: Any) -> None:
        if level == 4 and text:  # GGML_LOG_LEVEL_ERROR
            os.write(2, text)

    _LOG_CALLBACK = llama_cpp.llama_log_callback(log)
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


@dataclass
class BatchEntry:
    """One token of a ``llama_decode`` batch: its id, position, the sequences its cell joins (the first one is the
    sequence whose cells it attends to) and whether its logits are wanted."""

    token: int
    pos: int
    seqs: tuple[int, ...]
    logits: bool = False


@dataclass
class _Slots:
    """The free row slots of the context (slot s owns sequence ids 2s and 2s+1)."""

    count: int
    free: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free = list(range(self.count))


class LlamaCppModel:
    """A GGUF file loaded in llama.cpp, with one context whose unified KV cache the decode sessions share.

    Args:
        model_path: The GGUF file.
        n_ctx: KV cells of the context, shared by every row of every session (a steered row needs up to twice
            its length, less the shared prefix).
        slots: How many rows can decode at once over all sessions (each takes two sequence ids).
        n_threads: CPU threads (default: every core).
        n_batch: The most tokens one ``llama_decode`` takes; longer batches are split into several calls.
        exact: Keep keys and values in float32 and compute attention without flash attention (llama.cpp's defaults
            are a float16 KV cache and flash attention where it is available): slower, for comparisons with the
            torch engine on a float GGUF.

    Raises:
        LlamaCppUnavailableError: llama-cpp-python is not installed.
        FileNotFoundError: No file at ``model_path``.
        DecodingInputError: A size below 1.
        OSError: llama.cpp could not load the file (not a GGUF, an unknown architecture).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 8192,
        slots: int = 16,
        n_threads: int | None = None,
        n_batch: int = 2048,
        exact: bool = False,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {str(path)!r}")
        if min(n_ctx, slots, n_batch) < 1 or (n_threads is not None and n_threads < 1):
            raise DecodingInputError("n_ctx, slots, n_batch and n_threads must be >= 1")
        self.lib = _llama()
        self.path = path
        self.lock = threading.RLock()  # every call into the context: sessions and slot releases take turns
        self._slots = _Slots(slots)
        self.n_batch = n_batch
        self.n_threads = n_threads or os.cpu_count() or 1
        self.exact = exact
        lib = self.lib
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        self._model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise OSError(f"llama.cpp could not load {str(path)!r} (not a GGUF file, or an unknown architecture)")
        self._ctx = self._new_context(n_ctx, slots)
        self._vocab = lib.llama_model_get_vocab(self._model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = int(lib.llama_n_ctx(self._ctx))
        self.n_ctx_train = int(lib.llama_model_n_ctx_train(self._model))
        self._memory = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(n_batch, 0, 2)
        self._closed = False

    def _new_context(self, n_ctx: int, slots: int) -> Any:
        lib = self.lib
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = 2 * slots
        # One cell pool for all sequences: a prefix cell can belong to both branches of a row.
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = self.n_threads
        params.no_perf = True
        if self.exact:
            params.type_k = params.type_v = lib.GGML_TYPE_F32
            params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = lib.llama_init_from_model(self._model, params)
        if not ctx:
            lib.llama_model_free(self._model)
            raise OSError(f"llama.cpp could not create a context of {n_ctx} cells for {str(self.path)!r}")
        return ctx

    # -- vocabulary ----------------------------------------------------------------------------------------------

    def special_eos_ids(self) -> set[int]:
        """The GGUF's end-of-sequence and end-of-turn tokens."""
        ids = {int(self.lib.llama_vocab_eos(self._vocab)), int(self.lib.llama_vocab_eot(self._vocab))}
        return {i for i in ids if i >= 0}

    # -- slots and sequences -------------------------------------------------------------------------------------

    @property
    def slot_count(self) -> int:
        return self._slots.count

    def free_slots(self) -> int:
        with self.lock:
            return len(self._slots.free)

    def acquire_slot(self) -> int | None:
        """A free slot (its two sequences empty), or None when every slot is taken."""
        with self.lock:
            return self._slots.free.pop(0) if self._slots.free else None

    def release_slot(self, slot: int) -> None:
        """Empty both sequences of a slot and give it back."""
        with self.lock:
            if self._closed:
                return
            self.seq_rm(2 * slot, 0, -1)
            self.seq_rm(2 * slot + 1, 0, -1)
            if slot not in self._slots.free:
                self._slots.free.append(slot)

    def seq_rm(self, seq: int, start: int, end: int) -> None:
        """Remove a sequence from the cells at positions ``[start, end)`` (``end`` -1: to the end)."""
        with self.lock:
            self.lib.llama_memory_seq_rm(self._memory, seq, start, end)

    def seq_cp(self, source: int, dest: int, start: int, end: int) -> None:
        """Add ``dest`` to the cells of ``source`` at positions ``[start, end)``: shared cells, no copy."""
        if end <= start:
            return
        with self.lock:
            self.lib.llama_memory_seq_cp(self._memory, source, dest, start, end)

    # -- decoding ------------------------------------------------------------------------------------------------

    def decode(self, entries: Sequence[BatchEntry]) -> list[np.ndarray]:
        """Decode the entries in order (one ``llama_decode`` per ``n_batch`` entries); the logits asked for.

        Returns:
            Float32 logits, one ``(n_vocab,)`` array per entry with ``logits=True``, in entry order (copies: the
            context's buffer is overwritten by the next call).

        Raises:
            LlamaCppDecodeError: llama.cpp refused the batch (no room in the KV cache, bad positions).
        """
        out: list[np.ndarray] = []
        with self.lock:
            for start in range(0, len(entries), self.n_batch):
                out.extend(self._decode_chunk(entries[start : start + self.n_batch]))
        return out

    def _decode_chunk(self, entries: Sequence[BatchEntry]) -> list[np.ndarray]:
        lib, batch, n = self.lib, self._batch, len(entries)
        wanted = []
        for i, entry in enumerate(entries):
            batch.token[i] = entry.token
            batch.pos[i] = entry.pos
            batch.n_seq_id[i] = len(entry.seqs)
            for j, seq in enumerate(entry.seqs):
                batch.seq_id[i][j] = seq
            batch.logits[i] = 1 if entry.logits else 0
            if entry.logits:
                wanted.append(i)
        batch.n_tokens = n
        code = int(lib.llama_decode(self._ctx, batch))
        if code != 0:
            raise LlamaCppDecodeError(f"llama_decode returned {code}: {_DECODE_CODES.get(code, 'fatal error')}")
        logits = []
        for i in wanted:
            pointer = lib.llama_get_logits_ith(self._ctx, i)
            logits.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy())
        return logits

    def close(self) -> None:
        """Free the context and the weights (also done when the object is collected)."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self.lib.llama_batch_free(self._batch)
            self.lib.llama_free(self._ctx)
            self.lib.llama_model_free(self._model)

    def __del__(self) -> None:
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass
