"""Run the real-world notebooks in tests/corpus/ as pipelines and compare them with papermill.

Each notebook is tagged three ways -- ``chain`` (every non-empty code cell its own step), ``headings`` (a new step
at each markdown heading) and ``untagged`` (left as it is: a one-step pipeline) -- and run with
``nb2kfp run --local`` in a subprocess, as a user would. The same notebook runs twice with papermill (a real
kernel). A cell appended to every copy writes the final values of the notebook's int/float/bool/str variables
(numpy scalars included) to JSON: in papermill it takes them from ``globals()``; in the pipeline it is a step of
its own (in the tagged variants) that names each variable papermill saw, so every value crosses a step boundary
the way KFP hands values over. Variables whose values differ between the two papermill runs are dropped; the
rest are the notebook's comparable variables.

    python tests/corpus_harness.py [--variants chain,headings,untagged] [--only PATTERN] [--jobs 2]

prints, per variant, the share of comparable variables that came out equal, and the failure categories
(lint error, compile error, run failure by exception type, value mismatch). ``--check`` exits 1 when a
notebook/variant that ``tests/corpus/baseline.json`` records as passing no longer passes; ``--update-baseline``
rewrites that file from this run.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
BASELINE = CORPUS / "baseline.json"
VARIANTS = ("chain", "headings", "untagged")
DUMP_STEP = "corpus_values"
PAPERMILL_TIMEOUT = 900  # the machine-learning notebooks take minutes on a busy machine
RUN_TIMEOUT = 1200

# Encodes the values a dump cell sees; the first line picks the candidates (papermill: all globals).
_ENCODE = """
import builtins as _corpus_b
import json as _corpus_json
_corpus_out = {}
for _corpus_k, _corpus_v in _corpus_candidates.items():
    _corpus_t = _corpus_b.type(_corpus_v)
    if _corpus_k.startswith("_") or _corpus_b.isinstance(_corpus_v, _corpus_b.type):
        continue
    if _corpus_t.__module__ == "numpy" and _corpus_b.getattr(_corpus_v, "shape", None) == ():
        _corpus_kind = {"b": "bool", "i": "int", "u": "int", "f": "float"}.get(_corpus_v.dtype.kind)
    elif _corpus_b.isinstance(_corpus_v, _corpus_b.bool):
        _corpus_kind = "bool"
    elif _corpus_b.isinstance(_corpus_v, _corpus_b.int):
        _corpus_kind = "int"
    elif _corpus_b.isinstance(_corpus_v, _corpus_b.float):
        _corpus_kind = "float"
    elif _corpus_b.isinstance(_corpus_v, _corpus_b.str):
        _corpus_kind = "str"
    else:
        _corpus_kind = None
    if _corpus_kind == "bool":
        _corpus_out[_corpus_k] = ["bool", _corpus_b.bool(_corpus_v)]
    elif _corpus_kind == "int":
        _corpus_out[_corpus_k] = ["int", _corpus_b.str(_corpus_b.int(_corpus_v))]
    elif _corpus_kind == "float":
        _corpus_out[_corpus_k] = ["float", _corpus_b.repr(_corpus_b.float(_corpus_v))]
    elif _corpus_kind == "str":
        _corpus_out[_corpus_k] = ["str", _corpus_b.str(_corpus_v)]
"""
_WRITE = """with _corpus_b.open(_CORPUS_PATH, "w", encoding="utf-8") as _corpus_fh:
    _corpus_json.dump(_corpus_out, _corpus_fh)
