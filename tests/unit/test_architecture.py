"""The package's layers, checked on the source: engine, models and answers at the bottom, then prompting,
langchain, reasoning, eval, bench (research tools: speed benchmarks, set builders)
and the command line; a module imports only from its own layer or those below, and
the modules' top-level imports form no cycle."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "selfanchor_chains"

# Lower rank = lower layer. The three bottom packages are independent of each other.
RANKS = {
    "engine": 0,
    "models": 0,
    "answers": 0,
    "prompting": 1,
    "langchain": 2,
    "reasoning": 3,
    "eval": 4,
    "bench": 5,
    "cli": 6,
}
BOTTOM = {"engine", "models", "answers"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """The nodes inside ``if TYPE_CHECKING:`` blocks (imports for annotations only, never run)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return inside


def _imports(name: str, path: Path, *, top_level_only: bool, runtime_only: bool = False) -> set[str]:
    """Modules of this package that ``name`` imports (relative imports resolved); ``runtime_only`` leaves out the
    imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if runtime_only:
        skipped = _type_checking_nodes(tree)
        nodes = [node for node in nodes if id(node) not in skipped]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("selfanchor_chains"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("selfanchor_chains"))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_belongs_to_a_layer() -> None:
    layers = {_layer(m) for m in _modules()} - {None}
    assert layers <= set(RANKS), f"modules outside the layers: {sorted(layers - set(RANKS))}"


@pytest.mark.parametrize("name", sorted(m for m in _modules() if _layer(m) is not None))
def test_imports_go_down_the_layers(name: str) -> None:
    path = _modules()[name]
    own = _layer(name)
    assert own is not None
    modules = _modules()
    for target in _imports(name, path, top_level_only=False):
        if target not in modules:
            continue  # a name imported from a module, already counted as the module
        other = _layer(target)
        if other is None or other == own:
            continue
        assert own not in BOTTOM or other not in BOTTOM, f"{name} ({own}) imports {target}: bottom packages stay apart"
        assert RANKS[other] < RANKS[own], f"{name} ({own}) imports {target} ({other}), a layer above it"


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {
        name: {t for t in _imports(name, path, top_level_only=True) if t in modules and t != name}
        for name, path in modules.items()
    }
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_no_import_cycle_even_through_deferred_imports() -> None:
    """A function-level import is still a dependency: no module may hide a cycle behind one (the shared piece moves
    down instead). Only ``if TYPE_CHECKING:`` imports (annotations, never run) are left out, and the edges between a
    module and the packages above it (``from .. import __version__``), which every package has."""
    modules = _modules()
    graph = {
        name: {
            t
            for t in _imports(name, path, top_level_only=False, runtime_only=True)
            if t in modules and t != name and not (name.startswith(t + ".") or t.startswith(name + "."))
        }
        for name, path in modules.items()
    }
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_largest_module_and_function_sizes() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    largest = max(sizes, key=sizes.__getitem__)
    assert sizes[largest] < 600, f"{largest} has {sizes[largest]} lines"
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            length = (node.end_lineno or node.lineno) - node.lineno + 1 if isinstance(node, ast.stmt) else 0
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and length > 80:
                long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long
