"""What an evaluation runs: benchmark and method specs, the chain each method gets on each benchmark, and the
fingerprint that ties stored results to the configuration that made them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..reasoning.methods import METHODS
from .code_methods import CODE_METHODS, make_code_chain, parse_code_method
from .conflict_methods import make_conflict_chain, parse_conflict_method
from .conflict_set import CONFLICT_METHODS, CONFLICT_METHODS_WITH_OMEGA
from .datasets import ALL_BENCHMARKS, BBH_TASKS, CODE_BENCHMARKS
from .fingerprints import STUDY_OPTION_DEFAULTS, is_language_model, method_fingerprint

__all__ = [
    "CODE_METHOD_NAMES",
    "CONFLICT_METHOD_NAMES",
    "METHOD_NAMES",
    "STUDY_OPTION_DEFAULTS",
    "MethodSpec",
    "WorkedExampleError",
    "default_worked_example",
    "method_fingerprint",
    "parse_benches",
    "parse_methods",
]

METHOD_NAMES = METHODS


CONFLICT_METHOD_NAMES = CONFLICT_METHODS
CODE_METHOD_NAMES = CODE_METHODS
_WITH_OMEGA: tuple[str, ...] = (*CONFLICT_METHODS_WITH_OMEGA, "code-anchored", "code-spa")

ChainFactory = Callable[[str, str], Any]


@dataclass(frozen=True)
class MethodSpec:
    """A method to run and an optional cap on how many items of each benchmark it gets.

    Attributes:
        name: Method name (one of :data:`METHOD_NAMES` unless a chain factory knows others).
        limit: At most this many items per benchmark (the first ones, so they are shared with the other methods);
            None: as many as the benchmark's ``--limit``.
    """

    name: str
    limit: int | None = None

    def __str__(self) -> str:
        return self.name if self.limit is None else f"{self.name}:{self.limit}"


def parse_methods(
    spec: str | Sequence[str | MethodSpec],
    known: Sequence[str] | None = METHOD_NAMES + CONFLICT_METHOD_NAMES + CODE_METHOD_NAMES,
) -> list[MethodSpec]:
    """Parse ``"self-anchor,cot,spa:100"`` (``method:N`` caps the method at N items per benchmark;
    ``code-anchored@2`` / ``rag-anchored@2.5`` set ω of a steered code or conflictqa method).

    Args:
        spec: Comma-separated methods, or a sequence of names / ``name:N`` strings / specs.
        known: Allowed names; None accepts any name (for chain factories with their own methods).

    Returns:
        The specs, in the given order.

    Raises:
        ValueError: Unknown or repeated method, a bad cap or ω (not a finite number ≥ 1), or no method at all.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[MethodSpec] = []
    for item in items:
        if isinstance(item, MethodSpec):
            parsed = item
        else:
            name, sep, cap = item.strip().partition(":")
            name = name.strip()
            if not name:
                continue
            limit = None
            if sep:
                try:
                    limit = int(cap)
                except ValueError:
                    raise ValueError(f"bad item cap in {item.strip()!r}: expected method:N with N an integer") from None
                if limit < 0:
                    raise ValueError(f"item cap must be >= 0 in {item.strip()!r}")
            parsed = MethodSpec(name, limit)
        base, at, _ = parsed.name.partition("@")
        if known is not None and not (parsed.name in known or (at and base in known and base in _WITH_OMEGA)):
            raise ValueError(f"unknown method {parsed.name!r}; choose from {', '.join(known)}")
        if at and base in CODE_METHODS:
            parse_code_method(parsed.name)  # a bad ω fails here, before a model is loaded
        elif at and base in CONFLICT_METHODS:
            parse_conflict_method(parsed.name)
        if any(m.name == parsed.name for m in out):
            raise ValueError(f"method {parsed.name!r} given twice")
        out.append(parsed)
    if not out:
        raise ValueError("no method given")
    return out