"""
# In a container (--docker) no path of this machine exists: the values go to the step's log, on one line.
_MARK = "CORPUS-VALUES "
_PRINT = f"_corpus_b.print({_MARK!r} + _corpus_json.dumps(_corpus_out), flush=True)\n"
DOCKER = "+docker"  # a variant run with `nb2kfp run --docker` (each step in the notebook's step image)


# -- tagging ---------------------------------------------------------------------------------------
def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _is_heading(cell: dict[str, Any]) -> bool:
    if cell.get("cell_type") == "heading":
        return True
    if cell.get("cell_type") != "markdown":
        return False
    lines = _source(cell).splitlines()
    if any(re.match(r"^ {0,3}#{1,6}(\s|$)", line) for line in lines):
        return True
    return any(re.match(r"^ {0,3}(=+|-+)\s*$", b) and a.strip() for a, b in itertools.pairwise(lines))


def _add_tag(cell: dict[str, Any], tag: str) -> None:
    meta = cell.setdefault("metadata", {})
    meta["tags"] = [*meta.get("tags", []), tag]


def tag(nb: dict[str, Any], variant: str) -> dict[str, Any]:
    """A copy of ``nb`` with the step tags of ``variant`` (existing tags are kept)."""
    nb = json.loads(json.dumps(nb))
    cells = nb["cells"]
    pending = True  # the next non-empty code cell starts a step (headings)
    for index, cell in enumerate(cells, start=1):
        if variant == "headings" and _is_heading(cell):
            pending = True
        if cell.get("cell_type") != "code" or not _source(cell).strip():
            continue
        if variant == "chain":
            _add_tag(cell, f"step:c{index}")
        elif variant == "headings" and pending:
            _add_tag(cell, f"step:s{index}")
            pending = False
    return nb


def with_dump(
    nb: dict[str, Any], path: Path, names: list[str] | None, own_step: bool, printed: bool = False
) -> dict[str, Any]:
    """``nb`` plus a last cell writing its variables' values to ``path`` (``names``: exactly these, by name;
    ``printed``: to its output instead, on a line starting with :data:`_MARK`)."""
    nb = json.loads(json.dumps(nb))
    if names is None:
        pick = "_corpus_candidates = dict(globals())"
    else:
        pick = "_corpus_candidates = {" + ", ".join(f"{n!r}: {n}" for n in names) + "}"
    cell: dict[str, Any] = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": [f"step:{DUMP_STEP}"]} if own_step else {},
        "outputs": [],
        "source": pick + "\n" + _ENCODE + (_PRINT if printed else _WRITE.replace("_CORPUS_PATH", repr(str(path)))),
    }
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        cell["id"] = "corpus-values"
    nb["cells"].append(cell)
    return nb


def read_notebook(path: Path) -> dict[str, Any]:
    import nbformat

    node = nbformat.read(str(path), as_version=4)
    loaded: dict[str, Any] = json.loads(json.dumps(node))
    return loaded


# -- running ---------------------------------------------------------------------------------------
def _workdir(notebook: Path, root: Path, label: str) -> Path:
    """A fresh folder with the notebook's neighbours (helper modules, data files and folders), but no notebooks."""
    target = root / label
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in notebook.parent.iterdir():
        if item.is_file() and item.suffix != ".ipynb":
            shutil.copy(item, target / item.name)
        elif item.is_dir():
            shutil.copytree(item, target / item.name)
    return target


def _write(nb: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")


def _read_values(path: Path) -> dict[str, list[Any]] | None:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def run_papermill(notebook: Path, root: Path, label: str) -> tuple[dict[str, list[Any]] | None, str]:
    work = _workdir(notebook, root, label)
    values = work / "values.json"
    nb_path = work / notebook.name
    _write(with_dump(read_notebook(notebook), values, None, own_step=False), nb_path)
    cmd = [sys.executable, "-m", "papermill", str(nb_path), str(work / "executed.ipynb"), "-k", "python3"]
    cmd += ["--cwd", str(work), "--no-progress-bar"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PAPERMILL_TIMEOUT, cwd=work)
    except subprocess.TimeoutExpired:
        return None, f"papermill timed out after {PAPERMILL_TIMEOUT}s"
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if re.match(r"^\w*(Error|Exception)\b", line)]
        return None, "papermill failed: " + (errors[-1] if errors else proc.stderr.strip()[-300:])
    return _read_values(values), ""


@dataclass
class Outcome:
    notebook: str
    variant: str
    comparable: int = 0
    equal: int = 0
    category: str = ""  # "" when every comparable variable came out equal
    detail: str = ""
    mismatched: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.category and self.equal == self.comparable


def _same(a: list[Any], b: list[Any]) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "float":
        x, y = float(a[1]), float(b[1])
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0)
    return bool(a[1] == b[1])


