"""The package's layering, read from its source: ``core/`` imports nothing of thingport outside ``core/``,
nothing but the entry points imports ``runtime/`` (the layer that assembles the process), and no two modules
import each other, directly or round a longer loop (imports inside functions count: a lazy import still ties
the two modules together)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "thingport"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """thingport module -> the thingport modules it imports (``from a import b`` counts ``a.b`` when it
    is a module, else ``a``)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name and t != "thingport"}
    return graph


def test_core_imports_nothing_of_thingport_outside_core() -> None:
    graph = import_graph()
    outside = {(m, t) for m, ts in graph.items() if m.startswith("thingport.core") for t in ts
               if not t.startswith("thingport.core")}
    assert outside == set()


# the outer layer assembles the process: only the entry points (CLI, simulator) may import it
OUTERMOST = "thingport.runtime"
ENTRY_POINTS = {"thingport.cli", "thingport.simulator", "thingport.__main__"}


def test_only_the_entry_points_import_the_runtime_layer() -> None:
    graph = import_graph()
    upward = {(m, t) for m, ts in graph.items() if not m.startswith(OUTERMOST) and m not in ENTRY_POINTS
              for t in ts if t.startswith(OUTERMOST)}
    assert upward == set()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", ["thingport.core"])
def test_the_layer_exists(layer: str) -> None:
    assert any(m.startswith(layer) for m in import_graph())


def test_dialects_reach_the_use_case_only_through_its_port() -> None:
    """A dialect is an adapter on ``ingest/ports.py``: it never imports the use case's module (or the app)."""
    graph = import_graph()
    dialects = {m for m in graph if m.startswith("thingport.dialects")}
    assert dialects
    reached = {(m, t) for m in dialects for t in graph[m]
               if t.startswith("thingport.ingest") and t != "thingport.ingest.ports" or t == "thingport.app"}
    assert reached == set()
