"""Read a notebook and parse its cell tags (Kale's vocabulary, plus papermill's).

Returns plain records; grouping cells into steps is :mod:`nb2kfp.frontend.builder`'s job.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nb2kfp.errors import Diagnostic, NotebookError, error, warning
from nb2kfp.frontend import nbschema
from nb2kfp.loader import WORK_TREE, Loader
from nb2kfp.security import secrets

Role = Literal["code", "imports", "functions", "parameters", "injected", "metrics", "skip", "notebook", "component"]

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_K8S_KEY = r"[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?(?:/[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?)?"
_SPECIAL = {
    "imports": "imports",
    "functions": "functions",
    "pipeline-parameters": "parameters",
    "parameters": "parameters",  # papermill
    "injected-parameters": "injected",  # papermill's output notebooks
    "pipeline-metrics": "metrics",
    "skip": "skip",
}
# Tags other notebook tools own (papermill, nbconvert, Jupyter Book / MyST-NB, nbval, nbmake, nbsphinx,
# thebe, voila): not ours, not errors. Families by prefix, plus single tags.
FOREIGN_TAGS = frozenset(
    {
        "raises-exception",
        "skip-execution",
        "full-width",
        "margin",
        "dropdown",
        "toggle",
        "popout",
        "output_scroll",
        "scroll-output",
        "scroll-input",
        "voila-hide",
        "hide",  # a cell nbconvert's TagRemovePreprocessor leaves out of the docs (seaborn's tutorials)
    }
)
_FOREIGN_RE = re.compile(
    r"^(?:(?:hide|remove)[-_](?:cell|input|output|stderr|stdout)|(?:nbval|nbsphinx|thebe|nbmake|myst|jupyter-book)-.*)$"
)


def is_foreign_tag(tag: str) -> bool:
    """A tag of Jupyter's own tools (nbconvert's remove_output, Jupyter Book's hide-input, nbval-skip ...)."""
    return tag in FOREIGN_TAGS or _FOREIGN_RE.fullmatch(tag) is not None


_STEP_RE = re.compile(rf"^(?:step|block):({_NAME})?$")  # Kale 2.3: an empty name joins the step above
_PREV_RE = re.compile(rf"^prev:({_NAME})$")
_MODEL_RE = re.compile(r"^model:([A-Za-z_][A-Za-z0-9_]*)$")
_REFERENCE_RE = re.compile(r"^reference:([A-Za-z_][A-Za-z0-9_]*)$")  # the training data of the step's model
_NOTEBOOK_RE = re.compile(r"^notebook:(.+)$")
_COMPONENT_RE = re.compile(r"^component:([A-Za-z0-9][A-Za-z0-9._-]*(?:@[A-Za-z0-9._+-]+)?)$")


@dataclass
class StepOptions:
    """Per-step settings from tags (or from ``kubeflow_notebook.steps_defaults``)."""

    image: str | None = None
    caching: bool | None = None
    limits: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # env -> (secret, key)
    requests: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # key -> (operator, value, effect)
    retries: int | None = None
    timeout: int | None = None  # seconds
    report: bool | None = None  # report:enabled|disabled (Kale's tag)

    def merged_over(self, base: StepOptions) -> StepOptions:
        return StepOptions(
            image=self.image or base.image,
            caching=base.caching if self.caching is None else self.caching,
            limits={**base.limits, **self.limits},
            labels={**base.labels, **self.labels},
            annotations={**base.annotations, **self.annotations},
            secrets={**base.secrets, **self.secrets},
            requests={**base.requests, **self.requests},
            node_selector={**base.node_selector, **self.node_selector},
            tolerations={**base.tolerations, **self.tolerations},
            retries=base.retries if self.retries is None else self.retries,
            timeout=base.timeout if self.timeout is None else self.timeout,
            report=base.report if self.report is None else self.report,
        )


@dataclass
class Cell:
    index: int  # 1-based over all cells
    source: str
    role: Role = "code"
    step: str | None = None
    prev: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # model:VARIABLE, a model this step produces
    references: list[str] = field(default_factory=list)  # reference:VARIABLE, the data its model was fitted on
    options: StepOptions = field(default_factory=StepOptions)
    notebook_ref: str | None = None
    component_ref: str | None = None  # NAME or NAME@VERSION of a catalog component
    raises: bool = False  # tagged raises-exception (nbclient/papermill): its error is its output, the step goes on


