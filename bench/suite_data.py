"""4. Data passing: step ``make`` builds a ``--data-mb`` MiB value, step ``use`` reads it and sums it.

The notebooks (:func:`notebooks.data_passing`) print wall-clock markers: ``make_done`` (value built, end of
the step's code), ``make_exit`` (process exit, after the runtime saved the value), ``use_start`` (the next
step's code starts: after process start, imports and loading the value). The handoff is
``use_start - make_done``; the same pipeline with a 1 MiB value gives the fixed part (process start, imports,
kfp.local), so the data costs ``handoff(big) - handoff(tiny)``, and throughput = size / that. The peer is
``dd``: write the same size with ``conv=fdatasync`` into the run folder's file system, then read it back after
dropping the page cache (when this user may), and once more from the cache.
"""

from __future__ import annotations

import os
import re
import shutil
from functools import partial
from pathlib import Path

import notebooks as gen
from context import Case, Ctx, interleave, log
from measure import median
from report import Row, Target

TIMEOUT = 1200.0
SECTION = "4. data passing (nb2kfp only; dd is the reference, medians)"
TINY_MB = 1
_MARK = re.compile(r"BENCH (\w+) ([\d.]+)")


def markers(run_dir: Path) -> dict[str, float]:
    log_file = run_dir / "run.log"
    text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
    return {k: float(v) for k, v in _MARK.findall(text)}


