"""The package's shape: the verbs at the root, and no import circles between its modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import inn_mobile

PACKAGE = Path(inn_mobile.__file__).parent
VERBS = {"convert", "IntegralModel", "Bundle", "make_buckets", "load", "save", "pack", "open_model", "choose", "fit",
         "FinetuneConfig"}


def test_root_exports_the_verbs_and_a_version():
    assert VERBS <= set(inn_mobile.__all__)
    assert "__version__" in inn_mobile.__all__ and inn_mobile.__version__[0].isdigit()
    for name in inn_mobile.__all__:
        assert getattr(inn_mobile, name) is not None, name
    assert issubclass(inn_mobile.BundleError, inn_mobile.InnError)


def test_importing_the_package_does_not_import_torch():
    """The root resolves names on first use, so importing it (or the C binding alone) stays cheap."""
    code = "import sys, inn_mobile, inn_mobile.native; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """inn_mobile modules a module imports at run time (module level or inside functions, not under
    ``if TYPE_CHECKING``)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(ast.parse(p.read_text()), set(files)) - {name} for name, p in files.items()}
    graph["inn_mobile"] = set()  # the root only names modules, imported lazily on first use (PEP 562)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()) or [])


def test_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["inn_mobile.format.vocab"] = {"inn_mobile.format.bundle"}  # bundle imports vocab
    assert find_cycle(graph) is not None


def test_loaders_do_not_import_exporters():
    """Loading a LiteRT or ExecuTorch model must not pull in the torch exporters (export <-> runtime)."""
    graph = import_graph()
    for loader in ("inn_mobile.runtime.litert", "inn_mobile.runtime.executorch", "inn_mobile.runtime.reader"):
        seen, todo = set(), [loader]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        assert not any(m.startswith("inn_mobile.export") for m in seen), (loader, sorted(seen))
