"""The two-branch steered decoding engine.

Every decode step runs ONE forward over ``2B`` rows that share one KV cache: rows ``0..B-1`` see the prompt as it
is (the *original* branch), rows ``B..2B-1`` see it with the anchor tokens hidden by the attention mask (the
*masked* branch). Their last-position logits are combined in float32 as ``ω·l_orig + (1−ω)·l_masked``
(Selective Prompt Anchoring); ``ω > 1`` amplifies what the anchors contribute.

Unlike SPA's reference ``LogitsProcessor`` the anchors stay hidden at every step (not only during the masked
prefill), positions never shift (explicit ``position_ids``; anchors are hidden, not replaced), prompts are batched,
and both branches share one forward, which on a CPU in bfloat16 costs about the same as one branch.

Prefill work is cut three ways: a masked row equals its original row up to the first hidden token, so it is only
prefilled from there; the keys and values of a prompt prefix shared by all rows (a system prompt, instructions) are
kept by the decoder and reused by later sessions; and prefix lengths are per column, so left padding is no obstacle.

When no active row needs steering (``ω == 1`` or no anchors) only the original rows run; the masked rows fall
behind and are brought up to date when steering is next needed. A row's anchors may change mid-generation
(:meth:`DecodeSession.set_anchors`). Each masked column remembers the anchor set it was computed under, so only
visible columns whose view of earlier columns changed are recomputed, for all rows that need it in one forward:
when Self-Anchor hides a plan step for its reasoning step and shows it again for the next plan, neither the hidden
plan nor (later) its own columns are recomputed, only the tokens after it.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "DecodeSession",
    "DecodingInputError",
    "DecodingStats",
    "RowRequest",
    "RowResult",
    "SamplingConfig",
    "SteeredDecoder",
    "TokenEvent",
    "combine_logits",
]

_MIN_SHARED_PREFIX = 16  # shorter shared prompt prefixes are not worth storing or looking up
_LOGIT_BOUND = 1e4  # real logits are far inside this; it keeps ω-scaled infinities from becoming NaN


class DecodingInputError(ValueError):
    """A request to the engine is malformed; raised before any forward pass."""


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen from the combined logits.

    Args:
        do_sample: Sample instead of taking the argmax.
        temperature: Softmax temperature (> 0), used when sampling.
        top_p: Nucleus mass in (0, 1]; 1 disables it.
        top_k: Keep the k most likely tokens; 0 disables it.
        seed: Seed of the sampling generator, for reproducible samples.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise DecodingInputError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if not (0 < self.top_p <= 1):
            raise DecodingInputError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k < 0:
            raise DecodingInputError(f"top_k must be >= 0, got {self.top_k!r}")


@dataclass
class RowRequest:
    """One prompt to decode.

    Args:
        prompt_ids: The prompt's token ids (no padding).
        anchor_spans: Token index spans ``[start, end)`` into the prompt to hide from the masked branch.
        omega: Steering strength; 1 is plain decoding, > 1 amplifies the anchors.
        anchor_masking: How the masked branch loses the anchors: ``"attention"`` hides their columns from
            attention (positions kept); ``"replace"`` shows the decoder's neutral token at the same positions
            instead (SPA's paper setting, without its position shift).
        steer_below: Steer a token only when the original branch's top probability is below this; None steers
            every token.
    """

    prompt_ids: Sequence[int]
    anchor_spans: Sequence[tuple[int, int]] = ()
    omega: float = 1.0
    anchor_masking: str = "attention"
    steer_below: float | None = None


@dataclass(frozen=True)
class TokenEvent:
    """One decoded token of one row.

    ``text`` is the new text that is safe to show: it never contains (a prefix of) a stop string nor half of a
    multi-byte character; the final event of a row flushes whatever was held back.
    """

    row: int
    token_id: int
    index: int
    text: str
    confidence: float
    omega: float
    finish_reason: str | None = None
    flipped: bool = False
    """Steering changed the most likely token (argmax of the combined logits ≠ argmax of the original ones)."""
    kl: float = 0.0
    """KL(steered ‖ original) of the next-token distributions, in nats (0 for an unsteered token)."""
    original_token: int = -1
    """The original branch's most likely token (differs from ``token_id`` when ``flipped`` under greedy decoding)."""


@dataclass
class RowResult:
    """What one row produced."""

    token_ids: list[int]
    text: str
    finish_reason: str
    confidences: list[float]
    omegas: list[float]
    prompt_tokens: int
    flips: list[bool] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    original_tokens: list[int] = field(default_factory=list)

    @property
    def mean_confidence(self) -> float:
        """Harmonic mean of the per-token max probabilities of the original branch (Self-Anchor's signal)."""
        return harmonic_mean(self.confidences)


@dataclass
class DecodingStats:
    """Work done by a session, for tests and benchmarks."""

    forwards: int = 0
    steered_forwards: int = 0
    prefill_tokens: int = 0  # tokens pushed through the model outside single-token decode steps
    resync_tokens: int = 0  # masked-branch tokens recomputed after an anchor change or a catch-up
    reused_prefix_tokens: int = 0  # prompt tokens taken from the decoder's cache of shared prompt prefixes
    decode_steps: int = 0
    row_prefill_tokens: dict[int, int] = field(default_factory=dict)  # by request index, both branches counted
    row_resync_tokens: dict[int, int] = field(default_factory=dict)
    row_reused_prefix_tokens: dict[int, int] = field(default_factory=dict)

    def _add(self, table: dict[int, int], row: int, n: int) -> None:
        table[row] = table.get(row, 0) + n


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean ``n / Σ 1/p``; 0 for an empty sequence or any zero value."""
    if not values or min(values) <= 0:
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def combine_logits(original: torch.Tensor, masked: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """SPA's combination ``ω·l_o + (1−ω)·l_m`` in float32, guarded against NaN and infinities.

    Args:
        original: ``(B, V)`` logits of the original branch.
        masked: ``(B, V)`` logits of the anchor-masked branch.
        omega: ``(B,)`` steering strengths.

    Returns:
        ``(B, V)`` float32 logits; rows with ``ω == 1`` are exactly the original logits.
    """
    orig = torch.nan_to_num(original.float(), nan=-_LOGIT_BOUND).clamp(-_LOGIT_BOUND, _LOGIT_BOUND)
    mask = torch.nan_to_num(masked.float(), nan=-_LOGIT_BOUND).clamp(-_LOGIT_BOUND, _LOGIT_BOUND)
    w = omega.float().unsqueeze(-1)
    combined = w * orig + (1.0 - w) * mask
    return torch.where(w == 1.0, orig, combined)


class _RowText:
    """Incremental detokenisation with text-level stop strings for one row."""

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self._tokenizer = tokenizer
        self._stop = [s for s in stop if s]
        self._max_stop = max((len(s) for s in self._stop), default=0)
        self.emitted = ""
        self.text = ""

    def push(self, token_ids: list[int]) -> tuple[str, bool]:
        """Decode the row so far; returns (new safe text, hit a stop string)."""
        if self._tokenizer is None:
            return "", False
        text = self._tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        search_from = max(0, len(self.text) - self._max_stop)
        self.text = text
        cut = min((i for s in self._stop if (i := text.find(s, search_from)) >= 0), default=-1)
        if cut >= 0:
            self.text = text[:cut]
            return self._advance(self.text), True
        safe = text.rstrip("\ufffd")  # an incomplete multi-byte character decodes to U+FFFD until it completes
        safe = safe[: len(safe) - self._held_back(safe)]
        return self._advance(safe), False

    def flush(self) -> str:
        return self._advance(self.text)

    def _held_back(self, text: str) -> int:
        # Keep back the longest tail that could still grow into a stop string, so none of it leaks to a stream.
        for n in range(min(self._max_stop, len(text)), 0, -1):
            if any(s.startswith(text[-n:]) for s in self._stop):
                return n
        return 0

    def _advance(self, safe: str) -> str:
        if not safe.startswith(self.emitted):
            return ""  # never rewrite what a stream consumer already has
        delta = safe[len(self.emitted) :]
        self.emitted = safe
        return delta


@dataclass
class _Row:
    request_index: int
    prompt_len: int
    omega: float
    anchors: list[tuple[int, int]]
    text: _RowText
    generated: list[int] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    omegas: list[float] = field(default_factory=list)
    flips: list[bool] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    original_tokens: list[int] = field(default_factory=list)
    replace_anchors: bool = False  # the masked branch sees a neutral token at anchor columns (not hidden)
    steer_below: float | None = None
    finish_reason: str | None = None
    pending_anchors: list[tuple[int, int]] | None = None
    anchor_history: list[list[tuple[int, int]]] = field(default_factory=list)  # every anchor set, in order
    kv_version: list[int] = field(default_factory=list)  # by token: its masked column's anchor set; -1 = none

    @property
    def length(self) -> int:
        return self.prompt_len + len(self.generated)

    @property
    def steered(self) -> bool:
        return self.omega != 1.0 and bool(self.anchors)


class SteeredDecoder:
    """Batched two-branch decoding over a Hugging Face causal LM.

    Args:
        model: A ``transformers`` causal LM whose cache is a plain ``DynamicCache`` (full attention layers).
        tokenizer: Used to decode text for stop strings and streaming; optional for id-only use.
        eos_token_ids: Tokens that end a row; defaults to the model's and tokenizer's EOS ids.
        pad_token_id: Id used for left padding; defaults to the tokenizer's pad, else the first EOS id.
        neutral_token_id: The token the masked branch sees in place of each anchor token when a row asks for
            ``anchor_masking="replace"``; defaults to the tokenizer's unknown token, else the pad token.
        prefix_cache_tokens: How many prompt-prefix tokens (over all stored prefixes) to keep the keys and values
            of, so that later sessions starting with the same tokens (a system prompt and instructions; the
            earlier turns of a chat) skip recomputing them. Least recently used prefixes are dropped first; 0
            turns it off. Call :meth:`clear_prefix_cache` if the model's weights change.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        eos_token_ids: Sequence[int] | None = None,
        pad_token_id: int | None = None,
        neutral_token_id: int | None = None,
        prefix_cache_tokens: int = 4096,
    ) -> None:
        if prefix_cache_tokens < 0:
            raise DecodingInputError(f"prefix_cache_tokens must be >= 0, got {prefix_cache_tokens}")
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = frozenset(eos_token_ids if eos_token_ids is not None else self._default_eos())
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = min(self.eos_token_ids) if self.eos_token_ids else 0
        self.pad_token_id = int(pad_token_id)
        if neutral_token_id is None:
            neutral_token_id = getattr(tokenizer, "unk_token_id", None)
        self.neutral_token_id = int(neutral_token_id) if neutral_token_id is not None else self.pad_token_id
        params = inspect.signature(model.forward).parameters
        # transformers 5.24 renamed the cache keyword; older 5.x releases only know the old one.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        self.context_length: int | None = getattr(model.config, "max_position_embeddings", None)
        self.prefix_cache_tokens = prefix_cache_tokens
        self._prefixes: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._prefix_lock = threading.Lock()

    def _default_eos(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config, self.tokenizer):
            value = getattr(source, "eos_token_id", None) if source is not None else None
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    def start(
        self,
        rows: Sequence[RowRequest],
        *,
        max_new_tokens: int,
        sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (),
    ) -> DecodeSession:
        """Validate the requests and open a decode session (nothing runs until it is iterated)."""
        return DecodeSession(
            self, rows, max_new_tokens=max_new_tokens, sampling=sampling or SamplingConfig(), stop=stop
        )

    def generate(
        self,
        rows: Sequence[RowRequest],
        *,
        max_new_tokens: int,
        sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (),
    ) -> list[RowResult]:
        """Decode every row to the end and return the results in request order."""
        session = self.start(rows, max_new_tokens=max_new_tokens, sampling=sampling, stop=stop)
        for _ in session:
            pass
        return session.results()

    # -- shared prompt prefixes ----------------------------------------------------------------------------------

    def lookup_prefix(self, tokens: Sequence[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """The stored prefix agreeing longest with ``tokens``: (tokens agreed, its per-layer keys and values).

        The stored tensors may be longer than the agreement; only their first ``agreed`` columns apply. Prefixes
        stored before the model moved to another device or dtype are passed over.
        """
        best, layers, best_key = 0, None, None
        weights = next(self.model.parameters(), None)
        with self._prefix_lock:
            for key, value in self._prefixes.items():
                if weights is not None and (value[0][0].device, value[0][0].dtype) != (weights.device, weights.dtype):
                    continue
                agreed = min(_agreement(key, tokens), len(tokens))
                if agreed > best:
                    best, layers, best_key = agreed, value, key
            if best_key is not None:
                self._prefixes.move_to_end(best_key)
        return best, layers

    def store_prefix(self, tokens: Sequence[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep the keys and values (one row, positions from 0) of a prompt prefix, evicting the least recently used
        prefixes while the stored tokens exceed ``prefix_cache_tokens``."""
        key = tuple(int(t) for t in tokens)
        if len(key) > self.prefix_cache_tokens:
            return
        with self._prefix_lock:
            self._prefixes[key] = layers
            self._prefixes.move_to_end(key)
            while sum(len(k) for k in self._prefixes) > self.prefix_cache_tokens:
                self._prefixes.popitem(last=False)

    def clear_prefix_cache(self) -> None:
        with self._prefix_lock:
            self._prefixes.clear()

    # -- model plumbing ------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        weights = next(self.model.parameters(), None)
        return weights.device if weights is not None else torch.device("cpu")

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        """One cached forward; returns float32 logits of the last position, ``(rows, vocab)``, on the model's device.

        The session keeps its bookkeeping on the CPU; the inputs move to wherever the model's weights are.
        """
        device = self.device
        input_ids, attention_mask, position_ids = (t.to(device) for t in (input_ids, attention_mask, position_ids))
        kwargs: dict[str, Any] = {self._cache_kw: cache, "use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1  # the LM head over a long prompt is costly and only the last row is used
        with torch.no_grad():
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        return out.logits[:, -1, :].float()


def _cache_from_tensors(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)


def _layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    for layer in cache.layers:
        if type(layer).__name__ != "DynamicLayer":
            raise NotImplementedError(f"steered decoding needs full-attention cache layers, got {type(layer).__name__}")
    return [(layer.keys, layer.values) for layer in cache.layers]


class DecodeSession:
    """One batched decode; iterate it to get a list of :class:`TokenEvent` per step.

    Between steps a caller may change a row's anchors (:meth:`set_anchors`) or steering strength
    (:meth:`set_omega`), cancel a row (:meth:`cancel`), or add rows (:meth:`add_rows`: continuous batching, new
    rows join the running decode at the next step). Closing the iterator early stops decoding.
    """

    def __init__(
        self,
        decoder: SteeredDecoder,
        rows: Sequence[RowRequest],
        *,
        max_new_tokens: int,
        sampling: SamplingConfig,
        stop: Sequence[str],
    ) -> None:
        self._decoder = decoder
        self._validate(rows, max_new_tokens, stop)
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self._stop = tuple(stop)
        self._waiting: list[RowRequest] = []  # rows added while decoding; they join at the next step
        self.stats = DecodingStats()
        self._rows = [
            _Row(
                request_index=i,
                prompt_len=len(r.prompt_ids),
                omega=float(r.omega),
                anchors=sorted((int(a), int(b)) for a, b in r.anchor_spans),
                text=_RowText(decoder.tokenizer, stop),
                replace_anchors=r.anchor_masking == "replace",
                steer_below=r.steer_below,
            )
            for i, r in enumerate(rows)
        ]
        self._prompts = [list(map(int, r.prompt_ids)) for r in rows]
        self._generator: torch.Generator | None = None
        if sampling.do_sample:
            self._generator = torch.Generator()
            if sampling.seed is not None:
                self._generator.manual_seed(sampling.seed)
        self._started = False
        self._active: list[int] = []  # request indices of the rows in the batch, in batch order
        self._ids = self._real = self._hidden = torch.empty(0)  # see _setup_batch
        self._cache: Any = None  # fused (2B) when ``_fused``, else the original rows
        self._mask_cache: Any = None
        self._fused = False
        self._cached = 0  # columns held by the original rows' cache
        self._originals: list[int] = []  # the original branch's argmax per active row, latest step
        self.last_logits: torch.Tensor | None = None  # combined logits of the latest step, rows in batch order
        self.last_rows: list[int] = []  # request indices of those rows

    # -- validation ------------------------------------------------------------------------------------------------

    def _validate(self, rows: Sequence[RowRequest], max_new_tokens: int, stop: Sequence[str]) -> None:
        if not rows:
            raise DecodingInputError("no rows to decode")
        if max_new_tokens < 1:
            raise DecodingInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if stop and self._decoder.tokenizer is None:
            raise DecodingInputError("stop strings need a tokenizer to decode text")
        ctx = self._decoder.context_length
        for i, row in enumerate(rows):
            n = len(row.prompt_ids)
            if n == 0:
                raise DecodingInputError(f"row {i}: empty prompt")
            if ctx is not None and n >= ctx:
                raise DecodingInputError(f"row {i}: prompt of {n} tokens does not fit the model's context of {ctx}")
            if not (isinstance(row.omega, (int, float)) and math.isfinite(row.omega) and row.omega >= 0):
                raise DecodingInputError(f"row {i}: omega must be a finite number >= 0, got {row.omega!r}")
            if row.anchor_masking not in ("attention", "replace"):
                raise DecodingInputError(
                    f"row {i}: anchor_masking must be 'attention' or 'replace', got {row.anchor_masking!r}"
                )
            gate = row.steer_below
            if gate is not None and not (isinstance(gate, (int, float)) and 0 < gate <= 1):
                raise DecodingInputError(f"row {i}: steer_below must be in (0, 1] or None, got {gate!r}")
            self._check_spans(i, row.anchor_spans, n)

    @staticmethod
    def _check_spans(row: int, spans: Sequence[tuple[int, int]], length: int) -> None:
        for span in spans:
            if len(span) != 2:
                raise DecodingInputError(f"row {row}: anchor span {span!r} is not a (start, end) pair")
            start, end = span
            if not (0 <= start < end <= length):
                raise DecodingInputError(
                    f"row {row}: anchor span {span!r} is empty or outside the row's {length} tokens"
                )

    # -- public controls -----------------------------------------------------------------------------------------

    def set_anchors(self, row: int, spans: Sequence[tuple[int, int]]) -> None:
        """Replace a row's anchor spans (token indices over prompt + generated tokens) from the next step on."""
        state = self._rows[row]
        self._check_spans(row, spans, state.length)
        state.pending_anchors = sorted((int(a), int(b)) for a, b in spans)

    def set_omega(self, row: int, omega: float) -> None:
        """Change a row's steering strength from the next step on."""
        if not (math.isfinite(omega) and omega >= 0):
            raise DecodingInputError(f"row {row}: omega must be a finite number >= 0, got {omega!r}")
        self._rows[row].omega = float(omega)

    def add_rows(self, rows: Sequence[RowRequest]) -> list[int]:
        """Add rows to a running session; they are prefilled and join the batch at the next step.

        Returns:
            Their row indices (``TokenEvent.row`` and :meth:`results` use them), after the existing rows.

        Raises:
            DecodingInputError: A malformed row (checked now, before any work).
        """
        if not rows:
            return []
        self._validate(rows, self.max_new_tokens, self._stop)
        first = len(self._rows) + len(self._waiting)
        if not self._started:  # not decoding yet: they simply belong to the first batch
            self._rows += DecodeSession(
                self._decoder, rows, max_new_tokens=self.max_new_tokens, sampling=self.sampling, stop=self._stop
            )._renumbered(first)
            self._prompts += [list(map(int, r.prompt_ids)) for r in rows]
        else:
            self._waiting.extend(rows)
        return list(range(first, first + len(rows)))

    @property
    def waiting(self) -> int:
        """Rows added and not yet decoding."""
        return len(self._waiting)

    def _renumbered(self, first: int) -> list[_Row]:
        for j, row in enumerate(self._rows):
            row.request_index = first + j
        return self._rows

    def cancel(self, row: int) -> None:
        """Stop decoding one row; the others go on."""
        if self._rows[row].finish_reason is None:
            self._rows[row].finish_reason = "cancelled"

    def anchors(self, row: int) -> list[tuple[int, int]]:
        state = self._rows[row]
        return list(state.pending_anchors if state.pending_anchors is not None else state.anchors)

    def generated_ids(self, row: int) -> list[int]:
        return list(self._rows[row].generated)

    def results(self) -> list[RowResult]:
        return [self.result(i) for i in range(len(self._rows))]

    def result(self, row: int) -> RowResult:
        """What one row produced so far (final once its ``finish_reason`` is set)."""
        r = self._rows[row]
        return RowResult(
            token_ids=list(r.generated),
            text=r.text.text if self._decoder.tokenizer is not None else "",
            finish_reason=r.finish_reason or "cancelled",
            confidences=list(r.confidences),
            omegas=list(r.omegas),
            prompt_tokens=r.prompt_len,
            flips=list(r.flips),
            kls=list(r.kls),
            original_tokens=list(r.original_tokens),
        )

    @property
    def row_count(self) -> int:
        """Rows of the session so far, waiting ones included: the index the next added row will get."""
        return len(self._rows) + len(self._waiting)

    # -- the loop --------------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[list[TokenEvent]]:
        if self._started:
            raise RuntimeError("a DecodeSession can be iterated only once")
        self._started = True
        self._setup_batch()
        # 1. Prefill the prompts: the original rows (after any cached shared prefix), then, if a row steers, the
        #    masked rows from their first hidden column on; before it they equal the original rows.
        logits_o, logits_m = self._prefill()
        while True:
            # 2. Combine the branches and choose each active row's next token.
            tokens, confidences, omegas, flips, kls = self._choose(logits_o, logits_m)
            # 3. Append the tokens; detokenise, check EOS, stop strings and length.
            events = self._append(tokens, confidences, omegas, flips, kls)
            yield events
            # 4. Drop rows that finished (or were cancelled while the caller held the events).
            self._compact()
            if not self._active:
                if not self._waiting:
                    return
                # Every row finished: the rows added meanwhile start a batch of their own.
                logits_o, logits_m = self._admit(None, None)
                continue
            # 5. Apply anchor changes made between steps, then bring the masked rows up to date if steering
            #    (also when a row about to join steers: the joined batch keeps both branches).
            stale = self._apply_anchor_changes()
            joining_steers = any(r.omega != 1.0 and len(r.anchor_spans) > 0 for r in self._waiting)
            if joining_steers or any(self._rows[i].steered for i in self._active):
                if self._fused:
                    if stale:
                        self._resync(stale)
                else:
                    self._fuse()
            elif self._fused:
                self._split()
            # 6. One forward over the newest token of every row (2B rows when steering).
            logits_o, logits_m = self._step_forward(self._ids[:, -1:])
            # 7. Rows added since the last step are prefilled and join the batch (continuous batching).
            if self._waiting:
                logits_o, logits_m = self._admit(logits_o, logits_m)

    # -- continuous batching -----------------------------------------------------------------------------------------

    def _admit(
        self, logits_o: torch.Tensor | None, logits_m: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prefill the waiting rows as a batch of their own, then join them to this one (or replace it if empty).

        Both batches are right-aligned, so joining pads the narrower one on the left; the caches were brought to
        the same layout first (both fused when the batch steers, else both split, the masked rows parked nowhere:
        a later fuse recomputes them, as :meth:`_fuse` does for columns it never computed).
        """
        base = len(self._rows)
        joining = DecodeSession(
            self._decoder, self._waiting, max_new_tokens=self.max_new_tokens, sampling=self.sampling, stop=self._stop
        )
        self._waiting = []
        self._rows += joining._renumbered(base)
        self._prompts += joining._prompts
        joining._setup_batch()
        new_o, new_m = joining._prefill()
        if self._fused and self._active and not joining._fused:
            # The joining rows do not steer (yet); the fused batch keeps every row's masked branch current.
            joining._fuse()
            new_m = new_o.clone()
        self._add_stats(joining.stats, base)
        if logits_o is None or not self._active:  # nothing running: the joining rows are the batch
            self._ids, self._real, self._hidden = joining._ids, joining._real, joining._hidden
            self._cache, self._mask_cache = joining._cache, joining._mask_cache
            self._fused, self._cached = joining._fused, joining._cached
            self._active = [base + k for k in joining._active]
            return new_o, new_m
        width = max(self._cached, joining._cached)
        old_rows = len(self._active)

        def pad(t: torch.Tensor, value: Any) -> torch.Tensor:
            n = width - t.shape[1]
            return torch.cat([torch.full((t.shape[0], n), value, dtype=t.dtype), t], dim=1) if n else t

        pad_id = self._decoder.pad_token_id
        self._ids = torch.cat([pad(self._ids, pad_id), pad(joining._ids, pad_id)])
        self._real = torch.cat([pad(self._real, False), pad(joining._real, False)])
        self._hidden = torch.cat([pad(self._hidden, False), pad(joining._hidden, False)])
        old, new = _layer_tensors(self._cache), _layer_tensors(joining._cache)
        if self._fused:  # original rows first, then the masked rows, for both batches
            self._cache = _cache_from_tensors(
                [
                    tuple(  # type: ignore[misc]
                        torch.cat(
                            [
                                _pad_columns(a[:old_rows], width),
                                _pad_columns(b[: len(joining._active)], width),
                                _pad_columns(a[old_rows:], width),
                                _pad_columns(b[len(joining._active) :], width),
                            ]
                        )
                        for a, b in ((ko, kn), (vo, vn))
                    )
                    for (ko, vo), (kn, vn) in zip(old, new, strict=True)
                ]
            )
        else:
            self._cache = _cache_from_tensors(
                [
                    (
                        torch.cat([_pad_columns(ko, width), _pad_columns(kn, width)]),
                        torch.cat([_pad_columns(vo, width), _pad_columns(vn, width)]),
                    )
                    for (ko, vo), (kn, vn) in zip(old, new, strict=True)
                ]
            )
            self._mask_cache = None  # parked masked columns are dropped; a later fuse recomputes what it needs
        self._cached = width
        self._active = self._active + [base + k for k in joining._active]
        if logits_m is None or new_m is None:
            return torch.cat([logits_o, new_o]), None
        return torch.cat([logits_o, new_o]), torch.cat([logits_m, new_m])

    def _add_stats(self, other: DecodingStats, base: int) -> None:
        """Fold a joining batch's work into this session's (its row indices shifted by ``base``)."""
        for name in ("forwards", "steered_forwards", "prefill_tokens", "resync_tokens", "reused_prefix_tokens"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(other, name))
        for name in ("row_prefill_tokens", "row_resync_tokens", "row_reused_prefix_tokens"):
            for row, n in getattr(other, name).items():
                self.stats._add(getattr(self.stats, name), base + row, n)

    # Batch state: ``_ids``/``_real`` are (B, W) over left-padded columns (rows are right-aligned, so token t of a
    # row of length n sits in column W - n + t); ``_hidden`` marks anchor columns. Cache layout: fused → one cache
    # of 2B rows (original rows first); split → ``_cache`` (the B original rows) plus ``_mask_cache`` (B rows,
    # maybe shorter). Each row's ``kv_version`` says under which anchor set each masked column was computed.

    def _setup_batch(self) -> None:
        width = max(r.prompt_len for r in self._rows)
        pad = self._decoder.pad_token_id
        self._active = list(range(len(self._rows)))
        self._ids = torch.full((len(self._rows), width), pad, dtype=torch.long)
        self._real = torch.zeros((len(self._rows), width), dtype=torch.bool)
        self._hidden = torch.zeros_like(self._real)
        for k, (row, prompt) in enumerate(zip(self._rows, self._prompts, strict=True)):
            offset = width - row.prompt_len
            self._ids[k, offset:] = torch.tensor(prompt, dtype=torch.long)
            self._real[k, offset:] = True
            for start, end in row.anchors:
                self._hidden[k, offset + start : offset + end] = True
            row.anchor_history = [list(row.anchors)]
        self._cache = self._decoder.new_cache()
        self._mask_cache = None
        self._fused = False
        self._cached = 0

    def _positions(self) -> torch.Tensor:
        return (self._real.long().cumsum(-1) - 1).clamp(min=0)

    def _replacing(self) -> torch.Tensor:
        """``(B, 1)``: which active rows show a neutral token at anchor columns instead of hiding them."""
        return torch.tensor([[self._rows[i].replace_anchors] for i in self._active], dtype=torch.bool)

    def _masked_attention(self) -> torch.Tensor:
        # Hidden anchors are left out of attention; replaced ones stay visible (as the neutral token).
        return (self._real & ~(self._hidden & ~self._replacing())).long()

    def _masked_ids(self) -> torch.Tensor:
        """The masked rows' input ids: anchor columns of replacing rows hold the neutral token."""
        return torch.where(self._hidden & self._replacing(), self._decoder.neutral_token_id, self._ids)

    def _offset(self, k: int) -> int:
        return self._ids.shape[1] - self._rows[self._active[k]].length

    def _count_prefill(self, per_row: list[int]) -> None:
        self.stats.prefill_tokens += int(sum(per_row))
        for k, n in enumerate(per_row):
            self.stats._add(self.stats.row_prefill_tokens, self._active[k], int(n))

    def _prefill(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        width = self._ids.shape[1]
        common = self._common_prefix()
        start = self._start_from_cached_prefix(common)
        logits_o = self._decoder.forward(
            self._ids[:, start:], self._real.long(), self._positions()[:, start:], self._cache
        )
        self.stats.forwards += 1
        self._count_prefill(self._real[:, start:].sum(dim=1).tolist())
        self._cached = width
        self._store_shared_prefix(common)
        if not any(r.steered for r in self._rows):
            return logits_o, None
        # A masked row sees exactly what its original row sees up to the first hidden column.
        first_hidden = self._hidden.any(dim=0).nonzero()
        shared = int(first_hidden[0]) if len(first_hidden) else width
        original = _layer_tensors(self._cache)
        self._mask_cache = _cache_from_tensors([(k[:, :, :shared], v[:, :, :shared]) for k, v in original])
        if shared < width:
            logits_m = self._decoder.forward(
                self._masked_ids()[:, shared:],
                self._masked_attention(),
                self._positions()[:, shared:],
                self._mask_cache,
            )
            self.stats.forwards += 1
            self.stats.steered_forwards += 1
            self._count_prefill(self._real[:, shared:].sum(dim=1).tolist())
        else:
            logits_m = logits_o.clone()
        for k in range(len(self._active)):
            self._mark_masked(k, 0, width)
        self._join_caches()
        return logits_o, logits_m

    def _start_from_cached_prefix(self, common: int) -> int:
        """Fill the original cache with a stored KV of the prompts' shared prefix; returns the first column to run."""
        agreed, stored = self._decoder.lookup_prefix(self._prompts[0][:common])
        if stored is None or agreed < _MIN_SHARED_PREFIX:
            return 0
        layers = []
        for keys, values in stored:
            new_keys = keys.new_zeros((len(self._rows), keys.shape[1], agreed, keys.shape[3]))
            new_values = values.new_zeros((len(self._rows), values.shape[1], agreed, values.shape[3]))
            for k in range(len(self._rows)):
                offset = self._offset(k)
                if offset < agreed:
                    new_keys[k, :, offset:] = keys[0, :, : agreed - offset]
                    new_values[k, :, offset:] = values[0, :, : agreed - offset]
            layers.append((new_keys, new_values))
        self._cache = _cache_from_tensors(layers)
        for k in range(len(self._rows)):
            reused = max(0, agreed - self._offset(k))
            self.stats.reused_prefix_tokens += reused
            self.stats._add(self.stats.row_reused_prefix_tokens, self._active[k], reused)
        return agreed

    def _common_prefix(self) -> int:
        """Length of the token prefix all prompts share, short of the last column (its logits are needed)."""
        first = self._prompts[0]
        common = min(len(first), self._ids.shape[1] - 1)
        for prompt in self._prompts[1:]:
            common = min(common, _agreement(first, prompt))
        return common

    def _store_shared_prefix(self, common: int) -> None:
        if common < _MIN_SHARED_PREFIX:
            return
        agreed, _ = self._decoder.lookup_prefix(self._prompts[0][:common])
        if common - agreed < _MIN_SHARED_PREFIX:
            return  # an entry at least this useful is already stored
        longest = int(torch.tensor([r.prompt_len for r in self._rows]).argmax())  # no left padding
        self._decoder.store_prefix(
            self._prompts[0][:common],
            [
                (k[longest : longest + 1, :, :common].clone(), v[longest : longest + 1, :, :common].clone())
                for k, v in _layer_tensors(self._cache)
            ],
        )

    def _step_forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        width = self._ids.shape[1]
        start = width - input_ids.shape[1]
        positions = self._positions()[:, start:]
        self.stats.forwards += 1
        if self._fused:
            self.stats.steered_forwards += 1
            logits = self._decoder.forward(
                # A replacing row's masked branch reads the neutral token where the newest token is an anchor.
                torch.cat([input_ids, self._masked_ids()[:, start:]]),
                torch.cat([self._real.long(), self._masked_attention()]),
                torch.cat([positions, positions]),
                self._cache,
            )
            b = len(self._active)
            for k in range(b):
                self._mark_masked(k, start, width)
            self._cached = width
            return logits[:b], logits[b:]
        logits = self._decoder.forward(input_ids, self._real.long(), positions, self._cache)
        self._cached = width
        return logits, None

    def _choose(
        self, logits_o: torch.Tensor, logits_m: torch.Tensor | None
    ) -> tuple[list[int], list[float], list[float], list[bool], list[float]]:
        """Combine the branches and pick each active row's token.

        Returns tokens, confidences, the ω applied to each token, whether steering changed the argmax, and
        KL(steered ‖ original).
        """
        # Self-Anchor's confidence is the original branch's own certainty, not the steered one's.
        # One log-softmax of the original branch serves the confidence, its argmax and the steering's KL.
        log_o = torch.log_softmax(
            torch.nan_to_num(logits_o.float(), nan=-_LOGIT_BOUND).clamp(-_LOGIT_BOUND, _LOGIT_BOUND), dim=-1
        )
        top, originals = log_o.max(dim=-1)
        confidences = top.exp()
        omegas = [self._rows[i].omega if self._rows[i].steered else 1.0 for i in self._active]
        if logits_m is not None:
            # Steering only when unsure: a row with a gate leaves its confident tokens unsteered.
            for k, i in enumerate(self._active):
                gate = self._rows[i].steer_below
                if gate is not None and float(confidences[k]) >= gate:
                    omegas[k] = 1.0
        if logits_m is None or all(w == 1.0 for w in omegas):
            combined = combine_logits(logits_o, logits_o, torch.ones(len(omegas), device=logits_o.device))
            flips, kls = [False] * len(omegas), [0.0] * len(omegas)
        else:
            omega = torch.tensor(omegas, dtype=torch.float32, device=logits_o.device)
            combined = combine_logits(logits_o, logits_m, omega)
            flips, kls = _steering_effect(combined, log_o, originals)
        self.last_logits, self.last_rows = combined, list(self._active)
        if self.sampling.do_sample:
            scores = self._warp(combined.cpu())  # the seeded generator lives on the CPU
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self._generator).squeeze(-1)
        else:
            tokens = combined.argmax(dim=-1)
        self._originals = originals.tolist()
        return tokens.tolist(), confidences.tolist(), omegas, flips, kls

    def _warp(self, scores: torch.Tensor) -> torch.Tensor:
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        s = self.sampling
        dummy_ids = self._ids  # the warpers ignore input ids
        if s.temperature != 1.0:
            scores = TemperatureLogitsWarper(s.temperature)(dummy_ids, scores)
        if s.top_k > 0:
            scores = TopKLogitsWarper(top_k=s.top_k)(dummy_ids, scores)
        if s.top_p < 1.0:
            scores = TopPLogitsWarper(top_p=s.top_p)(dummy_ids, scores)
        return scores

    def _append(
        self,
        tokens: list[int],
        confidences: list[float],
        omegas: list[float],
        flips: list[bool],
        kls: list[float],
    ) -> list[TokenEvent]:
        self.stats.decode_steps += 1
        column = torch.tensor(tokens, dtype=torch.long).unsqueeze(-1)
        self._ids = torch.cat([self._ids, column], dim=1)
        self._real = torch.cat([self._real, torch.ones_like(column, dtype=torch.bool)], dim=1)
        self._hidden = torch.cat([self._hidden, torch.zeros_like(column, dtype=torch.bool)], dim=1)
        ctx = self._decoder.context_length
        events = []
        steps = zip(self._active, tokens, confidences, omegas, flips, kls, self._originals, strict=True)
        for i, token, conf, omega, flip, kl, original in steps:
            row = self._rows[i]
            if row.finish_reason is not None:  # cancelled between steps: its token is discarded
                continue
            finish: str | None = None
            if token in self._decoder.eos_token_ids:
                finish, text = "eos", row.text.flush()
            else:
                row.generated.append(token)
                text, hit_stop = row.text.push(row.generated)
                if hit_stop:
                    finish = "stop"
                elif len(row.generated) >= self.max_new_tokens or (ctx is not None and row.length >= ctx):
                    finish = "length"
                    text += row.text.flush()
            row.confidences.append(conf)
            row.omegas.append(omega)
            row.flips.append(flip)
            row.kls.append(kl)
            row.original_tokens.append(original)
            row.finish_reason = finish
            events.append(TokenEvent(i, token, len(row.confidences) - 1, text, conf, omega, finish, flip, kl, original))
        return events

    def _compact(self) -> None:
        keep = [k for k, i in enumerate(self._active) if self._rows[i].finish_reason is None]
        if len(keep) == len(self._active):
            return
        self._active = [self._active[k] for k in keep]
        if not keep:
            return
        index = torch.tensor(keep, dtype=torch.long)
        self._ids, self._real, self._hidden = self._ids[index], self._real[index], self._hidden[index]
        device = self._cache.layers[0].keys.device
        if self._fused:
            rows_before = self._cache.layers[0].keys.shape[0] // 2
            self._cache.batch_select_indices(torch.tensor(keep + [rows_before + k for k in keep], device=device))
        else:
            self._cache.batch_select_indices(index.to(device))
            if self._mask_cache is not None:
                self._mask_cache.batch_select_indices(index.to(device))
        # Columns where every remaining row is padding carry no information; trimming them keeps masks short.
        first_real = int(self._real.any(dim=0).long().argmax())
        if first_real > 0:
            self._trim_columns(first_real)

    def _trim_columns(self, n: int) -> None:
        self._ids, self._real, self._hidden = self._ids[:, n:], self._real[:, n:], self._hidden[:, n:]
        self._cached -= n
        caches = [self._cache] + ([self._mask_cache] if self._mask_cache is not None else [])
        for cache in caches:
            for layer in cache.layers:
                layer.keys = layer.keys[:, :, n:, :]
                layer.values = layer.values[:, :, n:, :]

    # -- masked-branch bookkeeping ---------------------------------------------------------------------------------
    # A masked column's keys and values depend on which earlier columns it could see. Column t computed under
    # anchor set A is still right under anchor set A' if A and A' hide the same columns up to t. Keeping that
    # record per column means that when Self-Anchor hides a plan step and later shows it again, the plan's own
    # columns (computed while it was visible) need no recomputation; hidden columns are never recomputed at all.

    def _mark_masked(self, k: int, start_column: int, end_column: int) -> None:
        """Record that batch row ``k``'s masked columns in ``[start, end)`` were computed under its current anchors."""
        row = self._rows[self._active[k]]
        offset = self._offset(k)
        first, end = max(0, start_column - offset), end_column - offset
        if end <= first:
            return  # the columns lie in this row's left padding
        if len(row.kv_version) < end:
            row.kv_version.extend([-1] * (end - len(row.kv_version)))
        row.kv_version[first:end] = [len(row.anchor_history) - 1] * (end - first)

    def _first_stale_column(self, k: int, end_column: int) -> int | None:
        """First visible masked column before ``end_column`` that is missing or was computed under other anchors."""
        row = self._rows[self._active[k]]
        offset = self._offset(k)
        n = end_column - offset
        if n <= 0:
            return None
        hidden_now = _span_mask(row.anchors, n)
        versions = torch.tensor(row.kv_version[:n] + [-1] * max(0, n - len(row.kv_version)), dtype=torch.long)
        stale = versions < 0
        positions = torch.arange(n)
        for version in set(versions.tolist()) - {-1}:
            differs = (_span_mask(row.anchor_history[version], n) != hidden_now).nonzero()
            if len(differs):
                stale |= (versions == version) & (positions >= int(differs[0]))
        # A hidden column is never read, so its old values may stay; a replaced one is read (as the neutral token).
        first = (stale if row.replace_anchors else stale & ~hidden_now).nonzero()
        return offset + int(first[0]) if len(first) else None

    def _apply_anchor_changes(self) -> list[int]:
        """Take pending anchor changes; returns the batch rows whose masked cache needs recomputing (when fused)."""
        stale = []
        for k, i in enumerate(self._active):
            row = self._rows[i]
            if row.pending_anchors is None:
                continue
            offset = self._offset(k)
            new_hidden = torch.zeros_like(self._hidden[k])
            for start, end in row.pending_anchors:
                new_hidden[offset + start : offset + end] = True
            row.anchors, row.pending_anchors = row.pending_anchors, None
            if torch.equal(new_hidden, self._hidden[k]):
                continue
            self._hidden[k] = new_hidden
            row.anchor_history.append(list(row.anchors))
            if self._fused and self._first_stale_column(k, self._cached) is not None:
                stale.append(k)
        return stale

    def _resync(self, rows: list[int]) -> None:
        """Recompute the stale masked columns of batch rows ``rows`` in one forward, in place in the fused cache.

        Only visible columns are fed (a hidden column is never read, so its old values are kept for the time it
        is shown again); the rows share the first stale column, each feeding its own visible columns from there,
        right-padded to the longest.
        """
        b, end = len(self._active), self._cached
        firsts = [self._first_stale_column(k, end) for k in rows]
        rows = [k for k, f in zip(rows, firsts, strict=True) if f is not None]
        if not rows:
            return
        start = min(f for f in firsts if f is not None)
        visible = self._masked_attention()
        masked_ids = self._masked_ids()
        feeds = [start + visible[k, start:end].nonzero().squeeze(-1) for k in rows]
        width = max(len(f) for f in feeds)
        ids = torch.full((len(rows), width), self._decoder.pad_token_id, dtype=torch.long)
        fed = torch.zeros((len(rows), width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        all_positions = self._positions()
        for j, (k, columns) in enumerate(zip(rows, feeds, strict=True)):
            ids[j, : len(columns)] = masked_ids[k, columns]
            fed[j, : len(columns)] = 1
            positions[j, : len(columns)] = all_positions[k, columns]
        layers = _layer_tensors(self._cache)
        index = torch.tensor([b + k for k in rows], device=layers[0][0].device)
        scratch = (
            _cache_from_tensors([(keys[index, :, :start], values[index, :, :start]) for keys, values in layers])
            if start > 0
            else self._decoder.new_cache()
        )
        self._decoder.forward(ids, torch.cat([visible[rows, :start], fed], dim=1), positions, scratch)
        self.stats.forwards += 1
        for (keys, values), (new_keys, new_values) in zip(layers, _layer_tensors(scratch), strict=True):
            for j, (k, columns) in enumerate(zip(rows, feeds, strict=True)):
                at = columns.to(keys.device)
                keys[b + k, :, at] = new_keys[j, :, start : start + len(columns)]
                values[b + k, :, at] = new_values[j, :, start : start + len(columns)]
        for k, columns in zip(rows, feeds, strict=True):
            row = self._rows[self._active[k]]
            version, tokens = len(row.anchor_history) - 1, (columns - self._offset(k)).tolist()
            row.kv_version.extend([-1] * (tokens[-1] + 1 - len(row.kv_version)))
            for token in tokens:
                row.kv_version[token] = version
            self.stats.resync_tokens += len(columns)
            self.stats._add(self.stats.row_resync_tokens, self._active[k], len(columns))

    def _fuse(self) -> None:
        """Bring the parked masked rows up to the original rows' cache and join both into one 2B-row cache."""
        if self._fused:
            return
        end = self._cached
        original = _layer_tensors(self._cache)
        first_hidden = self._hidden[:, :end].any(dim=0).nonzero()
        shared = int(first_hidden[0]) if len(first_hidden) else end
        parked = _layer_tensors(self._mask_cache) if self._mask_cache is not None else None
        parked_width = parked[0][0].shape[2] if parked else 0
        layers = []
        for layer, (keys, values) in enumerate(original):
            # Before the first hidden column a masked row equals its original row; after it, the parked columns
            # are kept and the ones never computed are zero placeholders that the re-sync below fills.
            parts_k, parts_v = [keys[:, :, :shared]], [values[:, :, :shared]]
            if parked is not None and parked_width > shared:
                parts_k.append(parked[layer][0][:, :, shared:parked_width])
                parts_v.append(parked[layer][1][:, :, shared:parked_width])
            missing = end - max(shared, parked_width)
            if missing > 0:
                parts_k.append(keys.new_zeros((*keys.shape[:2], missing, keys.shape[3])))
                parts_v.append(values.new_zeros((*values.shape[:2], missing, values.shape[3])))
            layers.append((torch.cat(parts_k, dim=2), torch.cat(parts_v, dim=2)))
        self._mask_cache = _cache_from_tensors(layers)
        for k in range(len(self._active)):
            self._mark_masked(k, 0, shared)
            row = self._rows[self._active[k]]
            offset = self._offset(k)
            del row.kv_version[max(0, max(shared, parked_width) - offset) :]  # placeholders are not computed
        self._join_caches()
        self._resync(list(range(len(self._active))))

    def _join_caches(self) -> None:
        joined = [
            (torch.cat([ko, km]), torch.cat([vo, vm]))
            for (ko, vo), (km, vm) in zip(_layer_tensors(self._cache), _layer_tensors(self._mask_cache), strict=True)
        ]
        self._cache = _cache_from_tensors(joined)
        self._mask_cache = None
        self._fused = True

    def _split(self) -> None:
        """Stop steering: keep the original rows' cache and park the masked rows (views, no copy)."""
        b = len(self._active)
        layers = _layer_tensors(self._cache)
        self._cache = _cache_from_tensors([(k[:b], v[:b]) for k, v in layers])
        self._mask_cache = _cache_from_tensors([(k[b:], v[b:]) for k, v in layers])
        self._fused = False


def _steering_effect(
    combined: torch.Tensor, log_original: torch.Tensor, original_top: torch.Tensor
) -> tuple[list[bool], list[float]]:
    """Per row: did steering change the argmax, and KL(steered ‖ original) of the next-token distributions (nats).

    Args:
        combined: ``(B, V)`` steered logits.
        log_original: ``(B, V)`` log-softmax of the original branch.
        original_top: ``(B,)`` its argmax.
    """
    flipped = combined.argmax(dim=-1) != original_top
    log_s = torch.log_softmax(combined, dim=-1)
    kl = (log_s.exp() * (log_s - log_original)).sum(dim=-1).clamp(min=0.0)
    return flipped.tolist(), kl.tolist()


def _pad_columns(t: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad a ``(rows, heads, columns, dim)`` key or value tensor with zero columns up to ``width``."""
    n = width - t.shape[2]
    return torch.cat([t.new_zeros((*t.shape[:2], n, t.shape[3])), t], dim=2) if n > 0 else t


def _agreement(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _span_mask(spans: Sequence[tuple[int, int]], length: int) -> torch.Tensor:
    mask = torch.zeros(length, dtype=torch.bool)
    for start, end in spans:
        mask[start:end] = True
    return mask
