"""The import layering of refconv, read from the source with ast: no framework in the core, no import cycles.

Rules (docs/architecture.md, "What each module owns and may import"):
- no refconv module imports an ML framework at module level, so `import refconv.<anything>` never loads one;
- the core (every refconv module but the worker-side model readers in refconv/models/, which run inside an
  adapter's worker through `WorkerHandle.call`) imports no framework anywhere, not even inside a function;
- the modules of refconv import each other without cycles, counting function-level imports too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "refconv"
FRAMEWORKS = {"tensorflow", "torch", "torchvision", "jax", "jaxlib", "flax", "keras", "tf_keras", "onnx",
              "onnxruntime", "scipy", "cupy"}
WORKER_SIDE = ("refconv.models",)  # run inside an adapter's worker (WorkerHandle.call), never in the main process


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(name: str) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import statement of a module (TYPE_CHECKING ones left out)."""
    tree = ast.parse(MODULES[name].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        top = parents.get(node) is tree
        if isinstance(node, ast.Import):
            out += [(alias.name, top) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        out.append((base, top))
        out += [(f"{base}.{alias.name}", top) for alias in node.names if f"{base}.{alias.name}" in MODULES]
    return out


def is_framework(module: str) -> bool:
    return module.split(".")[0] in FRAMEWORKS


def test_the_parser_sees_imports_at_both_levels():
    found = dict(imports("refconv.distributed"))
    assert found.get("threading") is True and found.get("distributed") is False  # lazy: only with --dask
    assert ("refconv.errors", True) in imports("refconv.runner")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_a_framework_at_import_time(name):
    assert [m for m, top in imports(name) if top and is_framework(m)] == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith(WORKER_SIDE)))
def test_the_core_never_imports_a_framework(name):
    assert [m for m, _ in imports(name) if is_framework(m)] == []


def test_refconv_modules_import_each_other_without_cycles():
    def ancestor(module: str, of: str) -> bool:  # a submodule runs its packages' __init__ anyway: no layering edge
        return of.startswith(module + ".") or module == "refconv"

    graph = {name: sorted({m for m, _ in imports(name) if m in MODULES and m != name and not ancestor(m, name)})
             for name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)
