"""lint reports every error in one pass, sums up, and can fail on warnings; messages name the fix."""

from __future__ import annotations

from pathlib import Path

from clirun import Make, nb2kfp, nb2kfp_here


def test_a_prev_typo_does_not_hide_an_undefined_name(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:load"], "x = 1"),
            (["step:train", "prev:lod"], "y = x + undefined_thing"),
            (["step:evaluate", "prev:train"], "print(y)"),
        ]
    )
    proc = nb2kfp_here("lint", str(nb))
    assert proc.returncode == 1
    assert "prev:lod names no step (did you mean prev:load?)" in proc.stdout
    assert "name 'undefined_thing' is not defined" in proc.stdout
    assert "name 'x'" not in proc.stdout, "the typo is read as its suggestion: x comes from load"
    assert proc.stdout.strip().splitlines()[-1] == "1 notebook, 2 errors, 0 warnings"


def test_summary_and_warnings_as_errors(make_nb: Make, tmp_path: Path) -> None:
    warned = make_nb([(["step:a"], "x = 1"), (["imports", "step:b"], "import os")], name="warned.ipynb")
    clean = make_nb([(["step:a"], "x = 1")], name="clean.ipynb")
    proc = nb2kfp_here("lint", str(warned), str(clean))
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "2 notebooks, 0 errors, 1 warning"
    for args in (["lint", "--warnings-as-errors", str(warned)], ["lint", str(warned), "--warnings-as-errors"]):
        assert nb2kfp_here(*args).returncode == 1
    assert nb2kfp_here("lint", "--warnings-as-errors", str(clean)).returncode == 0
    proc = nb2kfp_here("lint", "--format", "json", "--warnings-as-errors", str(clean))
    assert proc.returncode == 0 and proc.stdout.strip() == "[]"


def test_limit_without_amount_and_nearest_tags(make_nb: Make) -> None:
    nb = make_nb([(["step:a", "limit:cpu"], "x = 1"), (["step:b", "prev:a", "limt:cpu:2"], "print(x)")])
    out = nb2kfp_here("lint", str(nb)).stdout
    assert "limit:cpu: the amount is missing" in out
    unknown = next(line for line in out.splitlines() if "limt:cpu:2" in line)
    assert "limit:RESOURCE:AMOUNT" in unknown and "toleration" not in unknown and len(unknown) < 200, unknown


def test_one_step_reads_one_step(make_nb: Make) -> None:
    nb = make_nb([(["step:only"], "x = 1")])
    assert "(1 step)" in nb2kfp_here("graph", str(nb)).stdout


def test_compile_output_must_be_a_file_path_of_its_own(make_nb: Make, tmp_path: Path) -> None:
    nb = make_nb([(["step:a"], "x = 1")])
    before = nb.read_text()
    for target, says in (
        (str(nb), "is the notebook itself"),
        (str(tmp_path), "is a folder"),
        (str(nb / "out.yaml"), "is a file, not a folder"),
    ):
        proc = nb2kfp_here("compile", str(nb), "-o", target)
        assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert nb.read_text() == before


def test_kfp_local_warnings_become_one_line_each(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a", "limit:memory:1Gi", "image:registry.example/team/base:1"], "x = 1"),
            (["step:b", "prev:a", "limit:cpu:1"], "print(x)"),
        ]
    )
    proc = nb2kfp("run", str(nb), "--local", cwd=nb.parent)
    assert proc.returncode == 0, proc.stderr
    assert "UserWarning" not in proc.stderr and "RuntimeWarning" not in proc.stderr, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2, proc.stderr
    assert "cpu limit, memory limit (steps a, b)" in notes[0]
    assert "registry.example/team/base:1" in notes[1]
