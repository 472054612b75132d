"""Exactness of the two-branch engine against cache-free reference forwards (tiny random Llama, float32)."""

from __future__ import annotations

import math

import pytest
import torch

from selfanchor_chains.engine import (
    DecodingInputError,
    RowRequest,
    SamplingConfig,
    SteeredDecoder,
    combine_logits,
    harmonic_mean,
)

PROMPTS = [
    "Question: Tom has 3 apples and buys 5 more. How many now? Answer:",
    "Q: 2+2? A:",
    "Context: the sky is green today. Question: what colour is the sky?",
]


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def reference_logits(model, seq: list[int], spans, omega: float) -> torch.Tensor:
    """ω·l_o + (1−ω)·l_m from two full forwards without any cache, anchors hidden by the attention mask."""
    ids = torch.tensor([seq])
    full = torch.ones_like(ids)
    hidden = full.clone()
    for start, end in spans:
        hidden[0, start:end] = 0
    with torch.no_grad():
        l_o = model(input_ids=ids, attention_mask=full).logits[0, -1].float()
        l_m = model(input_ids=ids, attention_mask=hidden).logits[0, -1].float()
    return omega * l_o + (1 - omega) * l_m


def decode_checking_every_step(session, model, rows) -> None:
    """Run a session with fixed anchors and ω, checking each step's combined logits against the reference."""
    for _ in session:
        for k, i in enumerate(session.last_rows):
            seq = list(rows[i].prompt_ids) + session.generated_ids(i)[:-1]
            expected = reference_logits(model, seq, rows[i].anchor_spans, rows[i].omega)
            assert torch.allclose(session.last_logits[k], expected, atol=1e-4), f"row {i}"


@pytest.fixture
def decoder(tiny_model, byte_tokenizer):
    return SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[])


def test_combine_logits_closed_form():
    l_o = torch.tensor([[1.0, 2.0, -3.0], [0.5, 0.0, 4.0]])
    l_m = torch.tensor([[0.0, 4.0, 1.0], [2.0, 2.0, 2.0]])
    omega = torch.tensor([1.5, 1.0])
    out = combine_logits(l_o, l_m, omega)
    assert torch.allclose(out[0], torch.tensor([1.5, 1.0, -5.0]))
    assert torch.equal(out[1], l_o[1])  # ω == 1 is exactly the original branch


def test_combine_logits_guards_non_finite():
    l_o = torch.tensor([[float("nan"), float("inf"), 0.0]])
    l_m = torch.tensor([[0.0, float("-inf"), float("nan")]])
    out = combine_logits(l_o, l_m, torch.tensor([2.0]))
    assert torch.isfinite(out).all()


def test_harmonic_mean():
    assert harmonic_mean([0.5, 1.0]) == pytest.approx(2 / 3)
    assert harmonic_mean([]) == 0.0


def test_every_step_matches_reference_forwards(decoder, tiny_model, byte_tokenizer):
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.7),
        RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(0, 5)], 1.0),  # unsteered row beside steered ones
        RowRequest(encode(byte_tokenizer, PROMPTS[2]), [(9, 31), (42, 60)], 0.6),
    ]
    session = decoder.start(rows, max_new_tokens=12)
    decode_checking_every_step(session, tiny_model, rows)
    assert all(len(r.token_ids) == 12 for r in session.results())


def test_greedy_matches_transformers_cfg(decoder, tiny_model, byte_tokenizer):
    ids = encode(byte_tokenizer, PROMPTS[0])
    spans = [(10, 40)]
    omega = 1.8
    ours = decoder.generate([RowRequest(ids, spans, omega)], max_new_tokens=16)[0].token_ids
    input_ids = torch.tensor([ids])
    negative_mask = torch.ones_like(input_ids)
    negative_mask[0, 10:40] = 0
    out = tiny_model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        guidance_scale=omega,
        negative_prompt_ids=input_ids,
        negative_prompt_attention_mask=negative_mask,
        max_new_tokens=16,
        min_new_tokens=16,
        do_sample=False,
        pad_token_id=byte_tokenizer.pad_token_id,
    )
    assert ours == out[0, len(ids) :].tolist()


def test_omega_one_is_plain_greedy(decoder, tiny_model, byte_tokenizer):
    ids = encode(byte_tokenizer, PROMPTS[2])
    session = decoder.start([RowRequest(ids, [(9, 31)], 1.0)], max_new_tokens=16)
    for _ in session:
        pass
    input_ids = torch.tensor([ids])
    plain = tiny_model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=16,
        min_new_tokens=16,
        do_sample=False,
        pad_token_id=byte_tokenizer.pad_token_id,
    )
    assert session.results()[0].token_ids == plain[0, len(ids) :].tolist()
    assert session.stats.steered_forwards == 0  # no masked branch was run at all


def test_batch_equals_one_by_one(decoder, byte_tokenizer):
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.5),
        RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 2.0),
        RowRequest(encode(byte_tokenizer, PROMPTS[2]), [], 1.0),
    ]
    batched = decoder.generate(rows, max_new_tokens=10)
    for row, result in zip(rows, batched, strict=True):
        single = decoder.generate([row], max_new_tokens=10)[0]
        assert result.token_ids == single.token_ids
        assert result.confidences == pytest.approx(single.confidences, abs=1e-5)


