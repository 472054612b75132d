"""A steering map a person can read: one self-contained HTML page per solve (no network, no scripts).

The page shows the question with its anchored text highlighted, then each step under its own label with ω,
confidence, the tokens steering changed and the anchors active for it; every generated token is shaded by how much
steering moved the next-token distribution (KL(steered ‖ original)), tokens whose choice steering flipped are
underlined, and hovering a token shows its numbers and the original branch's choice.

Make the trace with ``SelfAnchorChain(..., trace_tokens=True)`` (or ``selfanchor solve --html FILE``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_disagreement_html", "render_steering_html", "step_tokens"]

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.6em; }
.question { background: #f6f6f6; padding: .8em 1em; border-radius: 6px; white-space: pre-wrap; }
mark.anchor { background: #ffe38a; padding: 0 .1em; }
.step { border-left: 4px solid #ccc; padding: .3em .9em; margin: .8em 0; }
.step.plan { border-color: #4a90d9; } .step.reasoning { border-color: #50a060; } .step.final { border-color: #a050b0; }
.meta { font-size: .85em; color: #555; } .anchors { font-size: .8em; color: #777; }
.text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .92em; }
.tok.flip { text-decoration: underline 2px #c00; }
.legend span { padding: 0 .4em; margin-right: .3em; }
table { border-collapse: collapse; font-size: .9em; } td, th { padding: .15em .7em; text-align: left; }
"""


def step_tokens(output: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], list[Mapping[str, Any]]]]:
    """Pair each step of a traced output with its generated tokens (in order; steps count their tokens)."""
    tokens = list(output.get("tokens") or [])
    steps = list(output.get("steps") or [])
    pairs, cursor = [], 0
    for k, step in enumerate(steps):
        n = len(tokens) - cursor if k == len(steps) - 1 else int(step.get("tokens") or 0)
        pairs.append((step, tokens[cursor : cursor + n]))
        cursor += n
    return pairs


def _shade(kl: float, scale: float) -> str:
    alpha = 0.0 if scale <= 0 else min(1.0, kl / scale)
    return f"background: rgba(230, 80, 40, {0.75 * alpha:.3f})"


def _token_html(token: Mapping[str, Any], scale: float) -> str:
    text = str(token.get("text") or "")
    kl = float(token.get("kl") or 0.0)
    tip = f"KL {kl:.4f} nats, ω {float(token.get('omega') or 1.0):.2f}, p {float(token.get('confidence') or 0):.2f}"
    classes = "tok"
    if token.get("flipped"):
        classes += " flip"
        tip += f"; steering changed it: the original choice was {token.get('original')!r}"
    return f'<span class="{classes}" style="{_shade(kl, scale)}" title="{html.escape(tip)}">{html.escape(text)}</span>'


