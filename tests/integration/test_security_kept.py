"""Issue 24, case 2: a model image runs code on the host. `model serve --local` runs the serving container with the
host's network; kept step processes (local_run/kept.py) listened on abstract Unix sockets, which belong to the
network namespace, and checked only the peer's user id, which an image chooses. Here a container on the host's
network, running as this user's id, tries to hand every kept process it can find a command."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from nb2kfp.backends import step_runtime
from nb2kfp.local_run import kept
from nb2kfp.runtime.step import RUNTIME_FILE

# What the model image runs: finds nb2kfp's kept processes in /proc/net/unix (the host's: same network), connects
# (an abstract name, or a path as it reads it) and sends a command, as a run does; prints what each one answered.
# Only this test's own (argv[1]: their setting's key): other users of the machine may keep processes too.
ATTACK = r"""
import json, socket, struct, sys
for line in open('/proc/net/unix').read().splitlines()[1:]:
    fields = line.split(None, 7)
    if len(fields) < 8 or sys.argv[1] not in fields[7] or fields[3] != '00010000':
        continue
    where = fields[7]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(20)
    try:
        conn.connect('\0' + where[1:] if where.startswith('@') else where)
        socket.send_fds(conn, [b'o'], [1])
        body = json.dumps({'args': ['--executor-input', '{}', '--spec', '{}'], 'env': {}, 'cwd': '/'}).encode()
        conn.sendall(struct.pack('!Q', len(body)) + body)
        print('ACCEPTED' if b'pid' in conn.makefile('rb').readline() else 'REFUSED silently', where, flush=True)
    except OSError as exc:
        print('REFUSED', type(exc).__name__, where, flush=True)
print('DONE', flush=True)
"""


def test_a_container_on_the_host_network_cannot_command_a_kept_process(
    engine: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("NB2KFP_WARM_KEEP", "30")
    setting = kept.key(["issue 24 case 2", str(tmp_path)])
    imports = {"prelude": ["import json"], "cell": []}
    kept.keep(setting, step_runtime.runtime_source(), RUNTIME_FILE, imports, dict(os.environ), str(tmp_path))
    try:
        deadline = time.monotonic() + 20
        while not kept.kept_for(setting, kept.kept()) and time.monotonic() < deadline:
            time.sleep(0.1)
        (name,) = kept.kept_for(setting, kept.kept())
        output = engine.containers.run(
            os.environ["NB2KFP_TEST_BASE_IMAGE"],
            ["python3", "-c", ATTACK, setting],
            network_mode="host",  # as model serve --local runs a model image
            user=str(os.getuid()),  # an image picks its user id: this user's, to pass a user-id check
            remove=True,
        ).decode()
        assert "DONE" in output, output
        assert name in output, output  # it found the kept process (the host's /proc/net/unix)...
        assert "ACCEPTED" not in output, output  # ...and could not hand it a command
        assert name in kept.kept()  # which still waits for this user's next run
    finally:
        kept.stop(kept.kept_for(setting, kept.kept()))  # this test's own (stop_all: every one of the user's)
