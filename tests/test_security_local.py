"""Issue 24: what other users of the machine see of a local run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clirun import Make

MARKER = "nb2kfp-secret-4f1c9e"


def _descendants(root: int) -> set[int]:
    """The processes below ``root`` (its children, theirs, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in found]
        found.update(children)
        todo.extend(children)
    return found


def _command_lines(pids: set[int]) -> set[str]:
    """The command lines of ``pids`` as read now. A caller keeps the union of every read: a process that is ending
    (a zombie) reads as an empty command line, which must not replace what an earlier read saw (CI once failed so)."""
    lines = set()
    for pid in pids:
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if line:
            lines.add(line)
    return lines


@pytest.mark.slow
@pytest.mark.parametrize(("warm", "tags"), [("0", []), ("1", []), ("0", ["retry:1"])])
def test_no_step_process_has_a_parameter_on_its_command_line(
    make_nb: Make, tmp_path: Path, warm: str, tags: list[str]
) -> None:
    """Issue 24, case 9: `ps` showed every parameter (secrets from `-f` files too) in the executor input kfp.local
    put on a step's command line. Scans the processes this run started, while its step runs (with retry:N, the
    step's attempts are processes the runtime starts: their arguments travel in their environment)."""
    (tmp_path / "secret.yaml").write_text(f"token: {MARKER}\n")  # papermill-style -f file
    cells = [
        (["imports"], "import time"),
        (["pipeline-parameters"], "token = 'none'"),
        (["step:use", *tags], "time.sleep(2)\nn = len(token)"),
        (["pipeline-metrics"], "print(n)"),
    ]
    nb = make_nb(cells)
    run = subprocess.Popen(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--json", "--no-cache", "-f", "secret.yaml"],
        cwd=nb.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NB2KFP_WARM": warm},
    )
    seen: set[str] = set()
    while run.poll() is None:
        seen |= _command_lines(_descendants(run.pid))
        time.sleep(0.05)
    out, err = run.communicate()
    assert run.returncode == 0, err
    assert json.loads(out)["metrics"] == {"n": float(len(MARKER))}  # the step had the value
    # the step's process was seen: started afresh (python -c LAUNCHER), ahead (python -m nb2kfp.local_run.waiting), or
    # forked from the run's template of the module its imports start with (whose command line it has)
    step_process = ("-c # nb2kfp step", "-m nb2kfp.local_run.waiting use ", "-m nb2kfp.local_run.waiting time ")
    assert any(any(form in line for form in step_process) for line in seen), seen
    assert [line[:200] for line in seen if MARKER in line] == []