def run_with_schedule(decoder, rows, schedule, max_new_tokens):
    """Decode, applying ``schedule[step] = [(row, spans or None, omega or None)]`` between steps.

    Returns, per step, the engine's combined logits and the (spans, omega) in force for each row.
    """
    session = decoder.start(rows, max_new_tokens=max_new_tokens)
    state = {i: (list(r.anchor_spans), r.omega) for i, r in enumerate(rows)}
    log = []
    for step, _ in enumerate(session):
        log.append((session.last_logits.clone(), list(session.last_rows), dict(state)))
        for row, spans, omega in schedule.get(step, []):
            if spans is not None:
                session.set_anchors(row, spans)
            if omega is not None:
                session.set_omega(row, omega)
            state[row] = (spans if spans is not None else state[row][0], omega if omega is not None else state[row][1])
    return session, log


def check_log(model, rows, session, log):
    for step, (logits, active, state) in enumerate(log):
        for k, i in enumerate(active):
            seq = list(rows[i].prompt_ids) + session.generated_ids(i)[:step]
            spans, omega = state[i]
            expected = reference_logits(model, seq, spans, omega)
            assert torch.allclose(logits[k], expected, atol=1e-4), f"step {step}, row {i}"


def test_anchor_change_mid_generation_matches_recompute(decoder, tiny_model, byte_tokenizer):
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.6),
        RowRequest(encode(byte_tokenizer, PROMPTS[2]), [(9, 31)], 1.4),
    ]
    n0, n1 = len(rows[0].prompt_ids), len(rows[1].prompt_ids)
    schedule = {
        3: [(0, [(10, 40), (n0, n0 + 3)], None)],  # anchor generated tokens (a "plan step")
        6: [(0, [(10, 40)], None), (1, [(0, 5), (n1 + 2, n1 + 6)], None)],  # drop them; move row 1's anchors
        9: [(1, [(20, 30)], None)],
    }
    session, log = run_with_schedule(decoder, rows, schedule, max_new_tokens=14)
    check_log(tiny_model, rows, session, log)
    assert session.stats.resync_tokens > 0
    # Re-syncing touches only the changed suffixes, never whole prompts again.
    assert session.stats.resync_tokens < 3 * (n0 + n1)


def test_steering_pauses_and_resumes_exactly(decoder, tiny_model, byte_tokenizer):
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.0),
        RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 1.0),
    ]
    n0 = len(rows[0].prompt_ids)
    schedule = {
        2: [(0, None, 1.5)],  # masked rows were never computed: catch up from scratch
        5: [(0, None, 1.0)],  # all unsteered again: masked rows fall behind
        7: [(1, [(0, 8)], None)],  # anchors change while parked
        9: [(0, [(10, 40), (n0 + 1, n0 + 4)], 2.0), (1, None, 1.3)],  # resume: one catch-up prefill
    }
    session, log = run_with_schedule(decoder, rows, schedule, max_new_tokens=14)
    check_log(tiny_model, rows, session, log)
    assert 0 < session.stats.steered_forwards < session.stats.decode_steps


def test_cancel_one_row_keeps_others_exact(decoder, tiny_model, byte_tokenizer):
    rows = [RowRequest(encode(byte_tokenizer, p), [(2, 9)], 1.5) for p in PROMPTS]
    session = decoder.start(rows, max_new_tokens=10)
    log = []
    for step, _ in enumerate(session):
        log.append((session.last_logits.clone(), list(session.last_rows), {i: ([(2, 9)], 1.5) for i in range(3)}))
        if step == 3:
            session.cancel(2)  # the longest prompt: compaction also trims padding columns
    check_log(tiny_model, rows, session, log)
    results = session.results()
    assert results[2].finish_reason == "cancelled" and len(results[2].token_ids) == 4
    assert len(results[0].token_ids) == 10


def test_eos_finishes_a_row_early(tiny_model, byte_tokenizer):
    ids = encode(byte_tokenizer, PROMPTS[0])
    free = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[]).generate(
        [RowRequest(ids, [(10, 40)], 1.5)], max_new_tokens=8
    )[0]
    eos = free.token_ids[4]
    first = free.token_ids.index(eos)
    stopped = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[eos]).generate(
        [RowRequest(ids, [(10, 40)], 1.5)], max_new_tokens=8
    )[0]
    assert stopped.finish_reason == "eos"
    assert stopped.token_ids == free.token_ids[:first]


def test_stop_strings_cut_text_and_never_leak_to_stream(decoder, byte_tokenizer):
    ids = encode(byte_tokenizer, PROMPTS[1])
    free = decoder.generate([RowRequest(ids)], max_new_tokens=12)[0]
    stop = free.text[5:8]
    assert stop and stop not in free.text[:5]
    session = decoder.start([RowRequest(ids)], max_new_tokens=12, stop=[stop, "never-there"])
    streamed = "".join(e.text for events in session for e in events)
    result = session.results()[0]
    assert result.finish_reason == "stop"
    assert result.text == free.text[: free.text.index(stop)]
    assert streamed == result.text


