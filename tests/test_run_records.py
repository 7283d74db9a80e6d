"""What a local run leaves behind (result.json, --json), papermill's parameter habits, and `nb2kfp runs`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clirun import Make, nb2kfp, nb2kfp_here
from conftest import run_local

CELLS = [
    (["pipeline-parameters"], "rate = 0.5\nepochs = 2\nname = 'base'\nfail = False"),
    (["step:prepare"], "x = epochs * rate\nprint('prepared', name)"),
    (["step:train", "prev:prepare"], "if fail:\n    raise ValueError(f'bad rate {rate}')\naccuracy = x / 10"),
    (["pipeline-metrics"], "accuracy"),
]


@pytest.mark.slow
def test_a_run_records_everything(make_nb: Make, tmp_path: Path) -> None:
    nb = make_nb(CELLS)
    (tmp_path / "params.yaml").write_text("rate: 1\nname: from-file\n")
    proc = run_local(nb, "-f", "params.yaml", "-y", "epochs: 4", "-p", "name=cli", "--run-name", "first")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    run_dir = tmp_path / ".nb2kfp" / "runs" / "first"
    assert json.loads((run_dir / "result.json").read_text()) == printed
    assert printed["status"] == "succeeded" and printed["error"] is None
    assert printed["parameters"] == {"rate": 1.0, "epochs": 4, "name": "cli", "fail": False}
    assert isinstance(printed["parameters"]["rate"], float)
    assert printed["metrics"] == {"accuracy": 0.4}
    assert printed["steps"] == {"prepare": "succeeded", "train": "succeeded"}
    for step in ("prepare", "train"):
        detail = printed["step_details"][step]
        assert detail["status"] == "succeeded" and detail["start"].endswith("Z") and detail["seconds"] > 0
    assert printed["step_details"]["prepare"]["start"] < printed["step_details"]["train"]["start"]
    assert Path(printed["spec"]) == run_dir / "pipeline.yaml" and Path(printed["spec"]).is_file()
    assert printed["nb2kfp_version"] and printed["name"] == "first"
    again = run_local(nb, "--run-name", "first")
    assert again.returncode == 2 and "exists already" in again.stderr


@pytest.mark.slow
def test_a_failed_run_names_step_cell_and_message(make_nb: Make, tmp_path: Path) -> None:
    nb = make_nb(CELLS)
    proc = run_local(nb, "-p", "fail=true", "--run-name", "broken")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["status"] == "failed"
    assert result["error"] == {"step": "train", "cell": 3, "line": 2, "message": "ValueError: bad rate 0.5"}
    assert result["steps"] == {"prepare": "succeeded", "train": "failed"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-y", "rate: [1, 2]"], "parameter 'rate' is a float"),
        (["-y", "nope: 1"], "-y nope: the pipeline has no such parameter"),
        (["-y", "- 1"], "give a mapping"),
        (["-f", "missing.yaml"], "-f missing.yaml"),
        (["--run-name", "../escape"], "--run-name '../escape'"),
    ],
)
def test_bad_parameters_and_names_are_usage_errors(make_nb: Make, tmp_path: Path, args: list[str], says: str) -> None:
    nb = make_nb(CELLS)
    proc = run_local(nb, *args)
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / ".nb2kfp").exists()


@pytest.mark.slow
def test_runs_lists_shows_and_cleans(make_nb: Make, tmp_path: Path) -> None:
    nb = make_nb(CELLS)
    for name, extra in (("r1", []), ("r2", ["-p", "fail=true"]), ("r3", ["-p", "epochs=3"])):
        run_local(nb, "--run-name", name, *extra)
    listing = nb2kfp("runs", cwd=tmp_path)
    assert listing.returncode == 0
    table = listing.stdout.split("\nkept warm", 1)[0]  # then any step processes kept warm (this user's, any test's)
    rows = [line.split()[:2] for line in table.splitlines()[1:]]
    assert rows == [["r3", "succeeded"], ["r2", "failed"], ["r1", "succeeded"]], listing.stdout
    assert "epochs=3" in listing.stdout.splitlines()[1]
    shown = nb2kfp("runs", "show", "r2", cwd=tmp_path)
    assert shown.returncode == 0 and "error in step train, cell 3: ValueError: bad rate 0.5" in shown.stdout
    assert json.loads(nb2kfp("runs", "show", "r3", "--json", cwd=tmp_path).stdout)["parameters"]["epochs"] == 3
    missing = nb2kfp("runs", "show", "r9", cwd=tmp_path)
    assert missing.returncode == 2 and "no run 'r9'" in missing.stderr
    cleaned = nb2kfp("runs", "clean", "--keep", "1", cwd=tmp_path)
    assert cleaned.returncode == 0 and "removed 2 runs" in cleaned.stdout
    assert sorted(p.name for p in (tmp_path / ".nb2kfp" / "runs").iterdir()) == ["r3"]


def test_init_ignores_the_run_folders(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")
    proc = nb2kfp("init", "--yes", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / ".gitignore").read_text() == "*.pyc\n# nb2kfp's local runs and outputs\n.nb2kfp/\n"
    again = nb2kfp("init", "--yes", str(tmp_path), cwd=tmp_path)
    assert again.returncode == 0 and (tmp_path / ".gitignore").read_text().count(".nb2kfp/") == 1


def test_runs_clean_as_the_run_and_the_cache_message_print_it_works_and_removes_no_run(tmp_path: Path) -> None:
    """A run says "`nb2kfp runs clean` stops them" and a refused cache "`nb2kfp runs clean --cache`": both ended in
    "Missing option '--keep'" (exit 2). Without --keep no run folder goes."""
    runs = tmp_path / ".nb2kfp" / "runs"
    (runs / "first").mkdir(parents=True)
    (runs / "first" / "result.json").write_text(json.dumps({"status": "succeeded", "started": "2026-12-07T10:00:00"}))
    for args in (["runs", "clean"], ["runs", "clean", "--cache"]):
        proc = nb2kfp_here(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (runs / "first").is_dir()
    assert nb2kfp_here("runs", "clean", "--keep", "0", cwd=tmp_path).returncode == 0
    assert not (runs / "first").exists()
