"""Speed benchmark: our steered decoding vs plain ``generate``, SPA's ``anchoring`` package and transformers' CFG.

Every method decodes exactly the same number of tokens (EOS suppressed) from the same chat prompts with one
anchored span (the question), greedily. Methods run interleaved, round after round, and medians are compared, so
that drift of a noisy machine hits every method alike. Ratios, not absolute times, are the result.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .llamacpp import INSTALL_HINT as LLAMACPP_HINT
from .llamacpp import LlamaCppDecode, llamacpp_available

QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. Her parents "
    "decided to give her $15 for that purpose, and her grandparents twice as much as her parents. How much more money "
    "does Betty need to buy the wallet?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
    "Tina makes $18.00 an hour. If she works more than 8 hours per shift, she is eligible for overtime, which is paid "
    "by your hourly wage + 1/2 your hourly wage. If she works 10 hours every day for 5 days, how much money does she "
    "make?",
    "Albert is wondering how much pizza he can eat in one day. He buys 2 large pizzas and 2 small pizzas. A large "
    "pizza has 16 slices and a small pizza has 8 slices. If he eats it all, how many pieces does he eat that day?",
    "Ken created a care package to send to his brother. He placed a box on a scale, and then he poured into the box "
    "enough jelly beans to bring the weight to 2 pounds. How much did the box weigh?",
]


@dataclass
class Prompt:
    """A tokenised chat prompt with its anchored question span."""

    ids: list[int]
    anchor: tuple[int, int]
    question: str
    messages: list[dict[str, str]] = field(default_factory=list)


def build_prompts(tokenizer: Any, batch: int) -> list[Prompt]:
    """Chat prompts (one per row, cycling through ``QUESTIONS``) with the question's token span."""
    from ..prompting.chat import render_chat_with_anchors
    from ..prompting.markup import anchor
    from ..prompting.spans import tokenize_with_anchors

    prompts = []
    for i in range(batch):
        question = QUESTIONS[i % len(QUESTIONS)]
        messages = [{"role": "user", "content": f"{anchor(question)}\nLet's think step by step."}]
        text, char_spans = render_chat_with_anchors(tokenizer, messages)
        ids, token_spans = tokenize_with_anchors(tokenizer, text, char_spans)
        clean = [{"role": "user", "content": f"{question}\nLet's think step by step."}]
        prompts.append(Prompt(ids=ids, anchor=token_spans[0], question=question, messages=clean))
    return prompts


def _left_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        ids[k, width - len(r) :] = torch.tensor(r)
        mask[k, width - len(r) :] = 1
    return ids, mask