def test_stream_text_equals_final_text(decoder, byte_tokenizer):
    rows = [RowRequest(encode(byte_tokenizer, p), [(0, 4)], 1.5) for p in PROMPTS]
    session = decoder.start(rows, max_new_tokens=15)
    pieces = {i: "" for i in range(len(rows))}
    for events in session:
        for e in events:
            pieces[e.row] += e.text
    for i, result in enumerate(session.results()):
        assert pieces[i] == result.text
        assert result.finish_reason == "length"


def test_seeded_sampling_is_reproducible(decoder, byte_tokenizer):
    row = RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.5)
    sampling = SamplingConfig(do_sample=True, temperature=0.9, top_p=0.9, top_k=50, seed=7)
    a = decoder.generate([row], max_new_tokens=12, sampling=sampling)[0].token_ids
    b = decoder.generate([row], max_new_tokens=12, sampling=sampling)[0].token_ids
    c = decoder.generate([row], max_new_tokens=12, sampling=SamplingConfig(do_sample=True, seed=8))[0].token_ids
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (RowRequest([], [], 1.0), "empty prompt"),
        (RowRequest([1, 2, 3], [(2, 2)], 1.5), "empty or outside"),
        (RowRequest([1, 2, 3], [(1, 4)], 1.5), "empty or outside"),
        (RowRequest([1, 2, 3], [(-1, 2)], 1.5), "empty or outside"),
        (RowRequest([1, 2, 3], [(0, 1)], math.nan), "omega must be a finite"),
        (RowRequest([1, 2, 3], [(0, 1)], math.inf), "omega must be a finite"),
        (RowRequest([1, 2, 3], [(0, 1)], -0.5), "omega must be a finite"),
        (RowRequest([1] * 600, [(0, 1)], 1.5), "does not fit the model's context"),
    ],
)
def test_bad_input_is_rejected_before_any_forward(decoder, row, message):
    with pytest.raises(DecodingInputError, match=message):
        decoder.start([row], max_new_tokens=4)


def test_bad_controls_are_rejected(decoder, byte_tokenizer):
    ids = encode(byte_tokenizer, PROMPTS[1])
    with pytest.raises(DecodingInputError, match="max_new_tokens"):
        decoder.start([RowRequest(ids)], max_new_tokens=0)
    with pytest.raises(DecodingInputError, match="no rows"):
        decoder.start([], max_new_tokens=4)
    with pytest.raises(DecodingInputError, match="temperature"):
        SamplingConfig(do_sample=True, temperature=0.0)
    session = decoder.start([RowRequest(ids)], max_new_tokens=4)
    with pytest.raises(DecodingInputError, match="outside"):
        session.set_anchors(0, [(0, len(ids) + 5)])  # beyond the tokens that exist so far
    with pytest.raises(DecodingInputError, match="omega"):
        session.set_omega(0, float("nan"))


def test_plan_hidden_then_shown_recomputes_only_what_it_must(decoder, tiny_model, byte_tokenizer):
    """Self-Anchor's pattern: a plan is anchored (hidden in the masked row) and later shown again.

    Hidden columns are never recomputed, and when the plan is shown again its own columns are still right (they
    were computed while it was visible under the same anchors); only the columns after it are recomputed.
    """
    ids = encode(byte_tokenizer, PROMPTS[0])
    n = len(ids)
    question = [(10, 40)]
    schedule = {
        5: [(0, [*question, (n, n + 3)], None)],  # reasoning step: hide the plan (tokens n .. n+3)
        10: [(0, question, None)],  # next plan step: show it again
    }
    session, log = run_with_schedule(decoder, [RowRequest(ids, question, 1.6)], schedule, max_new_tokens=16)
    check_log(tiny_model, [RowRequest(ids, question, 1.6)], session, log)
    # At step s the row holds s+1 generated tokens, the newest not yet in the cache: s cached generated tokens.
    # Step 5: tokens n+3 .. n+5 are stale (2); step 10: tokens n+3 .. n+10 (7). The plan itself: never.
    assert session.stats.resync_tokens == (5 - 3) + (10 - 3)


def test_masked_prefill_feeds_only_visible_columns_after_the_first_hidden_one(decoder, tiny_model, byte_tokenizer):
    """The masked branch shares the columns before the first anchor and never computes the anchor's own columns."""
    ids = encode(byte_tokenizer, PROMPTS[0])
    anchors = [(30, 40), (45, 50)]
    session = decoder.start([RowRequest(ids, anchors, 1.5)], max_new_tokens=4)
    for _ in session:
        expected = reference_logits(tiny_model, ids + session.generated_ids(0)[:-1], anchors, 1.5)
        assert torch.allclose(session.last_logits[0], expected, atol=1e-4)
    assert session.stats.prefill_tokens == len(ids) + (len(ids) - 30 - 10 - 5)


