"""The shape of the code: imports point down the layers, no import cycle, no module grows past 450 lines unsaid.

The import graph is read with `ast` from the source (module-level, function-level and
TYPE_CHECKING imports alike), so nothing is imported to build it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("videoprep", "pipelines", "train")
# Layer of each top-level name, lowest first; a module may import only its own layer or lower ones.
LAYERS = {"videoprep": 0, "pipelines": 1, "train": 2, "cli": 3}
MAX_LINES = 450
SIZE_REASON = "# size:"  # a line near the top that says why a module is larger


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every product module (packages' `__init__` under the package's name)."""
    found = {"cli": ROOT / "cli.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The product modules one module imports, wherever in the file the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in modules:  # `import a.b.c` of a non-module attribute: its module
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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


def test_the_graph_sees_function_level_and_type_only_imports():
    graph = _graph()
    assert "train.evaluate" in graph["cli"]  # imported inside the `test` command only
    assert "pipelines.reader" in graph["pipelines.spec"]  # under TYPE_CHECKING


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_imports_point_down_the_layers():
    upward = [f"{name} imports {target}" for name, targets in _graph().items() for target in sorted(targets)
              if LAYERS[target.split(".")[0]] > LAYERS[name.split(".")[0]]]
    assert not upward, "imports that point up (cli -> train -> pipelines -> videoprep):\n" + "\n".join(upward)


def test_no_module_over_450_lines_without_a_reason():
    too_long = []
    for path in _modules().values():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any(line.startswith(SIZE_REASON) for line in lines[:30]):
            too_long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not too_long, (f"split these, or say why near the top with a line starting {SIZE_REASON!r}:\n"
                          + "\n".join(too_long))