def parse_benches(spec: str | Sequence[str]) -> list[str]:
    """Parse ``"gsm8k,bbh:word_sorting"`` into validated benchmark specs (duplicates dropped).

    Raises:
        ValueError: Unknown benchmark or BBH task, a task on a benchmark without tasks, or no benchmark at all.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        bench, sep, task = item.strip().partition(":")
        bench, task = bench.strip().lower(), task.strip()
        if not bench:
            continue
        if bench not in ALL_BENCHMARKS:
            raise ValueError(
                f"unknown benchmark {item.strip()!r}; choose from {', '.join(ALL_BENCHMARKS)} (or bbh:<task>)"
            )
        if sep and bench != "bbh":
            raise ValueError(f"benchmark {bench!r} has no tasks (got {item.strip()!r}); only bbh:<task> is valid")
        if sep and task not in BBH_TASKS:
            raise ValueError(f"unknown BBH task {task!r}; choose from {', '.join(BBH_TASKS)}")
        name = f"{bench}:{task}" if sep else bench
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("no benchmark given")
    return out


# -- chains ------------------------------------------------------------------------------------------------------


def _is_steered(source: Any) -> bool:
    from ..langchain.llm import SteeredHFLLM

    return isinstance(source, SteeredHFLLM)


def _check_source(source: Any, methods: Sequence[MethodSpec]) -> None:
    """Fail before any work when a method cannot run on the given LLM."""
    from .prompted import PROMPTED_METHODS, SteeringRequiredError

    if _is_steered(source) or not is_language_model(source):
        if not is_language_model(source) and not callable(source):
            raise TypeError(
                "llm_or_chain_factory must be a LangChain LLM or a callable factory(method, bench) -> runnable, "
                f"got {type(source).__name__}"
            )
        return
    steered = [m.name for m in methods if m.name not in PROMPTED_METHODS]
    if steered:
        raise SteeringRequiredError(
            f"{', '.join(steered)} need a SteeredHFLLM (attention steering or step tracking while decoding); "
            f"{type(source).__name__} can run only {', '.join(PROMPTED_METHODS)}"
        )


def _make_chain(source: Any, method: str, bench: str, max_new_tokens: int, worked_example: bool | None = None) -> Any:
    """The chain a method runs on a benchmark, showing the worked example as asked.

    ``worked_example``: True / False shows / hides it in every package reasoning chain (True on a chain that has no
    example is an error); None gives each of them Self-Anchor's default, so that the methods of a comparison see the
    same prompt shape whatever that default is. Other chains (prompted, conflictqa, a factory's, even when the factory
    builds package chains) are left as built unless asked explicitly.
    """
    chain = _built_chain(source, method, bench, max_new_tokens)
    if worked_example is None and not _is_steered(source):
        return chain  # a factory's chain made its own choice (the study's variants differ in exactly this)
    has_example = "worked_example" in getattr(type(chain), "model_fields", {})
    if worked_example and not has_example:
        raise WorkedExampleError(
            f"{method} on {bench} has no worked example to show (only the package's reasoning chains on a "
            "SteeredHFLLM have one)"
        )
    if not has_example:
        return chain
    wanted = default_worked_example() if worked_example is None else worked_example
    return chain if chain.worked_example == wanted else chain.model_copy(update={"worked_example": wanted})


def default_worked_example() -> bool:
    """Whether :class:`~selfanchor_chains.SelfAnchorChain` shows its worked example by default (what an evaluation
    gives every method unless told otherwise)."""
    from ..reasoning.chains import SelfAnchorChain

    return bool(SelfAnchorChain.model_fields["worked_example"].default)


def _built_chain(source: Any, method: str, bench: str, max_new_tokens: int) -> Any:
    if _is_steered(source) and bench in CODE_BENCHMARKS:
        return make_code_chain(method, source, max_new_tokens=max_new_tokens)
    if _is_steered(source) and bench == "conflictqa":
        return make_conflict_chain(method, source, max_new_tokens=max_new_tokens)
    if _is_steered(source):
        from ..reasoning.methods import make_chain

        return make_chain(method, source, bench=bench, max_new_tokens=max_new_tokens)
    if is_language_model(source):
        from .prompted import make_prompted_chain

        return make_prompted_chain(source, method, bench)
    return source(method, bench)


class WorkedExampleError(ValueError):
    """``worked_example`` was asked of a method whose chain cannot show one."""


def _check_bench_methods(benches: Sequence[str], methods: Sequence[MethodSpec], *, factory: bool) -> None:
    """conflictqa and the code benchmarks run only their own methods (they read the passages / write code), and
    those run only on them (names a chain factory defines are its own business)."""
    if factory:
        return
    families = {"conflictqa": CONFLICT_METHOD_NAMES, **dict.fromkeys(CODE_BENCHMARKS, CODE_METHOD_NAMES)}
    every = set(METHOD_NAMES) | set(CONFLICT_METHOD_NAMES) | set(CODE_METHOD_NAMES)
    for bench in benches:
        allowed = families.get(bench.partition(":")[0], METHOD_NAMES)
        # Only another family's names are refused; a name no family knows is a chain factory's own.
        wrong = [m.name for m in methods if m.name.partition("@")[0] in every - set(allowed)]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} cannot run on {bench}; its methods are {', '.join(allowed)}")


def _model_name(source: Any) -> str | None:
    for attr in ("model_id", "model_name", "model"):
        value = getattr(source, attr, None)
        if isinstance(value, str) and value:
            return value
    return None