def test_masked_prefill_of_rows_with_different_anchors_is_exact(decoder, tiny_model, byte_tokenizer):
    """Rows whose feeds differ in length (one anchors most of its prompt, one ends on an anchor) stay exact."""
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(5, 60)], 1.5),
        RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 2.0),
    ]
    rows.append(RowRequest(rows[0].prompt_ids, [(50, len(rows[0].prompt_ids))], 1.5))  # the last token is hidden
    session = decoder.start(rows, max_new_tokens=4)
    for _ in session:
        for k, row in enumerate(rows):
            expected = reference_logits(
                tiny_model, row.prompt_ids + session.generated_ids(k)[:-1], row.anchor_spans, row.omega
            )
            assert torch.allclose(session.last_logits[k], expected, atol=1e-4)
    # Each masked row computes only its visible columns after its own first hidden one (+ the last column).
    n0, n1 = len(rows[0].prompt_ids), len(rows[1].prompt_ids)
    masked = (n0 - 60) + (n1 - 8) + 1
    assert session.stats.prefill_tokens + session.stats.reused_prefix_tokens == 2 * n0 + n1 + masked


def test_shared_prompt_prefix_is_reused_exactly(tiny_model, byte_tokenizer):
    decoder = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[])
    system = "System: you are careful. Reason step by step and give the answer. "

    def row(question: str, omega: float) -> RowRequest:
        ids = encode(byte_tokenizer, system + question)
        return RowRequest(ids, [(len(encode(byte_tokenizer, system)), len(ids))], omega)

    decoder.generate([row("Q: 2+2? A:", 1.5), row("Q: what is 12 times 3? A:", 1.5)], max_new_tokens=3)
    rows = [row("Q: seven minus 2? A:", 1.7), row("Q: 1+1? A:", 1.2)]
    session = decoder.start(rows, max_new_tokens=6)
    decode_checking_every_step(session, tiny_model, rows)
    shared = len(encode(byte_tokenizer, system + "Q: "))
    width = max(len(r.prompt_ids) for r in rows)
    # The longer row reuses the whole shared prefix; the shorter one what lies right of its left padding.
    assert session.stats.reused_prefix_tokens == shared + (shared - (width - len(rows[1].prompt_ids)))
    off = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[], prefix_cache_tokens=0)
    baseline = off.start(rows, max_new_tokens=6)
    for _ in baseline:
        pass
    assert [r.token_ids for r in baseline.results()] == [r.token_ids for r in session.results()]
    assert baseline.stats.reused_prefix_tokens == 0
    assert baseline.stats.prefill_tokens - session.stats.prefill_tokens == session.stats.reused_prefix_tokens


def test_anchor_inside_a_cached_prefix_is_still_exact(tiny_model, byte_tokenizer):
    """The masked rows start before the reused prefix ends: they are prefilled from the anchor, not from the cache."""
    decoder = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[])
    system = "Context: the sky is green today and grass is blue. Now answer. "
    decoder.generate([RowRequest(encode(byte_tokenizer, system + "Q: ok?"), [], 1.0)], max_new_tokens=2)
    rows = [
        RowRequest(encode(byte_tokenizer, system + "Q: what colour is the sky?"), [(9, 30)], 1.8),
        RowRequest(encode(byte_tokenizer, system + "Q: and grass?"), [(9, 30), (66, 70)], 1.3),
    ]
    session = decoder.start(rows, max_new_tokens=5)
    decode_checking_every_step(session, tiny_model, rows)
    assert session.stats.reused_prefix_tokens > 0


def _lookup(decoder, tokens):
    """The stored prefix a session of this decoder would find (for the model's current device and dtype)."""
    return decoder.prefix_cache.lookup(tokens, decoder.weights.device, decoder.weights.dtype)


def test_prefix_cache_is_bounded_in_tokens_and_clearable(tiny_model, byte_tokenizer):
    prompts = [encode(byte_tokenizer, f"Prompt number {i}: a fairly long opening for this row.") for i in range(4)]
    stored = len(prompts[0]) - 1  # one row: all but the last token (its logits are needed) is a shared prefix
    decoder = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[], prefix_cache_tokens=2 * stored + 5)
    for ids in prompts:
        decoder.generate([RowRequest(ids, [], 1.0)], max_new_tokens=1)
    assert [len(k) for k in decoder.prefix_cache.entries] == [stored, stored]  # the two most recent
    agreed, layers = _lookup(decoder, prompts[3])
    assert layers is not None and agreed == stored
    assert _lookup(decoder, prompts[0])[0] < 16  # evicted: only "Prompt number " agrees
    decoder.generate([RowRequest(encode(byte_tokenizer, "x" * (3 * stored)), [], 1.0)], max_new_tokens=1)
    assert [len(k) for k in decoder.prefix_cache.entries] == [stored, stored]  # too long for the budget: not stored
    decoder.model.to(torch.float64)  # keys of the old dtype no longer fit the model
    try:
        assert _lookup(decoder, prompts[3]) == (0, None)
    finally:
        decoder.model.to(torch.float32)
    assert _lookup(decoder, prompts[3])[0] == stored
    decoder.clear_prefix_cache()
    assert _lookup(decoder, prompts[3]) == (0, None)
    with pytest.raises(DecodingInputError, match="prefix_cache_tokens"):
        SteeredDecoder(tiny_model, byte_tokenizer, prefix_cache_tokens=-1)


