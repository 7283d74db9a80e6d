"""The layering holds: only the CLI imports ``nb2kfp.commands`` (commands are thin and call the service layer and
the modules below it; the CI flow, the webhook worker and the MR note never reach into a command)."""

from __future__ import annotations

import ast
from pathlib import Path

import nb2kfp

PACKAGE = Path(nb2kfp.__file__).parent


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def imports_of_commands() -> dict[str, set[str]]:
    """Each module outside ``nb2kfp/cli/`` that imports ``nb2kfp.commands`` (or a module of it), and what."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cli/"):
            continue
        names = _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        hits = {n for n in names if n == "nb2kfp.commands" or n.startswith("nb2kfp.commands.")}
        if hits:
            found[relative] = hits
    return found


def test_only_the_cli_imports_commands() -> None:
    assert imports_of_commands() == {}


def test_the_check_sees_imports_inside_functions() -> None:
    tree = ast.parse("def f():\n    from nb2kfp.commands.plan import compile_at\n    from nb2kfp import service\n")
    assert "nb2kfp.commands.plan" in _imports(tree)
