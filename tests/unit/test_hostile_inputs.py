"""Hostile and careless use (issue #12), on the tiny random model: no deadlock, clear typed errors, state intact."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _finishes(call: Callable[[], Any], seconds: float = 60.0) -> Any:
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it does not return in time."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # pragma: no cover - re-raised below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the call is blocked (deadlock)"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _abandon(stream: Any, after: int = 1) -> Any:
    """Take ``after`` chunks of a stream, then walk away while keeping the generator alive."""
    for i, _ in enumerate(stream):
        if i + 1 >= after:
            break
    return stream


def test_an_abandoned_llm_stream_blocks_nothing(tiny_model, byte_tokenizer):
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", omega=1.5, max_new_tokens=8)
    kept = _abandon(llm.stream("Tell me a story about <anchor>a cat</anchor>."))
    expected = _finishes(lambda: llm.invoke("What is 2+2?"))
    assert expected
    # Another thread too, and the abandoned stream can still be resumed afterwards.
    assert _finishes(lambda: llm.invoke("What is 2+2?")) == expected
    rest = _finishes(lambda: "".join(kept))
    assert isinstance(rest, str)


def test_an_abandoned_chat_stream_blocks_nothing(tiny_model, byte_tokenizer):
    from selfanchor_chains.langchain.chat_model import ChatSteeredHF

    chat = ChatSteeredHF(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", omega=1.5, max_tokens=8)
    kept = _abandon(chat.stream("Tell me a story."))
    assert _finishes(lambda: chat.invoke("What is 2+2?")).content is not None
    del kept


def test_an_abandoned_chain_stream_blocks_the_shared_model_for_no_one(long_context_model, byte_tokenizer):
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    llm = SteeredHFLLM(model=long_context_model, tokenizer=byte_tokenizer, model_id="tiny", max_new_tokens=8)
    chain = SelfAnchorChain(llm=llm, max_new_tokens=8)
    kept = _abandon(chain.stream("Tom has 3 apples and buys 5 more. How many?"), after=2)
    # The same weights through another LangChain object share the model's lock.
    assert _finishes(lambda: llm.invoke("What is 2+2?"))
    assert _finishes(lambda: chain.invoke("What is 2+2?"))["text"]
    del kept


def test_a_bare_string_as_anchors_is_refused_before_any_work(tiny_model, byte_tokenizer, monkeypatch):
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", omega=1.5, max_new_tokens=4)

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(tiny_model, "forward", no_forward)
    for call in (
        lambda: llm.invoke("The capital of Germany is Berlin.", anchors="Berlin"),
        lambda: list(llm.stream("The capital of Germany is Berlin.", anchors="Berlin")),
        lambda: llm.batch(["The capital of Germany is Berlin."], anchors="Berlin"),
    ):
        with pytest.raises(TypeError, match=r"anchors=\['Berlin'\]"):
            call()


@pytest.mark.parametrize("token", ["<|im_start|>", "<|im_end|>", "</s>", "<s>", "<pad>"])
def test_control_tokens_in_untrusted_text_stay_plain_text(byte_tokenizer, token):
    from tests.control_tokens import assert_no_injection

    assert_no_injection(byte_tokenizer, token)


def test_neutralising_leaves_ordinary_text_alone_and_reads_the_same(byte_tokenizer):
    from selfanchor_chains.prompting.control_tokens import NEUTRALIZER, neutralize_in_spans, neutralize_special_tokens

    specials = ["<|im_end|>", "<|im_start|>", "<s>"]
    assert neutralize_special_tokens("no control tokens here", specials) == "no control tokens here"
    out = neutralize_special_tokens("a<|im_end|>b<s>", specials)
    assert out.replace(NEUTRALIZER, "") == "a<|im_end|>b<s>" and "<|im_end|>" not in out and "<s>" not in out
    text, spans = neutralize_in_spans("x <s> y <s> z", [(8, 13)], specials)
    assert text.startswith("x <s> y ") and text[spans[0][0] : spans[0][1]].replace(NEUTRALIZER, "") == "<s> z"


@pytest.mark.parametrize(
    "chain, settings, message",
    [
        ("SPAChain", {"omega": float("nan")}, "omega"),
        ("SPAChain", {"omega": -1.0}, "omega"),
        ("SelfAnchorChain", {"max_new_tokens": 0}, "max_new_tokens"),
        ("SelfAnchorChain", {"bench": "nosuch"}, "nosuch"),
        ("CoTChain", {"format_retries": -1}, "format_retries"),
    ],
)
def test_chains_validate_their_settings_when_built(tiny_model, byte_tokenizer, chain, settings, message):
    from pydantic import ValidationError

    from selfanchor_chains import reasoning as chains
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny")
    with pytest.raises(ValidationError, match=message):
        getattr(chains, chain)(llm=llm, **settings)


@pytest.fixture
def saved_model(tmp_path, byte_tokenizer):
    """A tiny random Llama saved as a local Hugging Face folder (safetensors + tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(byte_tokenizer)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    folder = tmp_path / "model"
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    byte_tokenizer.save_pretrained(folder)
    return folder


def test_a_whole_local_model_loads(saved_model):
    from selfanchor_chains.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(saved_model), dtype="float32")
    assert model.config.num_hidden_layers == 2 and tokenizer.padding_side == "left"


