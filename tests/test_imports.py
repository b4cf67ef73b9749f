"""The library's import graph: no cycles, even through imports deferred into functions."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for file in SRC.rglob("*.py"):
        name = ".".join(file.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = file
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every releo module each module imports, at any depth, outside ``if TYPE_CHECKING``."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, file in modules.items():
        stack: list[ast.AST] = [ast.parse(file.read_text())]
        while stack:
            node = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("releo"):
                    targets = [resolve(f"{child.module}.{a.name}") for a in child.names]
                elif isinstance(child, ast.Import):
                    targets = [resolve(a.name) for a in child.names if a.name.startswith("releo")]
                else:
                    stack.append(child)
                    continue
                graph[module] |= {t for t in targets if t and t != module}
    return graph


def test_no_import_cycles():
    try:
        graphlib.TopologicalSorter(_imports(_modules())).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
