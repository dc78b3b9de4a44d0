"""The import graph of webapp/ points one way: no cycles, and no module imports a higher layer.

The graph is read from the source with ``ast``, imports inside functions included, so a local
import cannot hide a dependency. docs/architecture.md describes the layers.
"""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "webapp"

#: Lowest first. A module may import its own layer and the layers below it. The first pattern that
#: matches a module's dotted name (without the leading "webapp.") decides its layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("protocol", ("wechat", "wechat.*")),
    ("base", ("config", "models", "database", "extensions", "secretbox", "logs", "metrics", "i18n",
              "web", "security", "migrate", "heartbeat", "runtime", "auth.passwords", "delivery.content",
              "api.openapi", "audit")),
    ("domain", ("clients", "tokens", "channel", "delivery", "delivery.*", "setup.drafts", "callback.handlers", "alerts.notifications",
                "callback.store")),
    ("services", ("*.services", "*_services", "*.handlers", "*.sending", "api.apps", "api.throttle", "console.health", "ops.health",
                  "datacopy")),
    ("entry", ("*.routes", "*.forms", "*.wizard_forms", "*.pages", "*.blueprint", "setup.wizard", "setup.wizard_server", "errors",
               "jobs", "console.charts", "simulator", "simulator.*", "api", "auth", "binding",
               "callback", "console", "home", "ops", "setup", "users", "alerts")),
    ("app", ("", "cli")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The webapp modules ``name`` imports anywhere in its source."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # "from package import module" depends on the module, "from module import name" on the module.
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def layer_of(name: str) -> int | None:
    short = name.removeprefix("webapp").removeprefix(".")
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(short, pattern) for pattern in patterns):
            return rank
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_import_graph_has_no_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (counting imports inside functions):\n" + "\n".join(
        " <-> ".join(component) for component in found)


def test_every_module_has_a_layer():
    missing = sorted(name for name in import_graph() if layer_of(name) is None)
    assert not missing, f"place these modules in a layer of tests/test_layers.py LAYERS: {missing}"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module in a higher layer than the importer's, as a sentence."""
    upward = []
    for name, targets in sorted(graph.items()):
        own = layer_of(name)
        for target in sorted(targets):
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{name} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    return upward


def test_no_module_imports_a_higher_layer():
    upward = upward_imports(import_graph())
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_protocol_package_imports_neither_flask_nor_the_rest_of_webapp():
    for name, path in modules().items():
        if layer_of(name) != 0:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for imported_name in names:
                assert not imported_name.startswith("flask"), f"{name} imports {imported_name}"
                assert not imported_name.startswith("webapp.") or imported_name.startswith("webapp.wechat"), \
                    f"{name} imports {imported_name}"


# --- the checks themselves catch what they are for ---------------------------------------------

def test_a_cycle_through_a_function_local_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from pkg import high\n    return high\n")
    (package / "high.py").write_text("from pkg import low\n")
    known = {"pkg", "pkg.low", "pkg.high"}
    graph = {name: imported(name, package / (name.split(".")[-1] + ".py") if name != "pkg" else package / "__init__.py",
                            known) for name in known}
    assert cycles(graph) == [["pkg.high", "pkg.low"]]


def test_an_import_of_a_higher_layer_is_found():
    assert upward_imports({"webapp.models": {"webapp.jobs"}, "webapp.jobs": {"webapp.models"}}) == [
        "webapp.models (base) imports webapp.jobs (entry)"]


@pytest.mark.parametrize("name, layer", [
    ("webapp.wechat.crypto", "protocol"), ("webapp.models", "base"), ("webapp.channel", "domain"),
    ("webapp.delivery.engine", "domain"), ("webapp.api.services", "services"), ("webapp.jobs", "entry"),
    ("webapp.console.routes", "entry"), ("webapp", "app"), ("webapp.cli", "app"),
])
def test_layers_are_assigned_as_documented(name, layer):
    assert LAYERS[layer_of(name)][0] == layer