def test_rows_stale_at_the_same_step_share_one_resync_forward(decoder, tiny_model, byte_tokenizer):
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.6),
        RowRequest(encode(byte_tokenizer, PROMPTS[2]), [(9, 31)], 1.4),
    ]
    n0, n2 = len(rows[0].prompt_ids), len(rows[1].prompt_ids)
    schedule = {4: [(0, [(10, 40), (n0, n0 + 2)], None), (1, [(9, 31), (n2 + 1, n2 + 3)], None)]}
    session, log = run_with_schedule(decoder, rows, schedule, max_new_tokens=8)
    check_log(tiny_model, rows, session, log)
    prefill_forwards = 2  # original rows, then masked rows
    assert session.stats.forwards == prefill_forwards + (session.stats.decode_steps - 1) + 1


def test_resume_after_pause_with_padded_rows_is_exact(decoder, tiny_model, byte_tokenizer):
    """Steered, paused (masked rows parked), resumed: left-padded rows keep their masked history."""
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[2]), [(0, 12)], 1.5),  # anchored from its first token
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(3, 8)], 1.7),  # a little left padding
        RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 1.3),  # much left padding
    ]
    n1 = len(rows[1].prompt_ids)
    schedule = {
        2: [(0, None, 1.0), (1, None, 1.0), (2, None, 1.0)],  # pause: masked rows parked
        4: [(1, [(3, 8), (n1 + 1, n1 + 3)], None)],  # anchors change while parked
        5: [(0, None, 1.5), (1, None, 1.7), (2, None, 1.3)],  # resume
        8: [(1, [(3, 8)], None)],
    }
    session, log = run_with_schedule(decoder, rows, schedule, max_new_tokens=12)
    check_log(tiny_model, rows, session, log)


def test_marking_columns_inside_left_padding_changes_nothing(decoder, byte_tokenizer):
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[2]), [(0, 5)], 1.5),
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(3, 8)], 1.5),  # one column of left padding
    ]
    session = decoder.start(rows, max_new_tokens=4)
    next(iter(session))
    before = list(session._rows[1].kv_version)
    assert len(before) == len(rows[1].prompt_ids)
    for end_column in (0, 1):  # an empty range, and the padding column (a resumed fuse shares none of row 0)
        session._mark_masked(1, 0, end_column)
        assert session._rows[1].kv_version == before


# -- the replace counterfactual, steering only when unsure, and the steering diagnostics -------------------------


def reference_replaced(model, seq: list[int], spans, omega: float, neutral: int) -> torch.Tensor:
    """ω·l_o + (1−ω)·l_m where the masked forward sees ``neutral`` at the anchor positions (full attention)."""
    ids = torch.tensor([seq])
    masked = ids.clone()
    for start, end in spans:
        masked[0, start:end] = neutral
    with torch.no_grad():
        l_o = model(input_ids=ids).logits[0, -1].float()
        l_m = model(input_ids=masked).logits[0, -1].float()
    return omega * l_o + (1 - omega) * l_m


def test_replace_masking_matches_reference_through_anchor_changes(tiny_model, byte_tokenizer):
    decoder = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[], neutral_token_id=7)
    rows = [
        RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.6, anchor_masking="replace"),
        RowRequest(encode(byte_tokenizer, PROMPTS[2]), [(9, 31)], 1.4, anchor_masking="replace"),
        RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 1.5),  # a hiding row in the same batch
    ]
    n0 = len(rows[0].prompt_ids)
    schedule = {
        3: [(0, [(10, 40), (n0, n0 + 3)], None)],  # a "plan" anchored: its columns now read as neutral
        6: [(0, [(10, 40)], None), (1, [(0, 5)], None)],  # shown again; row 1's anchors move
        8: [(0, None, 1.0), (1, None, 1.0), (2, None, 1.0)],  # pause: masked rows parked
        10: [(0, None, 2.0), (1, None, 1.3), (2, None, 1.5)],  # resume
    }
    session, log = run_with_schedule(decoder, rows, schedule, max_new_tokens=14)
    for step, (logits, active, state) in enumerate(log):
        for k, i in enumerate(active):
            seq = list(rows[i].prompt_ids) + session.generated_ids(i)[:step]
            spans, omega = state[i]
            if rows[i].anchor_masking == "replace":
                expected = reference_replaced(tiny_model, seq, spans, omega, neutral=7)
            else:
                expected = reference_logits(tiny_model, seq, spans, omega)
            assert torch.allclose(logits[k], expected, atol=1e-4), f"step {step}, row {i}"