class SpeedBench:
    """Runs each method once per call and returns wall seconds; all produce ``new_tokens`` tokens per row."""

    def __init__(self, model: Any, tokenizer: Any, prompts: list[Prompt], new_tokens: int, omega: float) -> None:
        from ..engine.decoder import SteeredDecoder

        self.model, self.tokenizer, self.prompts = model, tokenizer, prompts
        self.new_tokens, self.omega = new_tokens, omega
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # EOS suppressed: equal token counts. No prefix cache: the other methods recompute every prompt in full.
        self.decoder = SteeredDecoder(model, tokenizer, eos_token_ids=[], prefix_cache_tokens=0)
        self.produced: dict[str, int] = {}
        self.llamacpp_decode: Callable[[], tuple[float, int]] | None = None  # set by run_speed_bench with a GGUF

    def _generate_kwargs(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.new_tokens,
            "min_new_tokens": self.new_tokens,
            "do_sample": False,
            "pad_token_id": self.pad_id,
        }

    def warm_up(self, tokens: int = 8) -> None:
        """A short untimed decode with ``ours`` and ``plain``: first-call allocations and kernel selection would
        otherwise bias whichever method runs first."""
        from ..engine.requests import RowRequest

        rows = [RowRequest(p.ids, [p.anchor], self.omega) for p in self.prompts]
        self.decoder.generate(rows, max_new_tokens=tokens)
        ids, mask = _left_pad([p.ids for p in self.prompts], self.pad_id)
        self.model.generate(
            ids, attention_mask=mask, **{**self._generate_kwargs(), "max_new_tokens": tokens, "min_new_tokens": tokens}
        )

    def plain(self) -> float:
        ids, mask = _left_pad([p.ids for p in self.prompts], self.pad_id)
        start = time.perf_counter()
        out = self.model.generate(ids, attention_mask=mask, **self._generate_kwargs())
        elapsed = time.perf_counter() - start
        self.produced["plain"] = (out.shape[1] - ids.shape[1]) * len(self.prompts)
        return elapsed

    def ours(self) -> float:
        from ..engine.requests import RowRequest

        rows = [RowRequest(p.ids, [p.anchor], self.omega) for p in self.prompts]
        start = time.perf_counter()
        results = self.decoder.generate(rows, max_new_tokens=self.new_tokens)
        elapsed = time.perf_counter() - start
        self.produced["ours"] = sum(len(r.token_ids) for r in results)
        return elapsed

    def llamacpp(self) -> float:
        """llama.cpp's plain decoding of the same GGUF and prompt ids (batch 1; see :mod:`.llamacpp`)."""
        assert self.llamacpp_decode is not None
        elapsed, self.produced["llamacpp"] = self.llamacpp_decode()
        return elapsed

    def cfg(self) -> float:
        ids, mask = _left_pad([p.ids for p in self.prompts], self.pad_id)
        negative_mask = mask.clone()
        width = ids.shape[1]
        for k, p in enumerate(self.prompts):
            offset = width - len(p.ids)
            negative_mask[k, offset + p.anchor[0] : offset + p.anchor[1]] = 0
        start = time.perf_counter()
        out = self.model.generate(
            ids,
            attention_mask=mask,
            guidance_scale=self.omega,
            negative_prompt_ids=ids,
            negative_prompt_attention_mask=negative_mask,
            **self._generate_kwargs(),
        )
        elapsed = time.perf_counter() - start
        self.produced["cfg"] = (out.shape[1] - ids.shape[1]) * len(self.prompts)
        return elapsed

    def spa(self) -> float:
        """SPA as its README shows it: ``spa_tokenize``, ``SPALogitsProcessor``, ``generate``; one prompt at a time."""
        import anchoring
        from transformers import LogitsProcessorList

        produced = 0
        start = time.perf_counter()
        for p in self.prompts:
            messages = [{"role": "user", "content": p.messages[0]["content"]}]
            main_ids, aux_ids, mask_token = anchoring.spa_tokenize(messages, [p.question], self.tokenizer, "cpu")
            processor = anchoring.SPALogitsProcessor(
                aux_model=self.model,
                aux_input_ids=aux_ids,
                mask_token=mask_token,
                strength=self.omega,
                modulated_by_prob=False,  # the plain ω combination, as ours
                tokenizer=self.tokenizer,
            )
            out = self.model.generate(
                main_ids,
                attention_mask=main_ids.new_ones(main_ids.shape),
                logits_processor=LogitsProcessorList([processor]),
                **self._generate_kwargs(),
            )
            produced += out.shape[1] - main_ids.shape[1]
        elapsed = time.perf_counter() - start
        self.produced["spa"] = produced
        return elapsed


def spa_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("anchoring") is not None


def run_speed_bench(
    model: Any,
    tokenizer: Any,
    *,
    new_tokens: int,
    batch: int,
    omega: float = 1.5,
    repeats: int = 3,
    methods: Sequence[str] = ("plain", "ours", "spa", "cfg", "llamacpp"),
    log: Callable[[str], None] = print,
    gguf: str | Path | None = None,
) -> dict[str, Any]:
    """Time the methods interleaved ``repeats`` times and return medians and ratios.

    ``llamacpp`` (llama.cpp decoding ``gguf``, the file the model was converted from) runs where llama.cpp is
    installed, at batch 1, with a ``gguf``; elsewhere it is skipped with a line saying why.

    Returns:
        A dict with ``median_s`` per method, the raw times, tokens produced, and the ratios
        ``steered_over_plain``, ``spa_over_ours``, ``cfg_over_ours`` and ``steered_over_llamacpp_tokens_per_s``
        (where both methods ran).
    """
    methods = _available_methods(methods, log, batch=batch, gguf=gguf)
    bench = SpeedBench(model, tokenizer, build_prompts(tokenizer, batch), new_tokens, omega)
    if "llamacpp" in methods and gguf is not None:
        bench.llamacpp_decode = LlamaCppDecode(gguf, bench.prompts[0].ids, new_tokens, torch_threads())
    times = _time_interleaved({"": bench}, methods, repeats, log)[""]
    result: dict[str, Any] = {
        "batch": batch,
        "new_tokens": new_tokens,
        "omega": omega,
        "repeats": repeats,
        **_summarise(times, bench.produced),
        "dtype": str(next(model.parameters()).dtype),
    }
    return result