@dataclass
class Notebook:
    path: str
    sha256: str
    cells: list[Cell]  # code cells only, in order
    metadata: dict[str, Any]
    diagnostics: list[Diagnostic]
    stem: str


def read_notebook(
    path: str | Path, data: bytes | None = None, ignore_tags: frozenset[str] = frozenset(), loader: Loader = WORK_TREE
) -> Notebook:
    """Read (through ``loader``, unless ``data`` is given) and validate ``path``; raise :class:`NotebookError` when
    it is not a usable notebook."""
    shown = str(path)
    if data is None:
        try:
            data = loader.read(Path(path))
        except OSError as exc:
            raise NotebookError([error(shown, f"cannot read notebook: {exc.strerror}", "NB001")]) from None
    raw = _load_json(shown, data)
    _validate(shown, raw)
    digest = content_hash(raw)
    diagnostics: list[Diagnostic] = []
    cells: list[Cell] = []
    for number, raw_cell in enumerate(raw["cells"], start=1):
        source = raw_cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        _scan_secrets(shown, number, source, raw_cell.get("outputs"), diagnostics)
        _scan_metadata(shown, number, raw_cell.get("metadata"), diagnostics)
        if raw_cell.get("cell_type") != "code":
            continue
        cell = Cell(index=number, source=source)
        tags = [t for t in raw_cell.get("metadata", {}).get("tags", []) if t not in ignore_tags]
        cell.raises = "raises-exception" in tags
        _parse_tags(shown, cell, tags, raw_cell.get("metadata", {}), diagnostics)
        cells.append(cell)
    metadata = raw.get("metadata", {})
    _scan_metadata(shown, None, metadata, diagnostics)
    return Notebook(shown, digest, cells, metadata, diagnostics, Path(shown).stem)


def _scan_secrets(shown: str, number: int, source: str, outputs: object, diagnostics: list[Diagnostic]) -> None:
    for kind, line in secrets.scan(source):
        msg = (
            f"this looks like {kind}: never commit credentials; read them from the environment "
            "or a Kubernetes secret (secret:NAME:KEY:ENV)"
        )
        diagnostics.append(error(shown, msg, "NB060", cell=number, line=line))
    for output in outputs if isinstance(outputs, list) else []:
        for kind, _ in secrets.scan(secrets.output_text(output)):
            msg = f"the cell's output shows {kind}: clear the outputs (e.g. with nbstripout) and rotate it"
            diagnostics.append(error(shown, msg, "NB061", cell=number))
            return


def _scan_metadata(shown: str, number: int | None, metadata: object, diagnostics: list[Diagnostic]) -> None:
    """Tags (image:, label:, annotation: values ...) and metadata (a pipeline_description ...) are scanned too."""
    if not metadata:
        return
    for kind, _ in secrets.scan(json.dumps(metadata, ensure_ascii=False)):
        where = "the cell's tags or metadata hold" if number else "the notebook metadata holds"
        msg = f"{where} {kind}: never commit credentials; use secret:NAME:KEY:ENV or the environment"
        diagnostics.append(error(shown, msg, "NB060", cell=number))
        return


def shown_tag(tag: str) -> str:
    """A tag as messages show it: quoted, or withheld when it looks like a credential."""
    return "(a value that looks like a credential: not shown)" if secrets.looks_secret(tag) else repr(tag)