def test_replace_recomputes_the_anchor_columns_themselves(tiny_model, byte_tokenizer):
    """Unlike hidden columns (never read), replaced columns are read, so a newly anchored plan is recomputed."""
    ids = encode(byte_tokenizer, PROMPTS[0])
    n = len(ids)
    counts = {}
    for masking in ("attention", "replace"):
        decoder = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[])
        rows = [RowRequest(ids, [(10, 40)], 1.6, anchor_masking=masking)]
        session, _ = run_with_schedule(decoder, rows, {5: [(0, [(10, 40), (n, n + 3)], None)]}, max_new_tokens=8)
        counts[masking] = session.stats.resync_tokens
    # At step 5 the cache holds 5 generated tokens: hiding n..n+3 re-feeds the 2 after it; replacing re-feeds all 5.
    assert counts == {"attention": 2, "replace": 5}


def test_steer_below_leaves_confident_tokens_unsteered(decoder, tiny_model, byte_tokenizer):
    ids = encode(byte_tokenizer, PROMPTS[0])
    steered = decoder.generate([RowRequest(ids, [(10, 40)], 3.0)], max_new_tokens=12)[0]
    confidences = steered.confidences
    gate = sorted(confidences)[len(confidences) // 2]  # about half of the tokens are at least this confident
    session = decoder.start([RowRequest(ids, [(10, 40)], 3.0, steer_below=gate)], max_new_tokens=12)
    for _ in session:
        seq = ids + session.generated_ids(0)[:-1]
        with torch.no_grad():
            l_o = tiny_model(input_ids=torch.tensor([seq])).logits[0, -1].float()
        confident = float(torch.softmax(l_o, -1).max()) >= gate
        expected = l_o if confident else reference_logits(tiny_model, seq, [(10, 40)], 3.0)
        assert torch.allclose(session.last_logits[0], expected, atol=1e-4)
    result = session.results()[0]
    assert all((w == 1.0) == (c >= gate) for w, c in zip(result.omegas, result.confidences, strict=True))
    assert 0 < sum(w == 1.0 for w in result.omegas) < len(result.omegas)


def test_steering_diagnostics_flips_and_kl(decoder, tiny_model, byte_tokenizer):
    ids = encode(byte_tokenizer, PROMPTS[0])
    session = decoder.start([RowRequest(ids, [(10, 40)], 4.0)], max_new_tokens=10)
    for events in session:
        seq = ids + session.generated_ids(0)[:-1]
        with torch.no_grad():
            l_o = tiny_model(input_ids=torch.tensor([seq])).logits[0, -1].float()
        steered = session.last_logits[0]
        p_s, p_o = torch.softmax(steered, -1), torch.softmax(l_o, -1)
        kl = float((p_s * (p_s.log() - p_o.log())).sum())
        (event,) = events
        assert event.flipped == bool(steered.argmax() != l_o.argmax())
        assert math.isclose(event.kl, kl, rel_tol=1e-3, abs_tol=1e-6)
    result = session.results()[0]
    assert len(result.flips) == len(result.kls) == len(result.token_ids)
    assert any(k > 0 for k in result.kls)
    plain = decoder.generate([RowRequest(ids, [(10, 40)], 1.0)], max_new_tokens=5)[0]
    assert plain.kls == [0.0] * 5 and not any(plain.flips)


@pytest.mark.parametrize(
    "row, message",
    [
        (RowRequest([1, 2, 3], [(0, 1)], 1.5, anchor_masking="blank"), "anchor_masking"),
        (RowRequest([1, 2, 3], [(0, 1)], 1.5, steer_below=0.0), "steer_below"),
        (RowRequest([1, 2, 3], [(0, 1)], 1.5, steer_below=1.5), "steer_below"),
    ],
)
def test_bad_masking_and_gate_are_rejected(decoder, row, message):
    with pytest.raises(DecodingInputError, match=message):
        decoder.start([row], max_new_tokens=2)


# -- continuous batching: rows join a running decode ------------------------------------------------------------


def drive(decoder, rows, plan, max_new_tokens, model):
    """Decode ``rows``; between steps apply ``plan[step]`` actions (``("add", RowRequest)``, ``("anchors", row,
    spans)``, ``("omega", row, ω)``, ``("cancel", row)``) and check every step of every row against cache-free
    reference forwards. Returns the session and the rows (added ones appended, in row-index order)."""
    rows = list(rows)
    session = decoder.start(rows, max_new_tokens=max_new_tokens)
    state = {i: (list(r.anchor_spans), r.omega) for i, r in enumerate(rows)}
    for step, _ in enumerate(session):
        for k, i in enumerate(session.last_rows):
            seq = list(rows[i].prompt_ids) + session.generated_ids(i)[:-1]
            spans, omega = state[i]
            if rows[i].anchor_masking == "replace":
                expected = reference_replaced(model, seq, spans, omega, decoder.neutral_token_id)
            else:
                expected = reference_logits(model, seq, spans, omega)
            assert torch.allclose(session.last_logits[k], expected, atol=1e-4), f"step {step}, row {i}"
        for action, *args in plan.get(step, []):
            if action == "add":
                (index,) = session.add_rows([args[0]])
                assert index == len(rows)
                rows.append(args[0])
                state[index] = (list(args[0].anchor_spans), args[0].omega)
            elif action == "anchors":
                session.set_anchors(args[0], args[1])
                state[args[0]] = (args[1], state[args[0]][1])
            elif action == "omega":
                session.set_omega(args[0], args[1])
                state[args[0]] = (state[args[0]][0], args[1])
            else:
                session.cancel(args[0])
    return session, rows


def test_rows_join_a_steered_batch_exactly(decoder, tiny_model, byte_tokenizer):
    long = encode(byte_tokenizer, PROMPTS[2])  # wider than the running batch: the old rows get left padding
    short = encode(byte_tokenizer, PROMPTS[1])
    rows = [RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.6)]
    plan = {
        1: [("add", RowRequest(long, [(9, 31)], 1.4))],
        3: [("add", RowRequest(short, [(3, 8)], 1.0))],  # joins unsteered (its masked rows kept current)
        5: [("anchors", 1, [(0, 5), (len(long) + 1, len(long) + 3)]), ("omega", 2, 1.8)],
        7: [("add", RowRequest(short, [(0, 4)], 1.5, anchor_masking="replace"))],
        9: [("anchors", 3, [(0, 4), (len(short) + 1, len(short) + 2)])],
    }
    session, rows = drive(decoder, rows, plan, max_new_tokens=12, model=tiny_model)
    results = session.results()
    assert [len(r.token_ids) for r in results] == [12, 12, 12, 12]
    assert session.waiting == 0