def drop_page_cache() -> str | None:
    """Drop the page cache; None when done, else why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as fh:
            fh.write("3\n")
    except OSError as exc:
        return f"cannot drop the page cache ({exc.strerror}): dd's read may come from memory"
    return None


def run_suite(ctx: Ctx) -> None:
    res = ctx.results
    base = ctx.folder("data", fresh=True)
    size = ctx.data_mb
    nbs = {
        kind: gen.write(base / kind / f"data_{kind}.ipynb", gen.data_passing(kind, size))
        for kind in ("pandas", "numpy")
    }
    found: dict[str, list[dict[str, float]]] = {}
    failures: dict[str, list[str]] = {}
    dd: dict[str, list[float]] = {"write": [], "read cold": [], "read cached": []}
    cache_note: list[str] = []

    def dd_round(rep: int) -> None:
        target = base / "dd.bin"
        w = ctx.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={size}", "conv=fdatasync"], TIMEOUT)
        why = drop_page_cache()
        if why and why not in cache_note:
            cache_note.append(why)
        r = ctx.run(["dd", f"if={target}", "of=/dev/null", "bs=1M"], TIMEOUT)
        rc = ctx.run(["dd", f"if={target}", "of=/dev/null", "bs=1M"], TIMEOUT)
        for key, s in (("write", w), ("read cold", r), ("read cached", rc)):
            res.sample("data", f"dd {key}", "dd", s, rep, mib=size)
            if s.ok and rep >= 0:
                dd[key].append(s.seconds)
            elif not s.ok:
                log(f"data: dd {key} failed: {s.failure()}")
        target.unlink(missing_ok=True)

    def pipeline(kind: str, mib: int, rep: int) -> None:
        nb = nbs[kind]
        run_dir = nb.parent / f"run-{mib}-{rep}"
        argv = [*ctx.nb2kfp, "run", nb.name, "--local", "--no-cache", "--json", "--run-dir", str(run_dir)]
        argv += ["-p", f"data_mb={mib}"]
        s = ctx.run(argv, TIMEOUT, nb.parent)
        marks = markers(run_dir)
        res.sample("data", f"{kind} {mib} MiB", "nb2kfp", s, rep, markers=marks)
        if not s.ok:
            log(f"data: {kind} {mib} MiB run failed: {s.failure()}")
            failures.setdefault(kind, []).append(f"{mib} MiB: {s.failure()}")
        elif rep >= 0:
            found.setdefault(f"{kind} {mib}", []).append({**marks, "seconds": s.seconds, "tree_maxrss_kb": s.maxrss_kb})
        shutil.rmtree(run_dir, ignore_errors=True)

    cases: list[Case] = [dd_round]
    for kind in nbs:
        cases.append(partial(pipeline, kind, size))
        cases.append(partial(pipeline, kind, TINY_MB))
    log(f"data: {ctx.reps} repetitions of dd and {len(nbs)} pipelines with {size} MiB and {TINY_MB} MiB values")
    pipeline("numpy", TINY_MB, -1)  # warm-up
    interleave(ctx.reps, cases)

    t_write, t_cold, t_cached = (median(dd[k]) for k in ("write", "read cold", "read cached"))
    dd_rate = size / (t_write + t_cold) if t_write and t_cold else None
    note = f"dd: {size} MiB, write with conv=fdatasync then read, MiB / (t_write + t_read)."
    if cache_note:
        note += " " + " ".join(cache_note)
    res.add(Row(SECTION, "dd write+read (cold), the 100% mark", "MiB/s", dd_rate, note=note))
    res.add(Row(SECTION, "dd write (fdatasync)", "MiB/s", size / t_write if t_write else None))
    res.add(Row(SECTION, "dd read, page cache dropped", "MiB/s", size / t_cold if t_cold else None))
    res.add(Row(SECTION, "dd read, from page cache", "MiB/s", size / t_cached if t_cached else None))
    details = []
    for kind in nbs:
        big, tiny = found.get(f"{kind} {size}", []), found.get(f"{kind} {TINY_MB}", [])
        d = _derive(big, tiny, size)
        details.append({"value": f"{kind}, {size} MiB", **{k: _fmt(v) for k, v in d.items()}})
        rate = d["handoff MiB/s"]
        pct = 100 * rate / dd_rate if rate is not None and dd_rate else None
        failed = failures.get(kind, [])
        note = f"{len(failed)} {kind} runs failed, e.g. {failed[0]}" if failed else ""
        res.add(Row(SECTION, f"{kind} {size} MiB: save+load throughput", "MiB/s", rate, note=note))
        res.add(Row(SECTION, f"{kind}: throughput vs dd write+read", "%", pct, target=Target("nb2kfp", ">=", 50, "%")))
        for step in ("make", "use"):
            peak = d[f"{step} peak MiB"]
            res.add(
                Row(SECTION, f"{kind}: peak RSS of step '{step}' / value size", "x",
                    peak / size if peak is not None else None, target=Target("nb2kfp", "<=", 2.0, "x"))
            )  # fmt: skip
    res.tables[f"data passing details ({size} MiB value, medians; seconds are wall clock between markers)"] = details


def _m(values: list[float]) -> float | None:
    return median(values) if values else None


def _derive(big: list[dict[str, float]], tiny: list[dict[str, float]], size: int) -> dict[str, float | None]:
    def span(runs: list[dict[str, float]], a: str, b: str) -> float | None:
        return _m([r[b] - r[a] for r in runs if a in r and b in r])

    out: dict[str, float | None] = {}
    for name, a, b in (("save", "make_done", "make_exit"), ("load", "make_exit", "use_start")):
        hb, ht = span(big, a, b), span(tiny, a, b)
        out[f"{name} s"] = hb
        out[f"{name} s (tiny)"] = ht
    hb, ht = span(big, "make_done", "use_start"), span(tiny, "make_done", "use_start")
    extra = hb - ht if hb is not None and ht is not None else None
    out["handoff s"] = hb
    out["handoff s (tiny)"] = ht
    out["handoff MiB/s"] = (size - TINY_MB) / extra if extra and extra > 0 else None
    out["run s"] = _m([r["seconds"] for r in big])
    for step in ("make", "use"):
        out[f"{step} peak MiB"] = _m([r[f"{step}_maxrss_kb"] / 1024 for r in big if f"{step}_maxrss_kb" in r])
    out["tree peak MiB"] = _m([r["tree_maxrss_kb"] / 1024 for r in big])
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}" if v < 100 else f"{v:.0f}"
