"""``selfanchor bench speed --variants``: variants of one model timed side by side (no timing asserts)."""

from __future__ import annotations

import copy
from typing import Any

from selfanchor_chains.bench.speed import format_variants_table, run_speed_variants


def test_variants_are_interleaved_round_by_round(tiny_model: Any, byte_tokenizer: Any) -> None:
    lines: list[str] = []
    variants = {"float32": tiny_model, "copy": copy.deepcopy(tiny_model)}
    result = run_speed_variants(
        variants, byte_tokenizer, new_tokens=3, batch=2, repeats=2, methods=("plain", "ours"), log=lines.append
    )
    order = [line.split(":")[0] for line in lines]
    assert order == [
        f"round {r}/2 {label} {method:>5}" for r in (1, 2) for label in variants for method in ("plain", "ours")
    ]
    assert set(result["variants"]) == set(variants) and result["methods"] == ["plain", "ours"]
    for row in result["variants"].values():
        assert row["tokens_produced"] == {"plain": 6, "ours": 6}  # 3 tokens x 2 rows, EOS suppressed
        assert len(row["times_s"]["ours"]) == 2
        assert row["steered_over_plain"] == row["median_s"]["ours"] / row["median_s"]["plain"]
        assert row["tokens_per_s"]["ours"] == 6 / row["median_s"]["ours"]
    table = format_variants_table(result)
    assert "ours/plain" in table and "float32" in table and "copy" in table