def test_a_steered_row_joining_an_unsteered_batch_starts_steering(decoder, tiny_model, byte_tokenizer):
    rows = [RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.0)]
    plan = {
        2: [("add", RowRequest(encode(byte_tokenizer, PROMPTS[2]), [(9, 31)], 1.5))],
        4: [("omega", 1, 1.0)],  # every row unsteered again: masked rows parked
        6: [("add", RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 1.0))],  # joins a split batch
        8: [("omega", 0, 1.7), ("omega", 2, 1.3)],  # resume: the joined rows' masked branch is rebuilt
    }
    drive(decoder, rows, plan, max_new_tokens=12, model=tiny_model)


def test_rows_join_after_the_batch_emptied(decoder, tiny_model, byte_tokenizer):
    rows = [RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 1.5)]
    plan = {2: [("cancel", 0), ("add", RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(10, 40)], 1.6))]}
    session, _ = drive(decoder, rows, plan, max_new_tokens=6, model=tiny_model)
    results = session.results()
    assert results[0].finish_reason == "cancelled" and len(results[0].token_ids) == 3
    assert len(results[1].token_ids) == 6 and results[1].finish_reason == "length"


def test_a_joined_row_decodes_the_same_tokens_as_alone(decoder, byte_tokenizer):
    alone = [
        decoder.generate([RowRequest(encode(byte_tokenizer, p), [(2, 9)], w)], max_new_tokens=10)[0].token_ids
        for p, w in zip(PROMPTS, (1.5, 1.0, 2.0), strict=True)
    ]
    session = decoder.start([RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(2, 9)], 1.5)], max_new_tokens=10)
    for step, _ in enumerate(session):
        if step == 2:
            session.add_rows([RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(2, 9)], 1.0)])
        if step == 6:
            session.add_rows([RowRequest(encode(byte_tokenizer, PROMPTS[2]), [(2, 9)], 2.0)])
    assert [r.token_ids for r in session.results()] == alone
    # Work is counted for the joined rows too: each was prefilled once.
    assert set(session.stats.row_prefill_tokens) == {0, 1, 2}


def test_added_rows_are_validated_at_once(decoder, byte_tokenizer):
    session = decoder.start([RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 1.5)], max_new_tokens=3)
    with pytest.raises(DecodingInputError, match="omega"):
        session.add_rows([RowRequest([1, 2, 3], [(0, 1)], float("nan"))])
    assert session.add_rows([]) == []
    before = session.add_rows([RowRequest(encode(byte_tokenizer, PROMPTS[0]), [(2, 9)], 1.5)])
    assert before == [1]  # before iterating: part of the first batch
    for _ in session:
        pass
    assert [len(r.token_ids) for r in session.results()] == [3, 3]


def test_replace_masking_when_the_newest_token_becomes_an_anchor(tiny_model, byte_tokenizer):
    """The token chosen at a step is fed at the next one: if it is anchored meanwhile, the masked branch must read
    the neutral token there too (not only in re-synced columns)."""
    decoder = SteeredDecoder(tiny_model, byte_tokenizer, eos_token_ids=[], neutral_token_id=7)
    ids = encode(byte_tokenizer, PROMPTS[0])
    n = len(ids)
    rows = [RowRequest(ids, [(10, 40)], 1.6, anchor_masking="replace")]
    drive(decoder, rows, {2: [("anchors", 0, [(10, 40), (n + 1, n + 3)])]}, max_new_tokens=6, model=tiny_model)


