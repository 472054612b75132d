"""gguf_parsed_once: one reader per file while a load runs, gguf's own functions back afterwards (also after an
error, and after a nested use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from selfanchor_chains.models.gguf_parse import gguf_parsed_once  # noqa: E402


def _write_gguf(path: Path, name: str) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return _write_gguf(tmp_path / "a.gguf", "a"), _write_gguf(tmp_path / "b.gguf", "b")


def test_one_reader_per_file_inside_and_fresh_ones_outside(files: tuple[Path, Path]) -> None:
    a, b = files
    original = gguf.GGUFReader
    with gguf_parsed_once():
        first = gguf.GGUFReader(a)
        assert gguf.GGUFReader(str(a)) is first  # the same path, as Path or str: the same parsed reader
        other = gguf.GGUFReader(b)
        assert other is not first
        assert first.fields["general.name"].contents() == "a" and other.fields["general.name"].contents() == "b"
        np.testing.assert_array_equal(np.asarray(first.tensors[0].data).reshape(3, 4), np.arange(12).reshape(3, 4))
    assert gguf.GGUFReader is original
    assert gguf.GGUFReader(a) is not gguf.GGUFReader(a)


def test_the_tensor_name_map_is_built_once_inside(files: tuple[Path, Path]) -> None:
    arch = gguf.MODEL_ARCH.LLAMA
    original = gguf.get_tensor_name_map
    with gguf_parsed_once():
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
        assert gguf.get_tensor_name_map(arch, 2).get_name("model.embed_tokens") == "token_embd"
    assert gguf.get_tensor_name_map is original
    assert gguf.get_tensor_name_map(arch, 2) is not gguf.get_tensor_name_map(arch, 2)


def test_restored_after_an_error_and_after_nesting(files: tuple[Path, Path]) -> None:
    a, _ = files
    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with pytest.raises(RuntimeError, match="boom"), gguf_parsed_once():
        raise RuntimeError("boom")
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (original_reader, original_map)
    with gguf_parsed_once():
        outer = gguf.GGUFReader(a)
        with gguf_parsed_once():  # a load inside a load shares the outer one's readers
            assert gguf.GGUFReader(a) is outer
        assert gguf.GGUFReader(a) is outer  # the inner exit left the outer stand-ins in place
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (original_reader, original_map)
