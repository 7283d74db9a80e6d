"""Results: rows of the summary table, extra tables (the compile curve), raw samples, and their JSON file."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from measure import Sample

_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


@dataclass
class Target:
    """``what`` is "nb2kfp" (the nb2kfp figure) or "ratio" (nb2kfp / Kale); ``op`` is "<=" or ">="."""

    what: str
    op: str
    limit: float
    unit: str = ""

    def text(self) -> str:
        return f"{'ratio' if self.what == 'ratio' else ''} {self.op} {self.limit:g}{self.unit}".strip()


@dataclass
class Row:
    section: str
    metric: str
    unit: str
    nb2kfp: float | None
    kale: float | None = None
    target: Target | None = None
    note: str = ""  # shown under the table (why Kale is missing, how a figure was derived)
    kale_note: str = ""  # shown in the Kale column when there is no Kale figure

    @property
    def ratio(self) -> float | None:
        if self.nb2kfp is None or self.kale is None or self.kale == 0:
            return None
        return self.nb2kfp / self.kale

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.ratio if self.target.what == "ratio" else self.nb2kfp
        if value is None:
            return None
        return _OPS[self.target.op](value, self.target.limit)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        data["target"] = self.target.text() if self.target else None
        return data


@dataclass
class Results:
    meta: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def sample(self, suite: str, case: str, tool: str, s: Sample, rep: int, **extra: Any) -> None:
        self.samples.append({"suite": suite, "case": case, "tool": tool, "rep": rep, **s.as_json(), **extra})

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def write_json(self, path: Path) -> None:
        data = {
            "meta": self.meta,
            "rows": [r.as_json() for r in self.rows],
            "tables": self.tables,
            "notes": self.notes,
            "samples": self.samples,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"
    if unit in ("MiB/s", "MiB"):
        return f"{value:.0f} {unit}"
    if unit == "%":
        return f"{value:.0f}%"
    if unit == "x":
        return f"{value:.3f}x" if value < 1 else f"{value:.2f}x"
    return f"{value:.3g}{(' ' + unit) if unit else ''}"


def _grid(header: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)]


def render(results: Results) -> str:
    out: list[str] = []
    footnotes: list[str] = []
    sections = list(dict.fromkeys(r.section for r in results.rows))
    for section in sections:
        body = []
        for row in (r for r in results.rows if r.section == section):
            kale = fmt(row.kale, row.unit) if row.kale is not None else (row.kale_note or "-")
            note_mark = ""
            if row.note:
                if row.note not in footnotes:
                    footnotes.append(row.note)
                note_mark = f" [{footnotes.index(row.note) + 1}]"
            met = {True: "yes", False: "NO", None: "-"}[row.met]
            body.append(
                [
                    row.metric + note_mark,
                    fmt(row.nb2kfp, row.unit),
                    kale,
                    fmt(row.ratio, "x") if row.ratio is not None else "-",
                    row.target.text() if row.target else "-",
                    met,
                ]
            )
        out.append(f"\n== {section}")
        out.extend(_grid(["metric", "nb2kfp", "Kale", "ratio", "target", "met?"], body, {1, 2, 3}))
    for name, table in results.tables.items():
        if not table:
            continue
        header = list(table[0])
        out.append(f"\n== {name}")
        out.extend(_grid(header, [[str(r[h]) for h in header] for r in table], set(range(1, len(header)))))
    if footnotes or results.notes:
        out.append("\nnotes:")
        out.extend(f"  [{i}] {n}" for i, n in enumerate(footnotes, 1))
        out.extend(f"  - {n}" for n in results.notes)
    return "\n".join(out) + "\n"