def test_probability_scaling_closed_form():
    # SPA's modulated_by_prob: l_o + (ω−1)·(p/p_max)·(l_o − l_m); p/p_max = exp(l_o − max l_o).
    l_o = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    l_m = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    omega = torch.tensor([2.0, 2.0, 0.5])
    out = combine_logits(l_o, l_m, omega, by_probability=torch.tensor([True, False, True]))
    assert torch.allclose(out[0], torch.tensor([4.0, 1.0, -2.0 * math.exp(-2.0)]))
    assert torch.allclose(out[1], 2.0 * l_o[1] - l_m[1])  # a constant row in the same batch
    assert torch.allclose(out[2], 0.5 * l_o[2] + 0.5 * l_m[2])  # as in SPA, modulation only for ω > 1
    top = combine_logits(l_o[:1], l_m[:1], omega[:1], by_probability=torch.tensor([True]))
    assert top[0, 0] == combine_logits(l_o[:1], l_m[:1], omega[:1])[0, 0]  # the top token gets the full move


def test_probability_scaled_rows_match_reference_forwards(decoder, tiny_model, byte_tokenizer):
    ids = [encode(byte_tokenizer, p) for p in PROMPTS[:2]]
    rows = [RowRequest(ids[0], [(10, 40)], 3.0, omega_scaling="probability"), RowRequest(ids[1], [(3, 8)], 2.0)]
    session = decoder.start(rows, max_new_tokens=8)
    for _ in session:
        for k, i in enumerate(session.last_rows):
            seq = list(rows[i].prompt_ids) + session.generated_ids(i)[:-1]
            constant = reference_logits(tiny_model, seq, rows[i].anchor_spans, rows[i].omega)
            if rows[i].omega_scaling == "constant":
                expected = constant
            else:
                l_o = reference_logits(tiny_model, seq, rows[i].anchor_spans, 1.0)
                l_m = reference_logits(tiny_model, seq, rows[i].anchor_spans, 0.0)
                relative = torch.exp(l_o - l_o.max())
                expected = l_o + (rows[i].omega - 1.0) * relative * (l_o - l_m)
            assert torch.allclose(session.last_logits[k], expected, atol=1e-4), f"row {i}"


def test_unknown_omega_scaling_is_rejected_before_any_forward(decoder, byte_tokenizer):
    row = RowRequest(encode(byte_tokenizer, PROMPTS[1]), [(3, 8)], 2.0, omega_scaling="loud")
    with pytest.raises(DecodingInputError, match="omega_scaling must be one of constant, probability"):
        decoder.start([row], max_new_tokens=2)


def test_jensen_shannon_and_divergence_omegas_closed_form():
    from selfanchor_chains.engine.logits import divergence_omegas, jensen_shannon

    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    q = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.5, 0.3, 0.2]])
    log_p, log_q = p.clamp(min=1e-30).log(), q.clamp(min=1e-30).log()
    m = (p + q) / 2
    by_hand = 0.5 * (p * (log_p - m.log())).nansum(-1) + 0.5 * (q * (log_q - m.log())).nansum(-1)
    jsd = jensen_shannon(log_p, log_q)
    assert torch.allclose(jsd, by_hand.clamp(min=0.0), atol=1e-5)
    assert jsd[0] == 0.0 and abs(float(jsd[1]) - math.log(2.0)) < 1e-5  # same: 0; disjoint: ln 2
    omegas = divergence_omegas(torch.tensor([3.0, 3.0, 1.0 + math.log(2.0)]), log_p, log_q)  # log_q as logits
    assert torch.allclose(omegas[:2], torch.tensor([1.0, 3.0]), atol=1e-5)  # no disagreement: plain; total: the cap
    assert torch.allclose(omegas[2], 1.0 + by_hand[2], atol=1e-5)  # ω = 1 + ln 2 is AdaCAD's α = JSD


def test_divergence_scaled_rows_match_reference_forwards(decoder, tiny_model, byte_tokenizer):
    ids = encode(byte_tokenizer, PROMPTS[2])
    rows = [RowRequest(ids, [(9, 36)], 4.0, omega_scaling="divergence")]
    session = decoder.start(rows, max_new_tokens=8)
    applied = []
    for _ in session:
        seq = ids + session.generated_ids(0)[:-1]
        l_o = reference_logits(tiny_model, seq, rows[0].anchor_spans, 1.0)
        l_m = reference_logits(tiny_model, seq, rows[0].anchor_spans, 0.0)
        p_o, p_m = torch.softmax(l_o, -1), torch.softmax(l_m, -1)
        mix = (p_o + p_m) / 2
        jsd = 0.5 * float((p_o * (p_o / mix).log()).sum() + (p_m * (p_m / mix).log()).sum())
        omega_t = 1.0 + 3.0 * jsd / math.log(2.0)
        applied.append(omega_t)
        assert torch.allclose(session.last_logits[0], omega_t * l_o + (1 - omega_t) * l_m, atol=1e-4)
    result = session.results()[0]
    assert result.omegas == pytest.approx(applied, abs=1e-4)  # the per-token ω is reported
    assert all(1.0 <= w < 4.0 for w in result.omegas)
