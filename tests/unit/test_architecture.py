"""The package's shape, checked from its source: layers point one way, no import
cycles, one importer per external system, one exception tree.

The import graph is read with :mod:`ast` (nothing is imported), so a cycle kept
alive by an import inside a function is found as well as a top-level one.
Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
import configparser
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import vmctl
import vmctl.errors

PACKAGE = Path(vmctl.__file__).parent

# Each layer imports only from layers below it (a lower number); subpackages on
# one layer are independent of each other. docs/architecture.md draws the same.
LAYERS = {
    "errors": 0,
    "_core": 1,
    "model": 2,
    "hypervisor": 3, "guest": 3,
    "images": 4,
    "engine": 5,
    "machines": 6,
    "swarm": 7, "lab": 7, "doctor": 7,
    "plan": 8,
    "api": 9,
    "__init__": 10,
    "cli": 11,
}
# Heavy optional libraries may be imported where they are used, and nowhere else.
LAZY_ALLOWED = {"vmctl.engine.client": "the Docker SDK (0.23 s)", "matplotlib": "lab charts only"}
ONLY_IMPORTER = {"libvirt": "vmctl.hypervisor.driver", "paramiko": "vmctl.guest.ssh", "docker": "vmctl.engine.client"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted
    lazy: bool  # inside a function
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def resolve(source: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (its package for ``from . import x``)."""
    if node.level == 0:
        return node.module or ""
    base = module_name(source).split(".")
    if not is_package(source):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path: Path) -> list[Import]:
    found: list[Import] = []
    source = module_name(path)

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other, lazy)
                continue
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend(Import(source, a.name, lazy, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = resolve(path, child)
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    found.append(Import(source, sub if exists(sub) else target, lazy, child.lineno))
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return found


ALL = [i for path in sorted(PACKAGE.rglob("*.py")) for i in imports_of(path)]
INTERNAL = [i for i in ALL if i.target.split(".")[0] == "vmctl" and i.target != "__future__"]


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer() -> None:
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    assert {layer(m) for m in modules} <= set(LAYERS), "a new subpackage needs a place in LAYERS"


def test_imports_point_down_the_layers() -> None:
    wrong = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in INTERNAL
        if layer(i.source) != layer(i.target) and LAYERS[layer(i.target)] >= LAYERS[layer(i.source)]
    ]
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for i in INTERNAL:
        if i.source != i.target:
            graph.setdefault(i.source, set()).add(i.target)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}}) is None


def test_imports_inside_functions_only_for_lazy_cli_loading_and_heavy_libraries() -> None:
    wrong = [
        f"{i.source}:{i.line} imports {i.target} inside a function"
        for i in ALL
        if i.lazy and layer(i.source) != "cli"
        and not any(i.target == m or i.target.startswith(m + ".") for m in LAZY_ALLOWED)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("library", sorted(ONLY_IMPORTER))
def test_one_module_imports_each_external_system(library: str) -> None:
    importers = {i.source for i in ALL if i.target == library or i.target.startswith(library + ".")}
    assert importers == {ONLY_IMPORTER[library]}


def test_subpackage_inits_hold_only_a_docstring() -> None:
    """Importing vmctl.guest (say) must not drag in its modules: the CLI starts on that."""
    for init in PACKAGE.glob("*/__init__.py"):
        if init.parent.name == "cli":
            continue
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), f"{init} has code"


def _exception_classes() -> list[tuple[str, type]]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id in vmctl.errors.__all__)
                for b in node.bases
            ):
                found.append((module_name(path), node.name))
    return [(m, getattr(vmctl.errors, n, None)) for m, n in found]  # type: ignore[misc]


def test_every_exception_lives_in_errors_and_is_exported() -> None:
    defined = _exception_classes()
    assert defined and all(module == "vmctl.errors" for module, _ in defined), defined
    classes = [c for _, c in defined]
    assert all(c is not None and issubclass(c, vmctl.VmctlError) for c in classes)
    names = {c.__name__ for c in classes if c is not None}
    assert names == set(vmctl.errors.__all__)
    assert names <= set(vmctl.__all__)
    assert all(getattr(vmctl, n) is getattr(vmctl.errors, n) for n in names)


def test_the_errors_docstring_draws_every_exception() -> None:
    drawn = set(re.findall(r"^\s*(?:[│├└─ ]+)?(\w+)\s", vmctl.errors.__doc__ or "", re.M))
    assert set(vmctl.errors.__all__) <= drawn


def test_every_public_name_resolves() -> None:
    for name in vmctl.__all__:
        assert getattr(vmctl, name) is not None, name


def test_host_up_shows_the_real_parameters() -> None:
    from vmctl.machines.host import Host
    from vmctl.machines.lifecycle import up

    host_params = list(inspect.signature(Host.up).parameters)[1:]
    assert host_params == list(inspect.signature(up).parameters)[1:]


def test_every_subpackage_ships_in_the_wheel() -> None:
    """Every package of the source tree is listed in setup.cfg (the installed copy the
    end-to-end tests use is built from that list)."""
    repo = Path(__file__).resolve().parents[2]
    config = configparser.ConfigParser()
    config.read(repo / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {".".join(init.parent.relative_to(repo).parts) for init in (repo / "vmctl").rglob("__init__.py")}
    assert "vmctl.machines" in found and found <= listed, f"add to setup.cfg's packages: {sorted(found - listed)}"


def test_every_template_ships_in_the_wheel() -> None:
    """Every file under templates/ matches a pattern of setup.cfg's package data (a
    template left out renders in the source tree and fails only when installed)."""
    repo = Path(__file__).resolve().parents[2]
    config = configparser.ConfigParser()
    config.read(repo / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["vmctl.templates"].split(",")]
    files = [p.relative_to(repo / "templates") for p in (repo / "templates").rglob("*") if p.is_file()]
    missing = [str(f) for f in files if not any(f.match(pattern) and len(f.parts) == len(Path(pattern).parts)
                                                 for pattern in patterns)]
    assert files and not missing, f"add to setup.cfg's package data: {missing}"
