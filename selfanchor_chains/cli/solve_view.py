"""The terminal view of ``selfanchor solve``: each step under its own label with what steering did.

Live (a terminal; the ``rich`` library): finished steps stay on screen, each with ω, confidence, the tokens
steering changed and the anchors it was steered towards; the step being decoded grows below them; a footer keeps
the totals (tokens, seconds, tokens/s). Plain (not a terminal, or ``--plain``): each step is printed once it is
complete, its numbers on the line after it, so they can never be read as the next step's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["SolveView", "show_comparison", "step_summary"]


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def step_summary(step: Mapping[str, Any]) -> str:
    """One line of numbers for a finished step: ω, confidence, tokens, tokens changed, anchors (shortened)."""
    anchors = "; ".join(_short(a, 40) for a in step.get("anchors") or []) or "none"
    return (
        f"ω={float(step.get('omega') or 1.0):.2f}  confidence={float(step.get('confidence') or 0.0):.2f}  "
        f"{step.get('tokens', 0)} tokens  changed={step.get('changed', 0)}  anchors: {anchors}"
    )


class SolveView:
    """Shows one solve from a reasoning chain's ``stream()`` chunks.

    Args:
        method: Method name, for the header.
        plain: Print finished steps as plain text instead of a live view.
        out: Where to write (default: standard output).
    """

    def __init__(self, method: str, *, plain: bool | None = None, out: TextIO | None = None) -> None:
        self.method = method
        self.out = out or sys.stdout
        self.plain = plain if plain is not None else not self.out.isatty()
        self.steps: list[Mapping[str, Any]] = []
        self.current = ""
        self.tokens = 0
        self.started = time.perf_counter()
        self.output: dict[str, Any] = {}

    # -- consuming chunks --------------------------------------------------------------------------------------

    def run(self, chunks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Consume the chunks, showing them; returns the chain's output."""
        if self.plain:
            for chunk in chunks:
                self._take(chunk, on_step=self._print_step)
        else:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out)
            with Live(self.render(), console=console, refresh_per_second=8, transient=False) as live:
                for chunk in chunks:
                    self._take(chunk)
                    live.update(self.render())
        if self.plain:
            self._print_totals()
        return self.output

    def _take(self, chunk: Mapping[str, Any], on_step: Any = None) -> None:
        if "token" in chunk:
            self.current += chunk["token"]
            self.tokens += 1
        elif "step" in chunk:
            self.steps.append(chunk["step"])
            # The step's text is complete; what was decoded after its end belongs to the next step.
            tail = str(chunk["step"].get("text") or "").strip()[-12:]
            at = self.current.rfind(tail) if tail else -1
            self.current = self.current[at + len(tail) :] if at >= 0 else ""
            if on_step is not None:
                on_step(chunk["step"])
        elif "output" in chunk:
            self.output = dict(chunk["output"])
            self.current = ""

    # -- plain ---------------------------------------------------------------------------------------------------

    def _print_step(self, step: Mapping[str, Any]) -> None:
        print(step.get("text", ""), file=self.out)
        print(f"    [{step_summary(step)}]", file=self.out, flush=True)

    def _print_totals(self) -> None:
        print(f"Answer: {self.output.get('answer')}", file=self.out)
        print(f"[{self.method}: {self._totals()}]", file=self.out, flush=True)

    def _totals(self) -> str:
        seconds = time.perf_counter() - self.started
        tokens = (self.output.get("usage") or {}).get("completion_tokens", self.tokens)
        rate = tokens / seconds if seconds > 0 else 0.0
        finish = f", finish={self.output.get('finish_reason')}" if self.output else ""
        return f"{tokens} tokens in {seconds:.1f} s ({rate:.1f} tok/s){finish}"

    # -- live ----------------------------------------------------------------------------------------------------

    def render(self) -> Any:
        """The live view as a rich renderable."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        colours = {"plan": "blue", "reasoning": "green", "final": "magenta"}
        parts: list[Any] = []
        for step in self.steps:
            colour = colours.get(str(step.get("kind")), "white")
            body = Text(str(step.get("text") or ""), style=colour)
            body.append("\n" + step_summary(step), style="dim")
            parts.append(body)
        if self.current.strip():
            parts.append(Text(self.current.strip(), style="bold"))
        if self.output:
            parts.append(Text(f"Answer: {self.output.get('answer')}", style="bold yellow"))
        footer = Text(self._totals(), style="dim")
        return Panel(Group(*parts, footer), title=f"selfanchor solve — {self.method}", border_style="cyan")


def show_comparison(
    solved: Sequence[tuple[str, Mapping[str, Any], float]], *, plain: bool, out: TextIO | None = None
) -> None:
    """Several methods' solves of one question side by side: each one's reasoning, answer, tokens and time.

    Args:
        solved: ``(method, output, seconds)`` per method.
        plain: Plain text (one block per method, then a summary table) instead of rich columns.
        out: Where to write (default: standard output).
    """
    out = out or sys.stdout

    def tokens(output: Mapping[str, Any]) -> int:
        return int((output.get("usage") or {}).get("completion_tokens", 0))

    if plain:
        for method, output, _ in solved:
            print(f"===== {method} =====", file=out)
            print(str(output.get("text") or "").strip(), file=out)
        print("method               answer        tokens  seconds", file=out)
        for method, output, seconds in solved:
            print(f"{method:20s} {output.get('answer')!s:12s} {tokens(output):7d} {seconds:8.1f}", file=out)
        return
    from rich.columns import Columns
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.text import Text

    panels = [
        Panel(
            Group(
                Text(str(output.get("text") or "").strip()),
                Text(f"\nAnswer: {output.get('answer')}", style="bold yellow"),
                Text(f"{tokens(output)} tokens, {seconds:.1f} s", style="dim"),
            ),
            title=method,
            border_style="cyan",
        )
        for method, output, seconds in solved
    ]
    Console(file=out).print(Columns(panels, equal=True, expand=True))