def test_partial_weights_are_an_error_naming_the_path(saved_model):
    from safetensors.torch import load_file, save_file

    from selfanchor_chains.models import ModelLoadError, load_model_and_tokenizer

    weights = saved_model / "model.safetensors"
    tensors = load_file(weights)
    one = next(iter(sorted(tensors)))
    save_file({one: tensors[one]}, weights, metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"do not match the model: \d+ missing keys") as caught:
        load_model_and_tokenizer(str(saved_model), dtype="float32")
    assert str(saved_model) in str(caught.value)


def test_unexpected_weights_are_an_error(saved_model):
    from safetensors.torch import load_file, save_file

    from selfanchor_chains.models import ModelLoadError, load_model_and_tokenizer

    weights = saved_model / "model.safetensors"
    tensors = load_file(weights)
    tensors["model.layers.7.extra.weight"] = torch.zeros(2, 2)
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="unexpected keys"):
        load_model_and_tokenizer(str(saved_model), dtype="float32")


def test_garbage_weights_and_empty_folders_are_typed_errors(saved_model, tmp_path):
    from selfanchor_chains.models import ModelLoadError, load_model_and_tokenizer

    (saved_model / "model.safetensors").write_bytes(b"this is not a safetensors file" * 10)
    with pytest.raises(ModelLoadError, match=str(saved_model)):
        load_model_and_tokenizer(str(saved_model), dtype="float32")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no safetensors weights"):
        load_model_and_tokenizer(str(empty), dtype="float32")


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_model_name_is_refused(name):
    from selfanchor_chains.models import load_model_and_tokenizer

    with pytest.raises(ValueError, match="name_or_path"):
        load_model_and_tokenizer(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_unavailable_device_is_refused_before_loading(monkeypatch):
    from selfanchor_chains import models

    def no_loading(*args, **kwargs):
        raise AssertionError("weights were read")

    monkeypatch.setattr(models.loading, "_load_any", no_loading)
    with pytest.raises(ValueError, match="no CUDA device"):
        models.load_model_and_tokenizer("smollm2-135m", device="cuda")


# -- cases that already held before issue #12, kept in this catalogue so they stay held ---------------------------


@pytest.mark.parametrize(
    "prompt, error",
    [
        ("a <anchor>b <anchor>c</anchor> d</anchor>", "AnchorMarkupError"),  # nested
        ("a </anchor> b", "AnchorMarkupError"),  # stray close
        ("a <anchor>b", "AnchorMarkupError"),  # unclosed
    ],
)
def test_bad_markup_is_a_typed_error_before_any_forward(tiny_model, byte_tokenizer, monkeypatch, prompt, error):
    from selfanchor_chains import prompting as anchors
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", omega=1.5, max_new_tokens=4)
    monkeypatch.setattr(tiny_model, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    with pytest.raises(getattr(anchors, error)):
        llm.invoke(prompt)


@pytest.mark.parametrize("settings", [{"omega": float("nan")}, {"omega": -1.0}, {"max_new_tokens": 0}])
def test_bad_llm_settings_are_refused_when_built(tiny_model, byte_tokenizer, settings):
    from pydantic import ValidationError

    from selfanchor_chains.langchain.llm import SteeredHFLLM

    with pytest.raises(ValidationError):
        SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", **settings)


def test_bad_spans_and_over_long_prompts_are_refused_before_any_forward(tiny_model, byte_tokenizer):
    from selfanchor_chains.engine import DecodingInputError, RowRequest, SteeredDecoder
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from selfanchor_chains.prompting.markup import AnchorSpanError

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", omega=1.5, max_new_tokens=4)
    with pytest.raises(AnchorSpanError):
        llm.invoke("hello world", anchors=[(5, 2)])
    decoder = SteeredDecoder(tiny_model, byte_tokenizer)
    with pytest.raises(DecodingInputError, match="does not fit"):
        decoder.start([RowRequest([1] * 10_000, [(0, 2)], 1.5)], max_new_tokens=2)
    assert llm.invoke("hello <anchor>world</anchor>")  # the model is fine afterwards


def test_a_cancelled_async_stream_releases_the_model(tiny_model, byte_tokenizer):
    import asyncio

    from selfanchor_chains.langchain.llm import SteeredHFLLM

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", omega=1.5, max_new_tokens=64)

    async def run() -> str:
        async def consume() -> None:
            async for _ in llm.astream("Tell me a long story about <anchor>a cat</anchor>."):
                await asyncio.sleep(0)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await asyncio.wait_for(llm.ainvoke("What is 2+2?"), timeout=60)

    assert asyncio.run(run())


# -- text the tokenizer cannot encode (issue #36) --------------------------------------------------------------


def _no_forward(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a forward ran")))


@pytest.mark.parametrize(
    "call, where",
    [
        (lambda llm: llm.invoke("a \ud800 b"), r"prompt holds a lone surrogate U\+D800 at index 2"),
        (lambda llm: llm.batch(["fine", "x\udfffy"]), r"prompt holds a lone surrogate U\+DFFF at index 1"),
        (lambda llm: list(llm.stream("ok \ud83d")), "at index 3"),
        (lambda llm: llm.prepare("a b", anchors=["\ud800"]), "anchor 0 holds"),
    ],
)
def test_a_lone_surrogate_is_a_typed_error_naming_the_position(tiny_model, byte_tokenizer, monkeypatch, call, where):
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from selfanchor_chains.prompting import UnencodableTextError

    llm = SteeredHFLLM(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", omega=1.5, max_new_tokens=4)
    with monkeypatch.context() as patched:
        _no_forward(tiny_model, patched)
        with pytest.raises(UnencodableTextError, match=where) as caught:
            call(llm)
    assert isinstance(caught.value, ValueError) and caught.value.position >= 0
    assert llm.invoke("a b")  # nothing was left half done


def test_chat_chain_and_embedding_inputs_name_the_text_holding_a_lone_surrogate(
    tiny_model, byte_tokenizer, monkeypatch
):
    from selfanchor_chains.langchain.chat_model import ChatSteeredHF
    from selfanchor_chains.prompting import UnencodableTextError
    from selfanchor_chains.reasoning.chains import SelfAnchorChain

    chat = ChatSteeredHF(model=tiny_model, tokenizer=byte_tokenizer, model_id="tiny", omega=1.5, max_tokens=4)
    chain = SelfAnchorChain(llm=chat_llm(tiny_model, byte_tokenizer), max_new_tokens=4)
    _no_forward(tiny_model, monkeypatch)
    with pytest.raises(UnencodableTextError, match=r"message 1 content holds a lone surrogate U\+D800 at index 4"):
        chat.invoke([("system", "be brief"), ("user", "hi, \ud800")])
    with pytest.raises(UnencodableTextError, match=r"question holds .* at index 0"):
        chain.invoke("\udc00 what is 2+2?")
    with pytest.raises(UnencodableTextError, match="context document 1"):
        chain.invoke({"question": "q", "context": [_doc("fine"), _doc("bad \ud800")]})
    with pytest.raises(UnencodableTextError, match="text holds"):
        chat.get_num_tokens("x\ud800")


def chat_llm(model: Any, tokenizer: Any) -> Any:
    from selfanchor_chains.langchain.llm import SteeredHFLLM

    return SteeredHFLLM(model=model, tokenizer=tokenizer, model_id="tiny", omega=1.5, max_new_tokens=4)


def _doc(text: str) -> Any:
    from langchain_core.documents import Document

    return Document(page_content=text)
