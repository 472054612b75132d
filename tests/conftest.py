"""Shared fixtures: a tiny random Llama and an in-code byte-level tokenizer (no network, seconds)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest


def build_byte_tokenizer():  # type: ignore[no-untyped-def]
    """A byte-level BPE tokenizer with no merges: one token per byte, offsets exact, chat template included."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_chars))}
    for special in ("<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer.padding_side = "left"
    return tokenizer


def build_tiny_llama(vocab_size: int, seed: int = 0, tokenizer=None):  # type: ignore[no-untyped-def]
    """A 2-layer random Llama in float32 (GQA, so cache shapes are realistic).

    With ``tokenizer``, the output head favours printable ASCII tokens, so decoded text is readable and text-level
    checks (stop strings, streaming) are meaningful; the weights stay random.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=vocab_size - 5,
        bos_token_id=vocab_size - 4,
        eos_token_id=vocab_size - 3,
    )
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    if tokenizer is not None:
        with torch.no_grad():
            head = model.lm_head.weight
            for token_id in range(vocab_size):
                piece = tokenizer.decode([token_id])
                printable = len(piece) == 1 and piece.isascii() and (piece.isprintable() or piece == "\n")
                head[token_id] *= 4.0 if printable else 0.0
    return model


@pytest.fixture(scope="session")
def byte_tokenizer():  # type: ignore[no-untyped-def]
    return build_byte_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(byte_tokenizer):  # type: ignore[no-untyped-def]
    return build_tiny_llama(len(byte_tokenizer), tokenizer=byte_tokenizer)


def build_long_context_llama(vocab_size: int, *, initializer_range: float = 0.02, seed: int = 0):  # type: ignore[no-untyped-def]
    """A 1-layer random Llama whose context holds the reasoning templates (~600 byte tokens). A larger
    ``initializer_range`` (e.g. 0.5) makes its output depend on the prompt, so solves of different questions
    differ in text and length."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        pad_token_id=vocab_size - 5,
        bos_token_id=vocab_size - 4,
        eos_token_id=vocab_size - 3,
        initializer_range=initializer_range,
    )
    return LlamaForCausalLM(config).to(torch.float32).eval()


@pytest.fixture(scope="session")
def long_context_model(byte_tokenizer):  # type: ignore[no-untyped-def]
    return build_long_context_llama(len(byte_tokenizer))


@pytest.fixture(scope="session")
def prompt_sensitive_model(byte_tokenizer):  # type: ignore[no-untyped-def]
    """The long-context model with larger weights: its output depends on the prompt."""
    return build_long_context_llama(len(byte_tokenizer), initializer_range=0.5)


@pytest.fixture(scope="module")
def one_torch_thread():  # type: ignore[no-untyped-def]
    """One torch thread for a module: the tiny models gain nothing from threads, and on a CPU shared with other test
    runs oversubscribed OpenMP threads made such modules 5-10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
