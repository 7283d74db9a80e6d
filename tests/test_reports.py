"""Step reports (what each step's cells show) and the run report, checked in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clirun import Make
from conftest import require, run_local

CELLS = [
    (["imports"], "import pandas as pd\nimport matplotlib.pyplot as plt"),
    (["pipeline-parameters"], "n = 5\nfail = False"),
    (
        ["step:load"],
        "df = pd.DataFrame({'x': range(n), 'y': [i * i for i in range(n)]})\nprint('rows', len(df))\ndisplay(df)",
    ),
    (
        ["step:plot", "prev:load"],
        "fig, ax = plt.subplots()\nax.plot(df.x, df.y)\nax.set_title('squares')\nplt.show()\n"
        "plt.plot([1, 2], [2, 1])\ntotal = float(df.y.sum())",
    ),
    (["step:stats", "prev:load"], "mean = float(df.y.mean())\nif fail:\n    raise RuntimeError('no stats today')"),
    (["step:summary", "prev:plot", "prev:stats"], "score = total / (mean + 1)\nprint('score', score)"),
    (["pipeline-metrics"], "score"),
]
STEPS = ("load", "plot", "stats", "summary")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    require(browser is not None, "Chromium is not installed (Debian package chromium)")
    assert browser is not None
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def outputs(notebook: Path) -> list[dict[str, object]]:
    """The outputs of a step report, which must be a notebook nbformat accepts."""
    import nbformat

    nbformat.validate(nbformat.read(notebook, as_version=4))
    return [o for cell in json.loads(notebook.read_text())["cells"] for o in cell["outputs"]]


@pytest.mark.slow
def test_a_local_run_reports_every_step_and_the_run(make_nb: Make, tmp_path: Path) -> None:
    proc = run_local(make_nb(CELLS), "--run-name", "ok")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr  # pages are rendered during the run, warnings recorded there
    result = json.loads(proc.stdout)
    run_dir = tmp_path / ".nb2kfp" / "runs" / "ok"
    assert result["report"] == str(run_dir / "report.html")
    reports = run_dir / "reports"
    load = outputs(reports / "load.ipynb")
    assert {"output_type": "stream", "name": "stdout", "text": "rows 5\n"} in load
    assert any("text/html" in o.get("data", {}) and "<table" in o["data"]["text/html"] for o in load)  # type: ignore[operator,index]
    figures = [o for o in outputs(reports / "plot.ipynb") if "image/png" in o.get("data", {})]  # type: ignore[operator]
    assert len(figures) == 2, "plt.show() and the figure left open at the end of the cell"
    assert "data:image/png;base64," in (reports / "plot.html").read_text()
    assert "https://" not in (run_dir / "report.html").read_text().replace("http://www.w3.org", "")

    page = run_dir / "report.html"
    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    assert "CONSOLE" not in dom.stderr, [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert '<svg id="dag"' in dom.stdout
    for step in STEPS:
        assert f'<g class="step" data-step="{step}" data-status="succeeded">' in dom.stdout
        assert f'<tr class="step-row" data-step="{step}">' in dom.stdout
        assert f'href="reports/{step}.html"' in dom.stdout
    shot = tmp_path / "report.png"
    assert chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1000,800").returncode == 0
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000


def test_rendering_a_runs_pages_does_not_import_ipython(make_nb: Make) -> None:
    """The pages of a run cost it what nbconvert needs: nbconvert highlights a notebook that names no language with
    IPython's lexer, and the warm-up page named none, so every run with a report imported IPython (0.5 s of the 1.2 s
    a one-step run spent on its report). What the driver imported is read at its exit."""
    import importlib.util

    assert importlib.util.find_spec("IPython") is not None  # installed (papermill's kernel): the test can fail
    nb = make_nb(CELLS[:3])
    probe = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('imported IPython:', 'IPython' in sys.modules, file=sys.stderr))\n"
        f"sys.argv = ['nb2kfp', 'run', {str(nb)!r}, '--local', '--json']\n"
        "runpy.run_module('nb2kfp', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=nb.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["report"] is not None  # the pages were rendered
    assert "imported IPython: False" in proc.stderr.splitlines(), proc.stderr[-2000:]


@pytest.mark.slow
def test_a_failed_step_has_its_report_with_the_error(make_nb: Make, tmp_path: Path) -> None:
    proc = run_local(make_nb(CELLS), "--run-name", "bad", "-p", "fail=true")
    assert proc.returncode == 1
    run_dir = tmp_path / ".nb2kfp" / "runs" / "bad"
    errors = [o for o in outputs(run_dir / "reports" / "stats.ipynb") if o["output_type"] == "error"]
    assert [(e["ename"], e["evalue"]) for e in errors] == [("RuntimeError", "no stats today")]
    dom = chromium(tmp_path, run_dir / "report.html", "--dump-dom")
    assert "CONSOLE" not in dom.stderr
    assert 'data-step="stats" data-status="failed"' in dom.stdout
    assert 'data-step="summary" data-status="not run"' in dom.stdout
    assert "no stats today" in dom.stdout


@pytest.mark.slow
def test_no_report_when_asked(make_nb: Make, tmp_path: Path) -> None:
    proc = run_local(make_nb(CELLS[:3]), "--run-name", "quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / ".nb2kfp" / "runs" / "quiet"
    assert not (run_dir / "report.html").exists() and not (run_dir / "reports").exists()
    assert json.loads(proc.stdout)["report"] is None


def test_report_tag_asks_for_an_html_artifact_on_the_cluster(make_nb: Make, tmp_path: Path) -> None:
    nb = make_nb([(["step:a", "report:enabled"], "x = 1"), (["step:b", "prev:a"], "print(x)")])
    out = tmp_path / "spec.yaml"
    proc = subprocess.run([sys.executable, "-m", "nb2kfp", "compile", str(nb), "-o", str(out)], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    outputs = spec["components"]["comp-a"]["outputDefinitions"]["artifacts"]
    assert outputs["nb2kfp-report"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert "outputDefinitions" not in spec["components"]["comp-b"]

    def runtime_spec(task: str) -> dict[str, object]:
        args = spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]["args"]
        return dict(json.loads("".join(args[args.index("--spec") + 1 :])))

    assert runtime_spec("a")["report"] == {"key": "nb2kfp-report", "render": True}
    assert "report" not in runtime_spec("b")


@pytest.mark.slow
def test_step_pages_run_no_script_from_the_data_they_show(make_nb: Make, tmp_path: Path) -> None:
    """Issue 24, case 7: `display(df.style)` over a CSV someone else supplied put its cells' HTML into the step page
    unescaped; opened, the page ran their script. Every page nb2kfp writes forbids script (Content-Security-Policy);
    the tables still render."""
    hostile = (
        "<img src=x onerror=document.title='PWNED-img';console.log('PWNED-img')>"
        "<script>document.title='PWNED-script';console.log('PWNED-script')</script>"
    )
    (tmp_path / "data.csv").write_text(f'name,score\n"{hostile}",1\nplain,2\n')
    cells = [
        (["imports"], "import pandas as pd"),
        (["step:show"], "df = pd.read_csv('data.csv')\ndisplay(df.style.highlight_max(subset=['score']))\ndisplay(df)"),
    ]
    proc = run_local(make_nb(cells), "--run-name", "hostile")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / ".nb2kfp" / "runs" / "hostile"
    page = run_dir / "reports" / "show.html"
    assert "<script>document.title='PWNED-script'" in page.read_text()  # the styled frame holds it, unescaped
    for shown in (page, run_dir / "report.html"):
        dom = chromium(tmp_path, shown, "--dump-dom", "--virtual-time-budget=2000")
        assert dom.returncode == 0, dom.stderr
        assert not [line for line in dom.stderr.splitlines() if '"PWNED' in line], dom.stderr  # console.log markers
        title = dom.stdout.split("<title>", 1)[1].split("</title>", 1)[0]
        assert "PWNED" not in title, title
    assert dom.stdout.count("<table") >= 1  # report.html's timeline
    dom = chromium(tmp_path, page, "--dump-dom", "--virtual-time-budget=2000")
    assert dom.stdout.count("<table") == 2 and "<th" in dom.stdout and ">plain</td>" in dom.stdout  # both frames


def test_the_policy_comes_before_anything_a_page_holds() -> None:
    """A page rendered in a step (its HTML artifact) may come from someone else: the policy goes first, before a
    script they put ahead of the head."""
    from nb2kfp.runtime.step import REPORT_POLICY, with_policy

    meta = f'<meta http-equiv="Content-Security-Policy" content="{REPORT_POLICY}">'
    assert (
        with_policy("<!DOCTYPE html>\n<script>x()</script><head>")
        == f"<!DOCTYPE html>{meta}\n<script>x()</script><head>"
    )
    assert with_policy("<script>x()</script>") == f"{meta}<script>x()</script>"
    assert "script-src" not in REPORT_POLICY and "default-src 'none'" in REPORT_POLICY  # no script at all
