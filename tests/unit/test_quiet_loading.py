"""Third-party loading noise (torchao, torch pytree, transformers' progress bars) is hidden while a model loads,
and shown with SELFANCHOR_DEBUG / ``selfanchor --debug`` (issue #36, item 5)."""

from __future__ import annotations

import logging

import pytest

from selfanchor_chains.models.noise import DEBUG_ENV, quiet_loading


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="unrelated")
    return caplog


def _log_all() -> None:
    logging.getLogger("torchao").warning("Failed to load _C_mxfp8.so")
    logging.getLogger("torchao.kernel.intmm").warning("Detected no triton")
    logging.getLogger("torch.utils._pytree").warning("<enum 'KernelPreference'> is an Enum subclass")
    logging.getLogger("torchao").error("a real torchao error")
    logging.getLogger("unrelated").warning("someone else's warning")


def test_loading_hides_only_the_known_noisy_loggers_and_restores_them(records, monkeypatch) -> None:
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    levels = {name: logging.getLogger(name).level for name in ("torchao", "torch.utils._pytree")}
    bars = hf_logging.is_progress_bar_enabled()
    with quiet_loading():
        assert not hf_logging.is_progress_bar_enabled()
        _log_all()
    messages = [r.getMessage() for r in records.records]
    assert messages == ["a real torchao error", "someone else's warning"]  # errors and other libraries still show
    assert {name: logging.getLogger(name).level for name in levels} == levels
    assert hf_logging.is_progress_bar_enabled() == bars


def test_debug_shows_everything(records, monkeypatch) -> None:
    monkeypatch.setenv(DEBUG_ENV, "1")
    with quiet_loading():
        _log_all()
    assert len(records.records) == 5


def test_the_cli_debug_flag_sets_the_switch(monkeypatch, capsys) -> None:
    import os

    from selfanchor_chains.cli import main

    monkeypatch.delenv(DEBUG_ENV, raising=False)  # restored (unset) after the test
    assert main(["models"]) == 0 and DEBUG_ENV not in os.environ
    assert main(["--debug", "models"]) == 0 and os.environ.get(DEBUG_ENV) == "1"