def comparable(first: dict[str, list[Any]], second: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The variables both papermill runs ended with, with the same value."""
    return {k: v for k, v in first.items() if k in second and _same(v, second[k])}


def _failure(run_dir: Path, proc: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """(category, detail) of a failed ``nb2kfp run``."""
    log = run_dir / "run.log"
    if (run_dir / "result.json").exists() and log.exists():
        text = log.read_text(encoding="utf-8", errors="replace")
        failed = re.findall(r"\[nb2kfp\] step '([^']*)' failed(?: in ([^:]*))?: (.*)", text)
        if failed:
            step, where, message = failed[-1]
            kind = message.split(":", 1)[0] if re.match(r"^[\w.]+:", message) else message.split(" ", 1)[0]
            if re.match(r"cannot (save|hand) variable", message):
                kind = "value cannot cross steps"
            elif "did not set" in message:
                kind = "variable not set"
            return f"run failure: {kind}", f"step {step}{' ' + where if where else ''}: {message}"[:400]
        return "run failure: other", text.strip().splitlines()[-1][:400] if text.strip() else ""
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    if errors:
        code = re.search(r"\[(\w+)\]\s*$", errors[0])
        message = errors[0].split(": error: ", 1)[1]
        return f"lint error {code.group(1) if code else ''}".strip(), message[:400]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return "compile error", (lines[-1] if lines else f"exit {proc.returncode}")[:400]


def _printed_values(run_dir: Path) -> dict[str, list[Any]] | None:
    """The values a --docker run's dump step printed (its log is in the run's run.log)."""
    try:
        text = (run_dir / "run.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.findall(rf"{_MARK}(\{{.*\}})\s*$", text, flags=re.MULTILINE)
    return dict(json.loads(found[-1])) if found else None


def run_variant(notebook: Path, label: str, variant: str, expected: dict[str, list[Any]], root: Path) -> Outcome:
    """``variant`` (a tagging, ``+docker``: each step in the step image ``nb2kfp run --docker`` builds, on the base
    image in NB2KFP_TEST_BASE_IMAGE) against papermill's ``expected`` values."""
    outcome = Outcome(label, variant, comparable=len(expected))
    docker = variant.endswith(DOCKER)
    tagging = variant.removesuffix(DOCKER)
    work = _workdir(notebook, root, f"{label}/{variant}")
    values = work / "values.json"
    nb_path = work / notebook.name
    tagged = tag(read_notebook(notebook), tagging) if tagging != "untagged" else read_notebook(notebook)
    _write(with_dump(tagged, values, sorted(expected), tagging != "untagged", printed=docker), nb_path)
    run_dir = work / "run"
    how = "--local"
    if docker:
        (work / "nb2kfp.toml").write_text(f'image = "{os.environ["NB2KFP_TEST_BASE_IMAGE"]}"\n', encoding="utf-8")
        how = "--docker"
    cmd = [sys.executable, "-m", "nb2kfp", "run", str(nb_path), how, "--json", "--run-dir", str(run_dir)]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=work)
    except subprocess.TimeoutExpired:
        outcome.category, outcome.detail = "timeout", f"nb2kfp run took over {RUN_TIMEOUT}s"
        return outcome
    finally:
        outcome.seconds = round(time.monotonic() - started, 1)
    if proc.returncode != 0:
        outcome.category, outcome.detail = _failure(run_dir, proc)
        return outcome
    got = (_printed_values(run_dir) if docker else _read_values(values)) or {}
    outcome.mismatched = sorted(k for k, v in expected.items() if k not in got or not _same(v, got[k]))
    outcome.equal = len(expected) - len(outcome.mismatched)
    if outcome.mismatched:
        outcome.category = "value mismatch"
        outcome.detail = "; ".join(
            f"{k}: {expected[k][1]!r:.60} != {got[k][1] if k in got else 'missing'!r:.60}" for k in outcome.mismatched
        )[:400]
    return outcome


