"""The layering holds, imports inside functions included (docs/architecture.md draws it).

Each module of nb2kfp sits on one floor of :data:`LAYERS` (bottom first) and imports only from its own unit (the
package or top-level module it belongs to) or from units on lower floors: never upward, never sideways to another
unit of its floor. Imports under ``if TYPE_CHECKING:`` are for the type checker and never run: they are left out.
Inside a unit no two modules import each other, even through others (no cycle), and the step runtime
(``nb2kfp/runtime``, shipped into every step) imports nothing from nb2kfp.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nb2kfp

PACKAGE = Path(nb2kfp.__file__).parent

# Bottom first. A unit is a package (``frontend``) or a top-level module (``git``) of nb2kfp.
LAYERS: list[set[str]] = [
    {"runtime"},  # the step runtime: nothing from nb2kfp (it runs in steps without nb2kfp installed)
    {"__init__", "errors"},
    {"words", "atomic", "yamlsafe", "extras", "ir", "kfpnames", "requirements"},  # requirements: what images install
    {"oci", "masking"},  # image references, registries and credentials; masking of secrets
    {"git"},
    {"loader"},  # where compiling reads files: the work tree or a commit
    {"config"},
    {"stamp", "security", "catalog"},
    {"frontend"},  # notebook -> IR
    {"backends"},  # IR -> KFP spec
    {"images", "clients"},  # step images; the GitLab and KFP API clients
    {"local_run", "serving", "monitor"},  # monitor: the monitoring notebook, its image, the drift step
    {"service"},
    {"delivery"},  # CI, webhook, merge request notes
    {"commands"},
    {"cli"},
    {"__main__"},
]
FLOOR = {unit: floor for floor, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """``nb2kfp.frontend.builder`` -> ``frontend``; ``nb2kfp`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
    return relative.removesuffix(".__init__")


def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> set[str]:
    """Every nb2kfp name an import in ``tree`` reaches (module, and module.name for ``from`` imports), at any depth,
    except under ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        if _type_checking_only(node):
            todo.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        todo.extend(ast.iter_child_nodes(node))
    return {n for n in found if n == "nb2kfp" or n.startswith("nb2kfp.")}


def graph() -> dict[str, set[str]]:
    """Module -> the nb2kfp modules it imports (``from nb2kfp.x import y``: ``nb2kfp.x``, and ``nb2kfp.x.y`` when
    that is a module)."""
    found = modules()
    edges: dict[str, set[str]] = {}
    for name, path in found.items():
        reached = _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        edges[name] = {r for r in reached if r in found and r not in (name, "nb2kfp")}  # nb2kfp: its __version__
    return edges


def wrong_way(edges: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in sorted(edges.items()):
        here = unit_of(source)
        for target in sorted(targets):
            there = unit_of(target)
            if there != here and FLOOR[there] >= FLOOR[here]:
                problems.append(f"{source} ({here}, floor {FLOOR[here]}) imports {target} (floor {FLOOR[there]})")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_unit_has_a_floor() -> None:
    assert {unit_of(m) for m in modules()} - set(FLOOR) == set()


def test_imports_go_down_the_layers_only() -> None:
    assert wrong_way(graph()) == []


def test_no_modules_import_each_other() -> None:
    assert cycles(graph()) == []


def test_the_step_runtime_imports_nothing_from_nb2kfp() -> None:
    edges = graph()
    assert {m: t for m, t in edges.items() if unit_of(m) == "runtime" and t} == {}


def test_only_the_cli_imports_commands() -> None:
    assert [p for p in wrong_way(graph()) if ".commands" in p.split(" imports ")[-1]] == []
    assert all(unit_of(m) in ("cli", "commands") for m, t in graph().items() if any(".commands" in x for x in t))


def test_the_check_sees_imports_inside_functions_but_not_for_the_type_checker_only() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nb2kfp.cli import app\n"
        "def f():\n    from nb2kfp.commands.plan import compile_at\n    from nb2kfp import service\n"
    )
    assert _imports(tree) == {"nb2kfp", "nb2kfp.commands.plan", "nb2kfp.commands.plan.compile_at", "nb2kfp.service"}


def test_the_check_finds_an_upward_import_and_a_cycle() -> None:
    assert wrong_way({"nb2kfp.config": {"nb2kfp.frontend.notebook"}}) != []
    assert wrong_way({"nb2kfp.frontend.notebook": {"nb2kfp.config"}}) == []
    assert wrong_way({"nb2kfp.stamp": {"nb2kfp.catalog"}}) != []  # sideways: another unit of the same floor
    assert cycles({"nb2kfp.a.x": {"nb2kfp.a.y"}, "nb2kfp.a.y": {"nb2kfp.a.z"}, "nb2kfp.a.z": {"nb2kfp.a.x"}}) == [
        ["nb2kfp.a.x", "nb2kfp.a.y", "nb2kfp.a.z"]
    ]