def _highlight(text: str, anchors: Sequence[str]) -> str:
    """``text`` escaped, with each anchored substring marked (longest first, no overlaps)."""
    spans: list[tuple[int, int]] = []
    for anchor in sorted({a for a in anchors if a}, key=len, reverse=True):
        start = text.find(anchor)
        while start >= 0:
            end = start + len(anchor)
            if all(end <= a or start >= b for a, b in spans):
                spans.append((start, end))
            start = text.find(anchor, end)
    out, cursor = [], 0
    for start, end in sorted(spans):
        out += [html.escape(text[cursor:start]), f'<mark class="anchor">{html.escape(text[start:end])}</mark>']
        cursor = end
    out.append(html.escape(text[cursor:]))
    return "".join(out)


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_steering_html(
    question: str, output: Mapping[str, Any], *, title: str = "Self-Anchor steering map", method: str = ""
) -> str:
    """The steering map of one solve as a self-contained HTML page.

    Args:
        question: The question as asked.
        output: A reasoning chain's output made with ``trace_tokens=True``.
        title: Page title.
        method: Method name for the header.

    Raises:
        ValueError: ``output`` has no token trace.
    """
    if not output.get("tokens"):
        raise ValueError("the output has no token trace: build the chain with trace_tokens=True")
    tokens = list(output["tokens"])
    kls = sorted(float(t.get("kl") or 0.0) for t in tokens)
    scale = kls[int(0.98 * (len(kls) - 1))] or kls[-1]  # the 98th percentile is full colour; outliers saturate
    steps = list(output.get("steps") or [])
    anchored = [a for s in steps for a in s.get("anchors") or []]
    flipped = sum(bool(t.get("flipped")) for t in tokens)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}{' — ' + html.escape(method) if method else ''}</h1>",
        '<h2>Question</h2><div class="question">' + _highlight(question, anchored) + "</div>",
        f"<p class=meta>Answer: <b>{html.escape(str(output.get('answer')))}</b> · {len(tokens)} tokens · "
        f"steering changed {flipped} · finish: {html.escape(str(output.get('finish_reason')))}</p>",
        '<p class="legend meta">Shading: KL(steered ‖ original) of each token\'s next-token distribution '
        f'(full colour ≥ {scale:.3f} nats) <span style="{_shade(scale, scale)}">strong</span>'
        f'<span style="{_shade(scale / 4, scale)}">weak</span>; '
        '<span class="tok flip">underlined</span>: steering changed the chosen token (hover for details).</p>',
        "<h2>Steps</h2>",
    ]
    for step, its_tokens in step_tokens(output):
        kind = html.escape(str(step.get("kind")))
        anchors = "; ".join(html.escape(_short(a)) for a in step.get("anchors") or []) or "none"
        parts += [
            f'<div class="step {kind}"><div class="meta"><b>{kind} {step.get("index")}</b> · '
            f"ω {float(step.get('omega') or 1):.2f} · confidence {float(step.get('confidence') or 0):.2f} · "
            f"{step.get('tokens')} tokens · changed {step.get('changed', 0)} · "
            f"mean KL {float(step.get('kl') or 0):.4f}</div>",
            f'<div class="anchors">anchors: {anchors}</div>',
            '<div class="text">' + "".join(_token_html(t, scale) for t in its_tokens) + "</div></div>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def _step_table(steps: Sequence[Mapping[str, Any]]) -> str:
    """The steps of a logged solve: kind, ω, confidence, tokens, tokens steering changed, mean KL (shaded)."""
    kls = [float(s.get("kl") or 0.0) for s in steps]
    scale = max(kls, default=0.0)
    rows = ["<table><tr><th>step</th><th>ω</th><th>confidence</th><th>tokens</th><th>changed</th><th>mean KL</th></tr>"]
    for k, step in enumerate(steps):
        kl = float(step.get("kl") or 0.0)
        rows.append(
            f"<tr><td>{k + 1}. {html.escape(str(step.get('kind')))}</td>"
            f"<td>{float(step.get('omega') or 1):.2f}</td><td>{float(step.get('confidence') or 0):.2f}</td>"
            f"<td>{step.get('tokens')}</td><td>{step.get('changed', 0)}</td>"
            f'<td style="{_shade(kl, scale)}">{kl:.4f}</td></tr>'
        )
    return "".join(rows) + "</table>"


def _record_text(record: Mapping[str, Any]) -> str:
    """A logged solve's text: token by token, shaded by the steering's KL, when the run kept the trace."""
    trace = record.get("trace")
    if not trace:
        return html.escape(str(record.get("text") or ""))
    kls = sorted(float(t.get("kl") or 0.0) for t in trace)
    scale = kls[int(0.98 * (len(kls) - 1))] or kls[-1]
    return "".join(_token_html(t, scale) for t in trace)


def render_disagreement_html(item_id: str, records: Mapping[str, Mapping[str, Any]], question: str | None) -> str:
    """One evaluation item that the methods got differently right, side by side, from the per-item logs.

    Each method shows its answer against the gold one, its steps with ω, confidence, the tokens steering changed
    and the mean KL, and its output: token by token shaded by KL, with the tokens whose choice steering changed
    underlined (hover: the original choice), when the evaluation kept the trace (``selfanchor eval
    --trace-tokens``); as plain text otherwise.

    Args:
        item_id: The item's id.
        records: Method name → its results-file record of the item.
        question: The question text, when the benchmark data is at hand.
    """
    title = f"Where the methods disagree: {item_id}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if question:
        parts.append('<h2>Question</h2><div class="question">' + html.escape(question) + "</div>")
    for method, record in records.items():
        verdict = "right" if record.get("correct") else "wrong"
        parts += [
            f"<h2>{html.escape(method)}: {verdict}</h2>",
            f"<p class=meta>Answer <b>{html.escape(str(record.get('prediction')))}</b> · gold "
            f"{html.escape(str(record.get('gold')))} · {record.get('tokens')} tokens · finish "
            f"{html.escape(str(record.get('finish_reason')))}</p>",
            _step_table(record.get("steps") or []),
            f'<div class="step"><div class="text">{_record_text(record)}</div></div>',
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