def _available_methods(
    methods: Sequence[str], log: Callable[[str], None], *, batch: int = 1, gguf: str | Path | None = None
) -> list[str]:
    """``methods`` less those that cannot run here, each skipped with a line saying why."""
    skipped: dict[str, str] = {}
    if "spa" in methods and not spa_available():
        skipped["spa"] = "anchoring is not installed (pip install anchoring==0.1.0): skipping SPA"
    if "llamacpp" in methods:
        if not llamacpp_available():
            skipped["llamacpp"] = f"llama.cpp is not installed ({LLAMACPP_HINT}): no llama.cpp row"
        elif gguf is None:
            skipped["llamacpp"] = "no GGUF file for this model (registry models have one): no llama.cpp row"
        elif batch != 1:
            skipped["llamacpp"] = "the llama.cpp row is timed at batch 1 only"
    for reason in skipped.values():
        log(reason)
    return [m for m in methods if m not in skipped]


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _time_interleaved(
    benches: dict[str, SpeedBench], methods: Sequence[str], repeats: int, log: Callable[[str], None]
) -> dict[str, dict[str, list[float]]]:
    """Seconds per run, ``{variant: {method: [...]}}``: every round runs every variant's every method once."""
    for bench in benches.values():
        bench.warm_up()
    times: dict[str, dict[str, list[float]]] = {label: {m: [] for m in methods} for label in benches}
    for round_ in range(repeats):
        for label, bench in benches.items():
            for method in methods:
                seconds = getattr(bench, method)()
                times[label][method].append(seconds)
                log(f"round {round_ + 1}/{repeats} {label + ' ' if label else ''}{method:>5}: {seconds:8.2f} s")
    return times


def _summarise(times: dict[str, list[float]], produced: dict[str, int]) -> dict[str, Any]:
    medians = {m: statistics.median(t) for m, t in times.items()}
    result: dict[str, Any] = {
        "median_s": medians,
        "times_s": times,
        "tokens_produced": dict(produced),
        "tokens_per_s": {m: produced.get(m, 0) / medians[m] for m in medians},
    }
    if "ours" in medians and "plain" in medians:
        result["steered_over_plain"] = medians["ours"] / medians["plain"]
    if "ours" in medians and "spa" in medians:
        result["spa_over_ours"] = medians["spa"] / medians["ours"]
    if "ours" in medians and "cfg" in medians:
        result["cfg_over_ours"] = medians["cfg"] / medians["ours"]
    if "ours" in medians and "llamacpp" in medians:
        rates = result["tokens_per_s"]
        result["steered_over_llamacpp_tokens_per_s"] = rates["ours"] / rates["llamacpp"] if rates["llamacpp"] else None
    return result


