"""Relative files a notebook reads and writes, checked against the one rule for files (README, "Files").

Each step runs in a working directory of its own (on KFP: its pod's), unless the pipeline has a workspace,
which every step then shares; a local run seeds the directory with what is next to the notebook. So lint
warns when a step reads a relative file that another step writes (not there without a workspace), that
nothing provides, or that only the notebook's folder has and the step's image will not carry (``nb2kfp build``
copies what its steps read into the image it makes, :mod:`imagefiles`; an ``image:`` tag's image, a file the
include file keeps out or one outside the folder is not there). Only string literals in the usual reading and
writing calls count: cheap, and quiet where it cannot know.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from nb2kfp.errors import Diagnostic, warning

_READERS = frozenset(
    {
        "read_csv",
        "read_table",
        "read_parquet",
        "read_feather",
        "read_json",
        "read_excel",
        "read_pickle",
        "read_hdf",
        "read_fwf",
        "load",
        "loadtxt",
        "genfromtxt",
        "imread",
        "read_text",
        "read_bytes",
        "load_workbook",
    }
)
_WRITERS = frozenset(
    {
        "to_csv",
        "to_parquet",
        "to_feather",
        "to_json",
        "to_excel",
        "to_pickle",
        "to_hdf",
        "savefig",
        "save",
        "savetxt",
        "savez",
        "savez_compressed",
        "dump",
        "imwrite",
        "imsave",
        "write_text",
        "write_bytes",
    }
)
Access = tuple[str, int, int]  # path, cell, line


def _relative(node: ast.expr) -> str | None:
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return None
    text = node.value.strip()
    if not text or "\n" in text or "://" in text or text.startswith(("/", "~", "\\")) or len(text) > 200:
        return None
    if ":" in text[:3]:  # C:\...
        return None
    return text


def accesses(cell: int, tree: ast.Module) -> tuple[list[Access], list[Access]]:
    reads: list[Access] = []
    writes: list[Access] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "open" and node.args:
            path = _relative(node.args[0])
            mode = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            text = mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "r"
            if path:
                (writes if any(c in text for c in "wax") else reads).append((path, cell, node.lineno))
            continue
        if name in _WRITERS:  # obj.to_csv('x'), np.save('x', a), joblib.dump(obj, 'x'), fig.savefig('x')
            for arg in node.args[:2]:
                if path := _relative(arg):
                    writes.append((path, cell, node.lineno))
                    break
        elif name in _READERS and node.args and (path := _relative(node.args[0])):
            reads.append((path, cell, node.lineno))
    return reads, writes


def check(
    notebook: str,
    steps: list[tuple[str, list[tuple[int, ast.Module]]]],
    diags: list[Diagnostic],
    *,
    workspace: bool,
    in_step_image: frozenset[str] = frozenset(),
    kept_out: Callable[[str], str | None] = lambda _path: None,
) -> None:
    """``steps``: each step's name and (cell number, syntax tree) pairs, in notebook order; ``in_step_image``: the
    steps that run the step image ``nb2kfp build`` makes (no ``image:`` tag), which carries the files they read
    from the notebook's folder except those ``kept_out`` gives a reason for (:func:`imagefiles.kept_out`)."""
    folder = Path(notebook).parent
    accessed = []
    for name, cells in steps:
        reads: list[Access] = []
        writes: list[Access] = []
        for cell, tree in cells:
            r, w = accesses(cell, tree)
            reads.extend(r)
            writes.extend(w)
        accessed.append((name, reads, writes))
    writers: dict[str, str] = {}
    for name, _, writes in accessed:
        for path, _, _ in writes:
            writers.setdefault(path, name)
    told: set[str] = set()
    for name, reads, writes in accessed:
        own = {p for p, _, _ in writes}
        for path, cell, line in reads:
            if path in own:
                continue
            if path in writers and not workspace:
                msg = (
                    f"step {name!r} reads {path!r}, which step {writers[path]!r} writes: each step runs in a "
                    "working directory of its own (on KFP, its own pod), so the file is not there. Hand the "
                    "data over as a variable, or give the pipeline a workspace (kubeflow_notebook.workspace)"
                )
                diags.append(warning(notebook, msg, "NB100", cell, line))
            elif path not in writers and not (folder / path).exists():
                msg = f"step {name!r} reads {path!r}: no such file next to the notebook, and no step writes it"
                diags.append(warning(notebook, msg, "NB101", cell, line))
            elif path not in writers and path not in told:
                why = kept_out(path)
                if why is None and name in in_step_image:
                    continue  # nb2kfp build copies it into the step image's working directory
                told.add(path)
                why = why or "the step runs an image of its own (image: tag), not the one nb2kfp build makes"
                msg = (
                    f"step {name!r} reads {path!r} from the notebook's folder: a local run has it, a KFP step "
                    f"will not ({why}); read it from the workspace, a volume or object storage instead"
                )
                diags.append(warning(notebook, msg, "NB102", cell, line))