def content_hash(raw: dict[str, Any]) -> str:
    """sha256 of what the pipeline depends on: cell types, sources, tags and nb2kfp/Kale metadata.
    Outputs, execution counts, markdown cells and other metadata do not count, so re-running a notebook
    or editing its prose changes nothing."""
    cells: list[object] = []
    for cell in raw.get("cells", []):
        if not isinstance(cell, dict):
            cells.append(None)
            continue
        if cell.get("cell_type") == "markdown":
            continue  # neither its text nor its position reaches the spec (steps number their own cells)
        cell_meta = cell.get("metadata")
        cell_meta = cell_meta if isinstance(cell_meta, dict) else {}
        cells.append([cell.get("cell_type"), cell.get("source"), cell_meta.get("tags"), cell_meta.get("notebook_path")])
    meta = raw.get("metadata")
    kale = meta.get("kubeflow_notebook") if isinstance(meta, dict) else None
    doc = {"cells": cells, "kubeflow_notebook": kale, "nbformat": raw.get("nbformat")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def hash_file(path: str | Path) -> str | None:
    """content_hash of a notebook file, or None when it is not readable JSON (the slow path reports why)."""
    try:
        raw = json.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return content_hash(raw) if isinstance(raw, dict) else None


def _load_json(shown: str, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotebookError([error(shown, f"not a notebook: not UTF-8 text ({exc.reason})", "NB002")]) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not a notebook: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise NotebookError([error(shown, msg, "NB002")]) from None
    except RecursionError:
        raise NotebookError([error(shown, "not a notebook: JSON nested too deeply", "NB002")]) from None
    if not isinstance(raw, dict) or "cells" not in raw or not isinstance(raw.get("cells"), list):
        raise NotebookError([error(shown, "not a notebook: no list of cells at the top level", "NB002")])
    return raw


def _validate(shown: str, raw: dict[str, Any]) -> None:
    """Check the structure nb2kfp relies on, with nbformat's schema as the judge on failure (frontend/nbschema)."""
    if raw.get("nbformat") != 4:
        found = raw.get("nbformat")
        raise NotebookError([error(shown, f"unsupported notebook format {found!r}: nbformat 4 is required", "NB002")])
    if not isinstance(raw.get("metadata", {}), dict):
        raise _invalid(shown, raw, "invalid notebook: the notebook's metadata must be an object")
    for number, cell in enumerate(raw["cells"], start=1):
        problem = _cell_problem(cell) or (_text_problem(cell) if isinstance(cell, dict) else None)
        if problem:
            raise _invalid(shown, raw, f"invalid notebook: {problem}", number)
    problem = _text_problem(raw.get("metadata", {}))
    if problem:
        raise _invalid(shown, raw, f"invalid notebook metadata: {problem}")


def _invalid(shown: str, raw: dict[str, Any], message: str, cell: int | None = None) -> NotebookError:
    finding = nbschema.explain(raw, cell)
    return NotebookError([error(shown, message + (f" (nbformat: {finding})" if finding else ""), "NB002", cell=cell)])


def _text_problem(value: object) -> str | None:
    """Every string (and key) in ``value`` must be UTF-8 text: JSON's \\ud800-style escapes can smuggle in lone
    surrogates, which no spec, file or terminal can hold."""
    if any(isinstance(item, str) and not _is_utf8(item) for item in json_leaves(value)):
        return "a string holds a lone surrogate (\\ud800-\\udfff), which is not UTF-8 text"
    return None


def json_leaves(value: object) -> Iterator[object]:
    """Every key and non-container value in a JSON-like value, walked without recursion (any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            yield item


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cell_problem(cell: object) -> str | None:
    if not isinstance(cell, dict):
        return "a cell is not an object"
    if cell.get("cell_type") not in ("code", "markdown", "raw"):
        return f"unknown cell_type {cell.get('cell_type')!r}"
    source = cell.get("source", "")
    if not (isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source))):
        return "cell source must be a string or a list of strings"
    metadata = cell.get("metadata", {})
    if not isinstance(metadata, dict):
        return "cell metadata must be an object"
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "cell tags must be a list of strings"
    return None


def parse_step_defaults(shown: str, entries: object, diagnostics: list[Diagnostic]) -> StepOptions:
    """Parse Kale's ``kubeflow_notebook.steps_defaults`` (a list of tags, or a dict Kale writes)."""
    options = StepOptions()
    if isinstance(entries, dict):
        entries = [f"{k}:{v}" for k, v in entries.items() if isinstance(v, str)]
    if not isinstance(entries, list):
        return options
    for tag in entries:
        if not isinstance(tag, str) or not _option_tag(tag, options):
            msg = f"kubeflow_notebook.steps_defaults: unsupported entry {shown_tag(str(tag))}"
            diagnostics.append(error(shown, msg, "NB010"))
    return options


def _toleration(m: re.Match[str], o: StepOptions) -> None:
    key, value, effect = m.group(1), m.group(2) or "", m.group(3)
    o.tolerations[key] = ("Equal" if value else "Exists", value, effect)


def _label(m: re.Match[str], o: StepOptions) -> None:
    (o.labels if m.group(1) == "label" else o.annotations)[m.group(2)] = m.group(3)


@dataclass(frozen=True)
class OptionTag:
    """A step option tag: its form as help and messages show it, its grammar, and what it sets."""

    form: str
    pattern: re.Pattern[str]
    apply: Callable[[re.Match[str], StepOptions], None]


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
# The one table of step option tags: parsing, the unknown-tag hint and NB013 read it.
OPTION_TAGS: tuple[OptionTag, ...] = (
    OptionTag(  # the reference is checked on the IR (options.check_images)
        "image:REF", re.compile(r"^image:(.+)$", re.DOTALL), lambda m, o: setattr(o, "image", m.group(1))
    ),
    OptionTag(
        "limit:RESOURCE:AMOUNT",
        re.compile(r"^limit:([_a-z\-./]+):([_a-zA-Z0-9.]+)$"),
        lambda m, o: o.limits.__setitem__(m.group(1), m.group(2)),
    ),
    OptionTag(
        "request:RESOURCE:AMOUNT",
        re.compile(r"^request:([_a-z\-./]+):([_a-zA-Z0-9.]+)$"),
        lambda m, o: o.requests.__setitem__(m.group(1), m.group(2)),
    ),
    OptionTag(
        "cache:enabled|disabled",
        re.compile(r"^cache:(enabled|disabled)$"),
        lambda m, o: setattr(o, "caching", m.group(1) == "enabled"),
    ),
    OptionTag("label:K:V", re.compile(rf"^(label):({_K8S_KEY}):(.*)$"), _label),
    OptionTag("annotation:K:V", re.compile(rf"^(annotation):({_K8S_KEY}):(.*)$"), _label),
    OptionTag(
        "secret:NAME:KEY:ENV",
        re.compile(r"^secret:([a-z0-9]([-a-z0-9.]*[a-z0-9])?):([-._a-zA-Z0-9]+):([A-Za-z_][A-Za-z0-9_]*)$"),
        lambda m, o: o.secrets.__setitem__(m.group(4), (m.group(1), m.group(3))),
    ),
    OptionTag(
        "node:KEY:VALUE",
        re.compile(rf"^node:({_K8S_KEY}):([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$"),
        lambda m, o: o.node_selector.__setitem__(m.group(1), m.group(2)),
    ),
    OptionTag(
        "toleration:KEY[:VALUE]:EFFECT",
        re.compile(rf"^toleration:({_K8S_KEY}):(?:([-A-Za-z0-9_.]+):)?(NoSchedule|PreferNoSchedule|NoExecute)$"),
        _toleration,
    ),
    OptionTag("retry:N", re.compile(r"^retry:([0-9]{1,2})$"), lambda m, o: setattr(o, "retries", int(m.group(1)))),
    OptionTag(
        "timeout:SECONDS[s|m|h]",
        re.compile(r"^timeout:([1-9][0-9]{0,6})(s|m|h|)$"),
        lambda m, o: setattr(o, "timeout", int(m.group(1)) * _UNITS[m.group(2)]),
    ),
    OptionTag(
        "report:enabled|disabled",
        re.compile(r"^report:(enabled|disabled)$"),
        lambda m, o: setattr(o, "report", m.group(1) == "enabled"),
    ),
)
# The tags that shape the pipeline rather than set a step's options (parsed in _parse_tags)
_STRUCTURE_FORMS = (
    "step:NAME",
    "prev:NAME",
    "model:VARIABLE",
    "reference:VARIABLE",
    "notebook:PATH",
    "component:NAME[@VERSION]",
)


def _option_tag(tag: str, options: StepOptions) -> bool:
    """Apply a step option tag; False if ``tag`` is not one."""
    for option in OPTION_TAGS:
        if m := option.pattern.fullmatch(tag):
            option.apply(m, options)
            return True
    return False


def _parse_tags(
    shown: str, cell: Cell, tags: list[str], metadata: dict[str, Any], diagnostics: list[Diagnostic]
) -> None:
    special = [t for t in tags if t in _SPECIAL]
    if special:
        _special_cell(shown, cell, special, tags, diagnostics)
        return
    for tag in tags:
        known = _structure_tag(tag, shown, cell, metadata, diagnostics) or _option_tag(tag, cell.options)
        if not known and not is_foreign_tag(tag):
            diagnostics.append(error(shown, _unknown_tag_message(tag), "NB010", cell=cell.index))
    if cell.step is None and cell.role == "code":
        _no_step(shown, cell, diagnostics)


def _special_cell(shown: str, cell: Cell, special: list[str], tags: list[str], diagnostics: list[Diagnostic]) -> None:
    """A cell tagged with one of :data:`_SPECIAL` takes its role; its other tags are ignored (NB011)."""
    cell.role = _SPECIAL[special[0]]  # type: ignore[assignment]
    others = [t for t in tags if t not in special and not is_foreign_tag(t)]
    if others or len(special) > 1:
        ignored = ", ".join(shown_tag(t) for t in special[1:] + others)
        msg = f"cell is tagged {special[0]}; its other tags are ignored: {ignored}"
        diagnostics.append(warning(shown, msg, "NB011", cell=cell.index))


def _structure_tag(tag: str, shown: str, cell: Cell, metadata: dict[str, Any], diagnostics: list[Diagnostic]) -> bool:
    """Apply a tag that shapes the pipeline (:data:`_STRUCTURE_FORMS`); False if ``tag`` is not one."""
    if m := _STEP_RE.fullmatch(tag):
        if m.group(1) is not None:  # `step:` with no name: an untagged cell (Kale 2.3)
            _name_step(shown, cell, m.group(1), diagnostics)
    elif m := _PREV_RE.fullmatch(tag):
        _add_once(cell.prev, m.group(1))
    elif m := _MODEL_RE.fullmatch(tag):
        _add_once(cell.models, m.group(1))
    elif m := _REFERENCE_RE.fullmatch(tag):
        _add_once(cell.references, m.group(1))
    elif m := _NOTEBOOK_RE.fullmatch(tag):
        cell.role = "notebook"
        cell.notebook_ref = str(metadata.get("notebook_path") or m.group(1))
    elif m := _COMPONENT_RE.fullmatch(tag):
        cell.role = "component"
        cell.component_ref = m.group(1)
    else:
        return False
    return True


def _name_step(shown: str, cell: Cell, name: str, diagnostics: list[Diagnostic]) -> None:
    if cell.step is not None and cell.step != name:
        msg = f"cell has two step names ({cell.step}, {name}); a cell belongs to one step"
        diagnostics.append(error(shown, msg, "NB012", cell=cell.index))
    cell.step = name


def _add_once(names: list[str], name: str) -> None:
    if name not in names:
        names.append(name)


def _no_step(shown: str, cell: Cell, diagnostics: list[Diagnostic]) -> None:
    """A code cell with no step name: the tags that need one are errors (NB013)."""
    if cell.prev or cell.models or cell.references:
        msg = "prev:, model: and reference: tags need a step:NAME tag on the same cell"
        diagnostics.append(error(shown, msg, "NB013", cell=cell.index))
    if cell.options != StepOptions():
        forms = ", ".join(t.form.split(":", 1)[0] + ":" for t in OPTION_TAGS)
        msg = f"step option tags ({forms}) need a step:NAME tag on the same cell"
        diagnostics.append(error(shown, msg, "NB013", cell=cell.index))


# each known tag as its help shows it, by what it starts with
_KNOWN_TAGS = {
    **{name: name for name in _SPECIAL},
    **{form.split(":", 1)[0] + ":": form for form in (*_STRUCTURE_FORMS, *(t.form for t in OPTION_TAGS))},
}


def _unknown_tag_message(tag: str) -> str:
    if m := re.fullmatch(r"(limit|request):([_a-z\-./]+):?", tag):
        return f"{tag}: the amount is missing ({m.group(1)}:{m.group(2)}:AMOUNT, e.g. {m.group(1)}:cpu:2)"
    if tag.startswith("step:") or tag.startswith("prev:"):
        return (
            f"unknown tag {shown_tag(tag)}: a step name is letters, digits, '_' and '-', starting with a letter or '_'"
        )
    head = tag.split(":", 1)[0] + (":" if ":" in tag else "")
    close = difflib.get_close_matches(head, list(_KNOWN_TAGS), n=3, cutoff=0.0)
    return f"unknown tag {shown_tag(tag)} (nearest known tags: {', '.join(_KNOWN_TAGS[c] for c in close)})"
