"""The package layout: layers import downward only, no import cycles, no private names
across modules, and the package map in ``interlace/__init__.py`` names every module.

Reads the source with ``ast`` (nothing is imported), so it checks imports inside
functions too; imports under ``if TYPE_CHECKING:`` are annotations, not dependencies.
Layers, bottom to top: ``_base`` < ``_core`` < ``_model`` < ``_inference``, ``_diagnostics``
(side by side: neither imports the other) < the package root (the public surface).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import interlace

PACKAGE = Path(interlace.__file__).resolve().parent
RANK = {"_base": 0, "_core": 1, "_model": 2, "_inference": 3, "_diagnostics": 3}
ROOT_RANK = 4
NO_PANDAS = ("_base", "_core")  # the numeric middle sees arrays only


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str | None:
    """The subpackage a module belongs to (None: the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else None


def _rank(module: str) -> int:
    layer = _layer(module)
    return ROOT_RANK if layer is None else RANK[layer]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str):
    """``(target module, imported names, line)`` for every interlace import in ``path``."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for child in node.body
        for n in ast.walk(child)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("interlace"):
                continue
            names = [a.name for a in node.names]
            # ``from . import linalg`` imports a module, not a name of the package
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            if subs:
                for sub in subs:
                    yield sub, [], node.lineno
            else:
                yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("interlace"):
                    yield a.name, [], node.lineno


MODULES = _modules()
EDGES = {m: list(_imports(p, m)) for m, p in MODULES.items()}


def _third_party(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_the_walk_sees_the_layers():
    """The checks below are only as good as the walk: it must find every layer and the
    imports between them (a walk that finds nothing would pass everything)."""
    layers = {_layer(m) for m in MODULES}
    assert set(RANK) <= layers
    n_edges = sum(len(e) for e in EDGES.values())
    assert n_edges > 50, n_edges
    assert any(
        t == "interlace._core.deviance" and "estimates" in n
        for t, n, _ in EDGES["interlace._model.estimate"]
    )


def test_imports_run_downward_only():
    """No module imports a layer above it, nor a sibling layer of the same rank."""
    bad = []
    for module, edges in EDGES.items():
        for target, _, line in edges:
            if target == "interlace" and module != "interlace":
                bad.append(f"{module}:{line} imports the package root")
                continue
            if _layer(target) == _layer(module):
                continue
            if _rank(target) >= _rank(module):
                bad.append(
                    f"{module}:{line} imports {target} (layer {_layer(target) or 'root'}"
                    f" is not below {_layer(module) or 'root'})"
                )
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in edges if t in MODULES and t != m} for m, edges in EDGES.items()}
    graph.pop("interlace", None)  # the package root re-exports; nothing imports it back
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_no_private_names_across_modules():
    """What one module uses of another has a plain name; underscore names stay inside
    the module that defines them."""
    bad = [
        f"{m}:{line} imports {n} from {t}"
        for m, edges in EDGES.items()
        for t, names, line in edges
        for n in names
        if n.startswith("_") and not n.startswith("__") and m != "interlace"
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", NO_PANDAS)
def test_numeric_layers_do_not_import_pandas(layer):
    bad = [m for m, p in MODULES.items() if _layer(m) == layer and "pandas" in _third_party(p)]
    assert not bad, bad


def test_package_map_names_every_module():
    """The package docstring lists each layer and each module in it (and nothing that
    is not there)."""
    doc = interlace.__doc__
    for m in MODULES:
        layer, name = _layer(m), m.rpartition(".")[2]
        if m == "interlace" or name == "__init__" or m == f"interlace.{layer}":
            continue
        if layer is not None:
            assert f"``{layer}/``" in doc, layer
        assert f"``{name}``" in doc, f"{m} is missing from the package map"
    for sub in {p.parent.name for p in PACKAGE.glob("_*/__init__.py")}:
        assert sub in RANK, f"interlace/{sub}/ has no rank in this test"


def test_every_module_says_what_it_owns():
    missing = [m for m, p in MODULES.items() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing
