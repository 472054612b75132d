"""The steering map (HTML) of a traced solve, on a tiny random model: every token shown with its numbers, flips
marked, self-contained; opened in headless Chromium where it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"


@pytest.fixture(scope="module")
def traced(prompt_sensitive_model: Any, byte_tokenizer: Any) -> dict[str, Any]:
    from selfanchor_chains.langchain.llm import SteeredHFLLM
    from selfanchor_chains.reasoning.chains import SelfAnchorChain
    from selfanchor_chains.reasoning.schedules import ConstantOmega

    llm = SteeredHFLLM(model=prompt_sensitive_model, tokenizer=byte_tokenizer, model_id="tiny")
    chain = SelfAnchorChain(llm=llm, schedule=ConstantOmega(4.0), max_new_tokens=24, trace_tokens=True)
    return chain.invoke(QUESTION)


class _Tokens(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[dict[str, str]] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if "tok" in found.get("class", "").split() and "title" in found:  # the legend's sample has no title
            self.tokens.append(found)
        self.sources += [v for k, v in found.items() if k in ("src", "href")]


def test_trace_has_one_entry_per_generated_token(traced: dict[str, Any]) -> None:
    tokens = traced["tokens"]
    assert len(tokens) == traced["usage"]["completion_tokens"]
    assert traced["text"] == "Plan 1:" + "".join(t["text"] for t in tokens)
    assert any(t["kl"] > 0 for t in tokens) and any(t["flipped"] for t in tokens)
    assert all(t["original"] for t in tokens if t["flipped"])


def test_page_shows_every_token_marks_flips_and_is_self_contained(traced: dict[str, Any], tmp_path: Path) -> None:
    from selfanchor_chains.eval.steering_view import render_steering_html, step_tokens

    page = render_steering_html(QUESTION, traced, method="self-anchor")
    parser = _Tokens()
    parser.feed(page)
    assert len(parser.tokens) == len(traced["tokens"])
    flips = [t for t in parser.tokens if "flip" in t["class"].split()]
    assert len(flips) == sum(t["flipped"] for t in traced["tokens"]) > 0
    assert all("original choice" in t["title"] for t in flips)
    assert parser.sources == [] and "http" not in page and len(page.encode()) < 1_000_000
    assert '<mark class="anchor">' in page  # the anchored question is highlighted
    assert sum(len(t) for _, t in step_tokens(traced)) == len(traced["tokens"])
    with pytest.raises(ValueError, match="trace_tokens"):
        render_steering_html(QUESTION, {**traced, "tokens": None})


def _why_no_chromium() -> str:
    """Why Chromium is missing: `make test` installs it (scripts/ensure_chromium.sh) as root where apt-get is."""
    if os.getuid() != 0:
        return f"headless Chromium is not installed and `make test` runs as uid {os.getuid()}, not root"
    if shutil.which("apt-get") is None:
        return "headless Chromium is not installed and there is no apt-get to install it"
    return "headless Chromium is not installed: run `make test` (or scripts/ensure_chromium.sh) to install it"


@pytest.mark.skipif(shutil.which("chromium") is None, reason=_why_no_chromium())
def test_page_opens_in_headless_chromium_without_console_errors(traced: dict[str, Any], tmp_path: Path) -> None:
    from selfanchor_chains.eval.steering_view import render_steering_html

    page = tmp_path / "map.html"
    page.write_text(render_steering_html(QUESTION, traced), encoding="utf-8")
    shot = tmp_path / "map.png"
    run = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 1000, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