def run_speed_variants(
    variants: dict[str, Any],
    tokenizer: Any,
    *,
    new_tokens: int,
    batch: int,
    omega: float = 1.5,
    repeats: int = 3,
    methods: Sequence[str] = ("plain", "ours"),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """:func:`run_speed_bench` over several loaded variants of one model (dtypes, quantizations), side by side.

    Every round runs every method of every variant once, so a noisy machine's drift hits them all alike.

    Args:
        variants: ``{label: model}``, e.g. ``{"bfloat16": ..., "int8": ...}``; all share ``tokenizer``.
        tokenizer: The model's tokenizer.
        new_tokens: Tokens each row decodes (EOS suppressed).
        batch: Rows decoded together.
        omega: Steering strength of ``ours``.
        repeats: Rounds.
        methods: Methods of :class:`SpeedBench` to time.
        log: Progress lines.

    Returns:
        ``{"batch", "new_tokens", "omega", "repeats", "methods", "variants": {label: {"median_s", "times_s",
        "tokens_produced", "tokens_per_s", "steered_over_plain", ...}}}``.
    """
    methods = _available_methods(methods, log)
    prompts = build_prompts(tokenizer, batch)
    benches = {label: SpeedBench(model, tokenizer, prompts, new_tokens, omega) for label, model in variants.items()}
    times = _time_interleaved(benches, methods, repeats, log)
    return {
        "batch": batch,
        "new_tokens": new_tokens,
        "omega": omega,
        "repeats": repeats,
        "methods": list(methods),
        "variants": {label: _summarise(times[label], benches[label].produced) for label in benches},
    }


def format_variants_table(result: dict[str, Any]) -> str:
    """The :func:`run_speed_variants` result as a text table: seconds, tokens/s and steered / plain per variant."""
    methods = result["methods"]
    lines = [f"batch={result['batch']} new_tokens={result['new_tokens']} repeats={result['repeats']}"]
    header = f"{'variant':>10}" + "".join(f" {m + ' s':>9} {m + ' tok/s':>11}" for m in methods)
    lines.append(header + f" {'ours/plain':>10}")
    for label, row in result["variants"].items():
        cells = "".join(f" {row['median_s'][m]:9.2f} {row['tokens_per_s'][m]:11.2f}" for m in methods)
        ratio = row.get("steered_over_plain")
        lines.append(f"{label:>10}{cells} {'' if ratio is None else f'{ratio:10.3f}'}")
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    lines = [f"batch={result['batch']} new_tokens={result['new_tokens']} dtype={result['dtype']}"]
    lines.append(f"{'method':>8} {'median s':>10} {'tokens':>8} {'tok/s':>8}")
    for method, seconds in result["median_s"].items():
        tokens = result["tokens_produced"].get(method, 0)
        lines.append(f"{method:>8} {seconds:10.2f} {tokens:8d} {tokens / seconds:8.1f}")
    for key in ("steered_over_plain", "spa_over_ours", "cfg_over_ours", "steered_over_llamacpp_tokens_per_s"):
        if result.get(key) is not None:
            lines.append(f"{key} = {result[key]:.3f}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(target)


def run_overhead_bench(
    model: Any,
    tokenizer: Any,
    *,
    new_tokens: int,
    repeats: int = 3,
    omega: float = 1.5,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time ``SteeredHFLLM.invoke`` against the bare engine on the same prompt and token count, interleaved."""
    from ..engine.requests import RowRequest
    from ..langchain.llm import SteeredHFLLM

    question = QUESTIONS[0]
    llm = SteeredHFLLM(model=model, tokenizer=tokenizer, omega=omega, max_new_tokens=new_tokens)
    llm.runtime.decoder.eos_token_ids = frozenset()  # equal token counts on both sides
    prompt = f"<anchor>{question}</anchor>\nLet's think step by step."
    prepared = llm.prepare(prompt)
    row = RowRequest(prepared.ids, prepared.token_spans, omega)
    decoder = llm.runtime.decoder

    def engine() -> float:
        start = time.perf_counter()
        decoder.generate([row], max_new_tokens=new_tokens)
        return time.perf_counter() - start

    def invoke() -> float:
        start = time.perf_counter()
        llm.invoke(prompt)
        return time.perf_counter() - start

    engine()  # warm-up
    times: dict[str, list[float]] = {"engine": [], "invoke": []}
    for round_ in range(repeats):
        for name, fn in (("engine", engine), ("invoke", invoke)):
            seconds = fn()
            times[name].append(seconds)
            log(f"round {round_ + 1}/{repeats} {name:>6}: {seconds:8.2f} s")
    medians = {m: statistics.median(t) for m, t in times.items()}
    return {
        "new_tokens": new_tokens,
        "repeats": repeats,
        "median_s": medians,
        "times_s": times,
        "invoke_over_engine": medians["invoke"] / medians["engine"],
        "dtype": str(next(model.parameters()).dtype),
    }


def run_solve_cost_bench(
    model: Any,
    tokenizer: Any,
    *,
    problems: int = 10,
    max_new_tokens: int = 512,
    data_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Self-Anchor solve time over a plain CoT ``model.generate`` producing the same number of tokens.

    For each GSM8K dev problem: one Self-Anchor solve (steered, step boundaries, re-syncs), then plain greedy
    ``generate`` on the CoT prompt forced to exactly as many new tokens. The ratio isolates what Self-Anchor's
    machinery costs per token, whatever length each method would choose.
    """
    from ..eval.datasets import load_problems
    from ..langchain.llm import SteeredHFLLM
    from ..reasoning.chains import CoTChain, SelfAnchorChain

    llm = SteeredHFLLM(model=model, tokenizer=tokenizer)
    llm.runtime.decoder.prefix_cache.max_tokens = 0  # like plain ``generate``, which recomputes every prompt in full
    chain = SelfAnchorChain(llm=llm, bench="gsm8k", max_new_tokens=max_new_tokens)
    # The same system message (worked example or none), so the ratio is the machinery's cost alone.
    cot = CoTChain(llm=llm, bench="gsm8k", max_new_tokens=max_new_tokens, worked_example=chain.worked_example)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for problem in load_problems("gsm8k", data_dir=data_dir, limit=problems):
        start = time.perf_counter()
        out = chain.invoke(problem.question)
        solve_s = time.perf_counter() - start
        n = out["usage"]["completion_tokens"]
        import torch

        ids = torch.tensor([cot.prompt_ids(problem.question)])
        start = time.perf_counter()
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=pad_id,
        )
        plain_s = time.perf_counter() - start
        row = {
            "id": problem.id,
            "tokens": n,
            "steps": len(out["steps"]),
            "self_anchor_s": solve_s,
            "plain_cot_s": plain_s,
            "ratio": solve_s / plain_s,
            "prompt_tokens": out["usage"]["prompt_tokens"],
            "prefill_tokens": out["usage"]["prefill_tokens"],
            "resync_tokens": out["usage"]["resync_tokens"],
            "finish_reason": out["finish_reason"],
        }
        rows.append(row)
        log(
            f"{problem.id}: {n} tokens, {row['steps']} steps, self-anchor {solve_s:.1f} s, plain {plain_s:.1f} s, "
            f"ratio {row['ratio']:.3f}, prefill {row['prefill_tokens']} + resync {row['resync_tokens']}"
        )
    return {
        "problems": rows,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "median_prefill_tokens": statistics.median(r["prefill_tokens"] for r in rows),
        "median_resync_tokens": statistics.median(r["resync_tokens"] for r in rows),
        "median_prompt_tokens": statistics.median(r["prompt_tokens"] for r in rows),
        "dtype": str(next(model.parameters()).dtype),
    }


def run_throughput_bench(
    llm: Any,
    *,
    bench: str = "gsm8k",
    methods: Sequence[str] = ("self-anchor", "cot"),
    problems: int = 16,
    batch: int = 8,
    max_new_tokens: int = 512,
    split: str = "dev",
    data_dir: str | None = None,
    modes: Sequence[str] = ("static",),
    log: Callable[[str], None] = print,
    worked_example: bool | None = None,
) -> dict[str, Any]:
    """Problems per minute of each method on the same problems, methods (and batching modes) interleaved.

    ``static`` is how ``selfanchor eval`` batches by default: one ``chain.batch`` per method and group of ``batch``
    problems, each group running until its longest solve ends. ``continuous`` streams all the problems through
    ``batch`` decoding slots (``selfanchor eval --continuous``): a finished solve's place goes to the next problem
    at the next decode step. Nothing is written, so the ratios are measured side by side. A warm-up solve of each
    method runs first (not timed), so that every method starts with its shared prompt prefix cached, as during an
    evaluation. ``worked_example`` as in :func:`~selfanchor_chains.eval.run_eval` (None: every method as
    ``SelfAnchorChain`` by default).

    Returns:
        Per run (``method`` for static, ``method@continuous`` for continuous): ``seconds``, ``tokens``,
        ``problems_per_min``, ``tokens_per_s``, the slowdown against the last method; with both modes also
        ``continuous_speedup`` (continuous over static problems per minute, per method) and ``answers_differ``
        (problems whose answer differs between the modes: bfloat16 batch-composition noise under greedy decoding).
    """
    from ..eval.datasets import load_problems
    from ..eval.method_specs import _make_chain

    unknown = set(modes) - {"static", "continuous"}
    if unknown or not modes:
        raise ValueError(f"modes are static and continuous, got {list(modes)}")
    items = list(load_problems(bench, data_dir=data_dir, split=split, limit=problems))
    questions = [p.question for p in items]
    chains = {m: _make_chain(llm, m, bench, max_new_tokens, worked_example) for m in methods}
    for m in methods:  # warm-up: a few tokens, enough to store the method's shared prompt prefix
        chains[m].model_copy(update={"max_new_tokens": 8}).invoke(items[0].question)
    runs = [(m, mode) for m in methods for mode in modes]
    seconds = {_run_key(m, mode): 0.0 for m, mode in runs}
    tokens = {_run_key(m, mode): 0 for m, mode in runs}
    answers: dict[str, list[Any]] = {_run_key(m, mode): [None] * len(items) for m, mode in runs}
    timing = {"seconds": seconds, "tokens": tokens, "answers": answers}
    if "static" in modes:
        _time_static(chains, questions, batch, timing, log)
    if "continuous" in modes:
        _time_continuous(chains, questions, batch, timing, log)
    per_min = {k: 60.0 * len(items) / seconds[k] for k in seconds}
    base = _run_key(methods[-1], modes[0])
    result: dict[str, Any] = {
        "bench": bench,
        "split": split,
        "problems": len(items),
        "batch": batch,
        "max_new_tokens": max_new_tokens,
        "modes": list(modes),
        "seconds": seconds,
        "tokens": tokens,
        "problems_per_min": per_min,
        "tokens_per_s": {k: tokens[k] / seconds[k] for k in seconds},
        "slowdown_vs_" + base: {k: per_min[base] / per_min[k] for k in seconds},
        "answers": answers,
    }
    if set(modes) == {"static", "continuous"}:
        result["continuous_speedup"] = {m: per_min[_run_key(m, "continuous")] / per_min[m] for m in methods}
        result["answers_differ"] = {
            m: sum(a != b for a, b in zip(answers[m], answers[_run_key(m, "continuous")], strict=True)) for m in methods
        }
    return result


def _run_key(method: str, mode: str) -> str:
    return method if mode == "static" else f"{method}@{mode}"


def _time_static(
    chains: dict[str, Any], questions: list[str], batch: int, timing: dict[str, Any], log: Callable[[str], None]
) -> None:
    """One ``batch()`` per method and group of problems, methods taking turns group by group."""
    for start in range(0, len(questions), batch):
        for m, chain in chains.items():
            began = time.perf_counter()
            outputs = chain.batch(questions[start : start + batch])
            took = time.perf_counter() - began
            n = [o["usage"]["completion_tokens"] for o in outputs]
            timing["seconds"][m] += took
            timing["tokens"][m] += sum(n)
            timing["answers"][m][start : start + batch] = [o["answer"] for o in outputs]
            log(f"batch {start // batch + 1} {m:>12}: {took:7.1f} s, tokens {sum(n)} (longest {max(n)})")


def _time_continuous(
    chains: dict[str, Any], questions: list[str], batch: int, timing: dict[str, Any], log: Callable[[str], None]
) -> None:
    """All problems streamed through ``batch`` slots, one method after the other."""
    for m, chain in chains.items():
        key = _run_key(m, "continuous")
        streaming = chain.model_copy(update={"batch_size": batch})
        began = time.perf_counter()
        for index, output in streaming.as_completed(questions):
            timing["tokens"][key] += output["usage"]["completion_tokens"]
            timing["answers"][key][index] = output["answer"]
        timing["seconds"][key] = time.perf_counter() - began
        log(f"continuous {m:>12}: {timing['seconds'][key]:7.1f} s, tokens {timing['tokens'][key]}")
