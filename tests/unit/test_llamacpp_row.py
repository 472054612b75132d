"""The llama.cpp row of ``selfanchor bench speed``: where it runs, where it is skipped (and says why), and its
inputs checked before any server starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfanchor_chains.bench import llamacpp, speed


def _skips(methods: list[str], **kwargs: object) -> tuple[list[str], list[str]]:
    said: list[str] = []
    kept = speed._available_methods(methods, said.append, **kwargs)  # type: ignore[arg-type]
    return kept, said


def test_the_row_runs_at_batch_1_with_a_gguf_where_llamacpp_is_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(speed, "llamacpp_available", lambda: True)
    gguf = tmp_path / "m.gguf"
    assert _skips(["plain", "ours", "llamacpp"], batch=1, gguf=gguf) == (["plain", "ours", "llamacpp"], [])
    kept, said = _skips(["plain", "ours", "llamacpp"], batch=8, gguf=gguf)
    assert kept == ["plain", "ours"] and said == ["the llama.cpp row is timed at batch 1 only"]
    kept, said = _skips(["ours", "llamacpp"], batch=1, gguf=None)
    assert kept == ["ours"] and "no GGUF file" in said[0]


def test_without_llamacpp_the_row_is_skipped_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "llamacpp_available", lambda: False)
    kept, said = _skips(["plain", "ours", "llamacpp"], batch=1, gguf="x.gguf")
    assert kept == ["plain", "ours"]
    assert said == [f"llama.cpp is not installed ({llamacpp.INSTALL_HINT}): no llama.cpp row"]


def test_inputs_are_checked_before_a_server_starts(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        llamacpp.LlamaCppDecode(gguf, [1, 2, 3], 8, 2)
    gguf.write_bytes(b"GGUF")
    for ids, tokens, threads in (([], 8, 2), ([1], 0, 2), ([1], 8, 0)):
        with pytest.raises(ValueError, match=r"llama\.cpp needs"):
            llamacpp.LlamaCppDecode(gguf, ids, tokens, threads)
    decode = llamacpp.LlamaCppDecode(gguf, [1, 2, 3], 8, 2)
    assert decode.request == {
        "prompt": [1, 2, 3],
        "max_tokens": 8,
        "temperature": 0,
        "ignore_eos": True,
        "cache_prompt": False,
    }


def test_the_summary_gives_steered_over_llamacpp_tokens_per_second() -> None:
    produced = {"plain": 8, "ours": 8, "llamacpp": 8}
    summary = speed._summarise({"plain": [2.0], "ours": [2.5], "llamacpp": [1.0]}, produced)
    assert summary["steered_over_llamacpp_tokens_per_s"] == pytest.approx((8 / 2.5) / (8 / 1.0))
    assert "steered_over_llamacpp_tokens_per_s = 0.400" in speed.format_table(
        {**summary, "batch": 1, "new_tokens": 8, "dtype": "bfloat16"}
    )