def notebooks(pattern: str | None = None) -> dict[str, Path]:
    found = {str(p.relative_to(CORPUS).with_suffix("")): p for p in sorted(CORPUS.glob("*/*.ipynb"))}
    patterns = [p for p in (pattern or "").split(",") if p]
    return {k: v for k, v in found.items() if not patterns or any(fnmatch.fnmatch(k, p) or p in k for p in patterns)}


def _digest(notebook: Path) -> str:
    h = hashlib.sha256()
    for item in sorted(notebook.parent.rglob("*")):
        if item == notebook or (item.is_file() and item.suffix != ".ipynb"):
            h.update(str(item.relative_to(notebook.parent)).encode() + b"\0" + item.read_bytes())
    return h.hexdigest()


class References:
    """Papermill's values per notebook, kept in a JSON file between runs (keyed by the notebook's and its
    neighbours' content): papermill's answer does not depend on nb2kfp, and it is half the corpus's run time."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {}
        if path and path.exists():
            self.data = dict(json.loads(path.read_text(encoding="utf-8")))

    def get(self, label: str, digest: str) -> dict[str, Any] | None:
        entry = self.data.get(label)
        return entry if entry and entry.get("digest") == digest else None

    def put(self, label: str, entry: dict[str, Any]) -> None:
        with self.lock:
            self.data[label] = entry
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
                tmp.replace(self.path)


def reference(notebook: Path, label: str, root: Path, refs: References) -> tuple[dict[str, list[Any]] | None, str]:
    """(comparable values, "") from two papermill runs, or (None, why the notebook cannot be used)."""
    digest = _digest(notebook)
    entry = refs.get(label, digest)
    if entry is None:
        first, why = run_papermill(notebook, root, f"{label}/papermill-1")
        second, why2 = run_papermill(notebook, root, f"{label}/papermill-2") if first is not None else (None, "")
        entry = {"digest": digest, "first": first, "second": second, "why": why or why2}
        refs.put(label, entry)
    if entry["first"] is None or entry["second"] is None:
        return None, entry["why"] or "papermill wrote no values"
    return comparable(entry["first"], entry["second"]), ""  # may be empty: the run must then still succeed


def run_corpus(
    selected: dict[str, Path],
    variants: list[str],
    root: Path,
    jobs: int,
    say: Any = print,
    refs: References | None = None,
) -> tuple[list[Outcome], dict[str, str]]:
    """Every selected notebook: papermill twice (or its cached values), then each variant."""
    unusable: dict[str, str] = {}
    refs = refs or References(None)

    def one(label: str) -> list[Outcome]:
        expected, why = reference(selected[label], label, root, refs)
        if expected is None:
            unusable[label] = why
            say(f"  unusable  {label}: {why[:160]}")
            return []
        outs = []
        for variant in variants:
            out = run_variant(selected[label], label, variant, expected, root)
            mark = "ok" if out.passed else f"{out.category}: {out.detail[:100]}"
            say(f"  {out.seconds:6.1f}s  {variant:<8}  {label}: {out.equal}/{out.comparable} {mark}")
            outs.append(out)
        return outs

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = [o for outs in pool.map(one, selected) for o in outs]
    return outcomes, unusable


# -- reporting -------------------------------------------------------------------------------------
def summary(outcomes: list[Outcome], unusable: dict[str, str], variants: list[str]) -> str:
    lines = []
    for variant in variants:
        mine = [o for o in outcomes if o.variant == variant]
        total = sum(o.comparable for o in mine)
        equal = sum(o.equal for o in mine)
        passed = sum(o.passed for o in mine)
        rate = 100.0 * equal / total if total else 0.0
        lines.append(
            f"{variant:<9} variables equal {equal}/{total} ({rate:.1f}%), notebooks passing {passed}/{len(mine)}"
            f" ({sum(not o.comparable for o in mine)} with no comparable variable: passing = ran through)"
        )
        for category, n in Counter(o.category for o in mine if not o.passed).most_common():
            lines.append(f"    {n:3d}  {category}")
    if len({o.notebook.split("/")[0] for o in outcomes}) > 1:
        lines.append("by source (variables equal, notebooks passing):")
        lines.extend(by_source(outcomes, variants))
    if unusable:
        lines.append(f"unusable (left out): {len(unusable)}")
        lines.extend(f"    {k}: {v[:140]}" for k, v in sorted(unusable.items()))
    return "\n".join(lines)


def by_source(outcomes: list[Outcome], variants: list[str]) -> list[str]:
    """One line per source folder: its share of equal variables and of passing notebooks, per variant."""
    lines = []
    for source in sorted({o.notebook.split("/")[0] for o in outcomes}):
        cells = []
        for variant in variants:
            mine = [o for o in outcomes if o.variant == variant and o.notebook.split("/")[0] == source]
            total, equal = sum(o.comparable for o in mine), sum(o.equal for o in mine)
            rate = f"{100.0 * equal / total:.1f}%" if total else "-"
            cells.append(f"{variant} {equal}/{total} {rate}, {sum(o.passed for o in mine)}/{len(mine)}")
        lines.append(f"    {source:<10} " + "; ".join(cells))
    return lines


def regressions(outcomes: list[Outcome], baseline: dict[str, dict[str, str]]) -> list[str]:
    """Notebook/variant pairs the baseline records as passing that did not pass now."""
    return [
        f"{o.notebook} [{o.variant}]: {o.category} {o.detail[:200]}"
        for o in outcomes
        if baseline.get(o.notebook, {}).get(o.variant) == "pass" and not o.passed
    ]


def load_baseline() -> dict[str, dict[str, str]]:
    return dict(json.loads(BASELINE.read_text(encoding="utf-8"))) if BASELINE.exists() else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--only", help="notebooks (package/stem) matching one of these comma-separated globs or substrings")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", type=Path, help="keep the run folders here (default: a temp folder, removed)")
    ap.add_argument("--json", type=Path, help="write every outcome here")
    ap.add_argument(
        "--references",
        type=Path,
        default=ROOT / ".nb2kfp" / "corpus-references.json",
        help="papermill's values, reused while a notebook is unchanged (default: %(default)s)",
    )
    ap.add_argument("--fresh", action="store_true", help="run papermill again for every notebook")
    ap.add_argument("--check", action="store_true", help="exit 1 when a notebook the baseline passes regresses")
    ap.add_argument("--update-baseline", action="store_true")
    ap.add_argument(
        "--docker",
        action="store_true",
        help="also run each variant with `nb2kfp run --docker` (VARIANT+docker; needs a Docker engine and the base "
        "image NB2KFP_TEST_BASE_IMAGE names: source /tmp/nb2kfp-services/env, or .ci/services.sh)",
    )
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if unknown := {v.removesuffix(DOCKER) for v in variants} - set(VARIANTS):
        ap.error(f"unknown variants: {', '.join(sorted(unknown))}")
    if args.docker:
        if not os.environ.get("NB2KFP_TEST_BASE_IMAGE"):
            ap.error("--docker: set NB2KFP_TEST_BASE_IMAGE to the step images' base image (a Python 3 image)")
        variants = [w for v in variants for w in (v, v + DOCKER)]
    selected = notebooks(args.only)
    if not selected:
        ap.error("no notebook matches")
    root = args.work or Path(tempfile.mkdtemp(prefix="nb2kfp-corpus-"))
    print(f"{len(selected)} notebooks x {', '.join(variants)} in {root}", flush=True)
    started = time.monotonic()
    try:
        refs = References(None if args.fresh else args.references)
        if args.fresh:
            refs.path = args.references
        outcomes, unusable = run_corpus(selected, variants, root, args.jobs, lambda s: print(s, flush=True), refs)
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{summary(outcomes, unusable, variants)}\n({time.monotonic() - started:.0f}s)")
    if args.json:
        args.json.write_text(
            json.dumps({"outcomes": [asdict(o) for o in outcomes], "unusable": unusable}, indent=1) + "\n",
            encoding="utf-8",
        )
    if args.update_baseline:
        base = load_baseline()
        for o in outcomes:
            base.setdefault(o.notebook, {})[o.variant] = "pass" if o.passed else "fail"
        BASELINE.write_text(json.dumps(base, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if args.check and (lost := regressions(outcomes, load_baseline())):
        print("regressions against tests/corpus/baseline.json:\n  " + "\n  ".join(lost))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
