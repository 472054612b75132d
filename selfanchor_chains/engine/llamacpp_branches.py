"""The two llama.cpp sequences of one steered row: what each step feeds them, and how the masked one follows
anchor changes.

A row holds a slot of the context: the original sequence sees every token; the masked sequence sees the same
tokens minus the hidden (anchor) ones, each at its original position (``anchor_masking="attention"``), or the
neutral token in their place (``"replace"``). Bookkeeping per row:

- ``orig_done``: the original sequence has cells for tokens ``[0, orig_done)``;
- ``masked_done``: the masked sequence has the right cells for every token of ``[0, masked_done)`` it sees under
  the row's current anchors (and none at or after ``masked_done``).

Before the first hidden token the masked sequence equals the original one, so those cells are shared: in the
prefill the tokens join both sequences (one cell each), and a masked sequence that fell behind (the row was not
steered for a while, or an anchor change reset it) takes the original's cells with ``seq_cp``, a bookkeeping
operation. An anchor change removes the masked sequence's cells from the first position whose visibility changed
(``seq_rm``); the next step feeds its visible tokens from there again, in the same ``llama_decode`` as the step.

One difference from the torch engine, where a hidden token's query does not see its own key either: when the
newest token of a row is itself hidden (an anchor that ends the prompt, or covers the latest generated token), the
masked sequence still needs its logits, so the token is fed to it and attends to itself; its cell is removed right
after the step, so later tokens never see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .llamacpp_model import BatchEntry, LlamaCppModel

__all__ = ["RowBranches", "StepFeed"]


@dataclass
class StepFeed:
    """What one row adds to a step's batch, and where its logits will be."""

    entries: list[BatchEntry]
    original_logits: int  # index among the logits-bearing entries of this row
    masked_logits: int | None
    drop_after: int | None = None  # position of a hidden newest token fed to the masked sequence, removed after


@dataclass
class RowBranches:
    """The llama.cpp side of one row: its slot, tokens, which are hidden, and how far each sequence is."""

    slot: int
    tokens: list[int]
    hidden: list[bool]
    replace: bool = False
    neutral_token: int = 0
    orig_done: int = 0
    masked_done: int = 0
    resync: int = field(default=0)  # masked tokens fed beyond the newest one in the latest step (stats)
    # The first hidden token (None: none), kept with ``hidden`` so no decode step scans the row for it.
    first_hidden: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.first_hidden = next((t for t, h in enumerate(self.hidden) if h), None)

    @property
    def original_seq(self) -> int:
        return 2 * self.slot

    @property
    def masked_seq(self) -> int:
        return 2 * self.slot + 1

    def push(self, token: int) -> None:
        """A generated token: visible until an anchor change says otherwise."""
        self.tokens.append(token)
        self.hidden.append(False)

    def set_hidden(self, spans: Sequence[tuple[int, int]], model: LlamaCppModel) -> None:
        """New anchors: drop the masked cells from the first position whose visibility changed."""
        hidden = [False] * len(self.tokens)
        for start, end in spans:
            hidden[start:end] = [True] * (end - start)
        changed = next((t for t, (a, b) in enumerate(zip(hidden, self.hidden, strict=True)) if a != b), None)
        self.hidden = hidden
        self.first_hidden = next((t for t, h in enumerate(hidden) if h), None)
        if changed is not None and changed < self.masked_done:
            model.seq_rm(self.masked_seq, changed, -1)
            self.masked_done = changed

    def plan(self, steer: bool, model: LlamaCppModel) -> StepFeed:
        """This row's entries of the next batch: the original sequence's new tokens, and when ``steer`` the masked
        sequence's (after taking what it can from the original's cells)."""
        n, o_seq, m_seq = len(self.tokens), self.original_seq, self.masked_seq
        o_from = self.orig_done
        if not steer:
            entries = [BatchEntry(self.tokens[t], t, (o_seq,), t == n - 1) for t in range(o_from, n)]
            return StepFeed(entries, 0, None)
        first_hidden = len(self.tokens) if self.first_hidden is None else self.first_hidden
        # Where the masked sequence lags inside the part it shares with the original, it takes the original's cells.
        share_to = min(first_hidden, o_from)
        if self.masked_done < share_to:
            model.seq_cp(o_seq, m_seq, self.masked_done, share_to)
            self.masked_done = share_to
        # New tokens before the first hidden one join both sequences (one cell), while they are equal so far.
        shared_end = max(min(first_hidden, n - 1), o_from) if self.masked_done == o_from else o_from
        entries = [
            BatchEntry(self.tokens[t], t, (o_seq, m_seq) if t < shared_end else (o_seq,), t == n - 1)
            for t in range(o_from, n)
        ]
        m_from = shared_end if shared_end > o_from else self.masked_done
        drop_after = None
        fed = 0
        for t in range(m_from, n):
            token = self.tokens[t]
            if self.hidden[t]:
                if self.replace:
                    token = self.neutral_token
                elif t == n - 1:
                    drop_after = t  # the newest token is hidden: fed for its logits, removed after the step
                else:
                    continue
            entries.append(BatchEntry(token, t, (m_seq,), t == n - 1))
            fed += 1
        self.resync = max(0, fed - 1) if o_from > 0 else 0
        return StepFeed(entries, 0, 1, drop_after)

    def commit(self, feed: StepFeed, model: LlamaCppModel) -> None:
        """After the step's decode: both sequences are up to date (a hidden newest token leaves the masked one)."""
        n = len(self.tokens)
        self.orig_done = n
        if feed.masked_logits is not None:
            self.masked_done = n
            if feed.drop_after is not None:
                model.seq_rm(self.masked_seq, feed.drop_after, feed.drop_after + 1)
