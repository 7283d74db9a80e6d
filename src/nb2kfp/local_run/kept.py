"""Waiting step processes: a step's process that has imported its modules and waits on a Unix socket for a run to
hand it the step's command. One transport for the two roles (:mod:`waiting` is the process's program):

- **started ahead** (``ahead``; :mod:`ahead` decides which): a run starts the process of a step it knows will run
  while the steps before it still run, and hands it the command when kfp.local launches the step; the run's
  supervisor stops it when the run ends or dies, taken or not.
- **kept warm** (``kept``): after a run, a few of its steps (those that ran, latest in the notebook first: the ones
  people edit again) get a process that outlives the run: it waits up to ``NB2KFP_WARM_KEEP`` seconds (default
  600) for a run that launches the same step in the same setting, so the next run of an edited step finds its
  imports done. It is kept only for a run whose setting is the same, to the byte: this interpreter and its
  installed distributions, the runtime, the statements it imported, the step's environment and the driver's (less
  the run's own variables), the notebook's folder and the module names in it (not its data files).

Either way the run hands it the command, its output pipe and its environment over the socket, and it runs the step
as a fresh process would (one process per step, inputs read once launched). It never runs on what the disk no
longer holds: when a file its imports read changed since (an edited editable install, a matplotlibrc), or a folder
of ``sys.path`` changed (a module added), or its imports wrote a file, it refuses the command and ends, and the
step starts afresh. Its umask, limits, niceness, CPU affinity and groups are part of the setting
(ahead.process_setting). What its imports print is the step's first output. It reports its exit status from its
last exit handler, after the step's threads and handlers, and a run waits for it to be gone. A kept one ends
``NB2KFP_WARM_KEEP`` seconds after it started (plus 60 s if still importing), however often it is poked.

Safety: the socket is a file in a folder only the user can enter (:func:`folder`: 0700, the user's own, checked
as ssh checks its keys' folders; otherwise no process waits, and every step starts afresh): a process that cannot
enter that folder cannot connect to a waiting process or listen in its place, even one that shares this machine's
network (a model server run by ``model serve --local`` with the host's network, whatever user id its image runs
as). Abstract sockets, used before, belong to the network namespace, so such a container could reach them. Each
side also checks the other's user id (``SO_PEERCRED``) before it sends anything.
None is kept under CI (``CI`` set), with ``NB2KFP_WARM=0`` or ``NB2KFP_WARM_KEEP=0``; none is started ahead with
``NB2KFP_WARM=0``.

A kept one's cost is memory: none is kept while free memory (MemAvailable) is under ``NB2KFP_WARM_MIN_FREE`` MiB
(default a fifth of the machine's), and a user's kept processes hold at most ``NB2KFP_WARM_MEMORY`` MiB resident in
all (default 1024): a run keeps no more than fit at the size of those kept already (the oldest stop first), and
each checks both once its imports are done and every few seconds while it waits, and leaves when either is
exceeded. ``ps`` and ``nb2kfp runs`` name it (``python -m nb2kfp.local_run.waiting STEP PROJECT kept``); its
socket's name starts with its project's (:func:`project_key`), so ``nb2kfp runs clean`` stops this project's only
(``--all``: every one of the user's).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from nb2kfp.local_run import waiting

OFF_ENV, KEEP_ENV = "NB2KFP_WARM", "NB2KFP_WARM_KEEP"
DEFAULT_KEEP = 600
# Each kept process holds its imports' memory (~100-250 MB with pandas and scikit-learn)
KEEP_PER_RUN, KEEP_IN_ALL = 4, 8  # at most, after one run; of one user's, the oldest stopped first
MEMORY_ENV, DEFAULT_MEMORY_MB = "NB2KFP_WARM_MEMORY", 1024  # the most a user's kept processes hold in all (MiB)
MIN_FREE_ENV = "NB2KFP_WARM_MIN_FREE"  # none is kept while MemAvailable is under it (MiB; default a fifth of RAM)
_PREFIX = "warm-"  # the socket names, in folder()
_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_READY_SECONDS = 60  # how long a run waits for a kept process still importing (a fresh one would import too)


def enabled() -> bool:
    """Steps started ahead and kept warm at all (``NB2KFP_WARM=0``: neither)."""
    return os.environ.get(OFF_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def keep_seconds() -> int:
    """How long a kept process waits for the next run; 0: none are kept."""
    if os.environ.get("CI") or not enabled():
        return 0
    try:
        return max(0, int(os.environ.get(KEEP_ENV, str(DEFAULT_KEEP))))
    except ValueError:
        return DEFAULT_KEEP


def _megabytes(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, str(default))))
    except ValueError:
        return default


def budget_mb() -> int:
    """The most this user's kept processes may hold resident in all (``NB2KFP_WARM_MEMORY``, MiB)."""
    return _megabytes(MEMORY_ENV, DEFAULT_MEMORY_MB)


def min_free_mb() -> int:
    """Free memory (MemAvailable) under which no process is kept (``NB2KFP_WARM_MIN_FREE``, MiB)."""
    return _megabytes(MIN_FREE_ENV, waiting.memory()[1] // 5)


def low_memory() -> bool:
    return waiting.low_memory(min_free_mb())


def project_key(project: str) -> str:
    """What the socket names of the processes kept for the notebooks of ``project`` start with."""
    return f"{_PREFIX}{hashlib.sha256(project.encode()).hexdigest()[:8]}-"


def key(setting: list[Any], project: str = "") -> str:
    """What the socket names of a step's processes kept in ``setting`` for ``project`` start with (see the
    module's docstring)."""
    return project_key(project) + hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:32]


def kept_for(setting_key: str, names: list[str]) -> list[str]:
    """Of ``names`` (sockets), those of processes kept in the setting ``setting_key``, newest first."""
    return sorted((n for n in names if n.startswith(setting_key + "-")), key=_started, reverse=True)


def _started(name: str) -> int:
    try:
        return int(name.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        return 0


def make_room(count: int) -> int:
    """How many of ``count`` processes to keep now: none while free memory is low (:func:`low_memory`); else stop
    this user's oldest kept processes so that these stay within :data:`KEEP_IN_ALL` and, at the resident size of
    those kept now, within the memory budget (:func:`budget_mb`; each checks it again once its imports are done)."""
    if low_memory():
        return 0
    limit = KEEP_IN_ALL
    sizes = [p["rss_mb"] for p in waiting.processes()]
    if sizes:
        limit = min(limit, budget_mb() // max(1, sum(sizes) // len(sizes)))
    count = min(count, limit)
    names = sorted(kept(), key=_started)
    stop(names[: max(0, len(names) + count - limit)])
    return count


def folder() -> Path | None:
    """The folder of this user's kept processes' sockets (``$XDG_RUNTIME_DIR`` or the temporary folder, then
    ``nb2kfp-warm-UID``), made 0700; None when it is not a folder of the user's own that nobody else can enter
    (someone else made it first): then no process is kept."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(base) / f"nb2kfp-warm-{os.getuid()}"
    try:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        st = path.lstat()
    except OSError:
        return None
    private = stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077
    return path if private else None


def address(name: str) -> str:
    """The socket of the kept process ``name`` (a name :func:`kept` lists)."""
    where = folder()
    if where is None:
        raise FileNotFoundError("no private folder for kept processes")
    return str(where / name)


def kept() -> list[str]:
    """The socket names of this user's kept processes that listen (Linux lists bound sockets in /proc/net/unix);
    the files of processes gone without removing theirs (killed) are removed. The folder is read first: a process
    binding its name meanwhile is in /proc/net/unix by then, and a file still younger than a second (bound, its
    name not yet listed) stays, so that no process starting meanwhile loses its socket's file."""
    where = folder()
    if where is None:
        return []
    try:
        files = os.listdir(where)
        bound, listening = _sockets(str(where) + "/")
    except OSError:
        return []
    names = []
    for name in files:
        path = str(where / name)
        if path in listening and name.startswith(_PREFIX):
            names.append(name)
        elif path not in bound:
            with contextlib.suppress(OSError):
                if time.time() - os.lstat(path).st_mtime > 1:
                    os.unlink(path)
    return sorted(names)


def _sockets(prefix: str) -> tuple[set[str], set[str]]:
    """The Unix sockets whose paths start with ``prefix``: those bound, and those of them that listen (Linux lists
    them in /proc/net/unix)."""
    with open("/proc/net/unix", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    bound, listening = set(), set()
    for line in lines[1:]:
        fields = line.split(None, 7)  # the path last, as it is (spaces too)
        if len(fields) == 8 and fields[7].startswith(prefix):
            bound.add(fields[7])
            if fields[3] == "00010000":
                listening.add(fields[7])
    return bound, listening


def listening(path: str) -> bool:
    """A process listens on the Unix socket ``path``."""
    try:
        return path in _sockets(path)[1]
    except OSError:
        return False


def keep(
    setting_key: str,
    runtime: str,
    runtime_file: str,
    statements: dict[str, list[str]],
    env: dict[str, str],
    cwd: str,
    step: str = "-",
    project: str = "",
) -> None:
    """Start a process that imports ``statements`` in folder ``cwd`` and waits for a run in the setting
    ``setting_key`` (it outlives this one); ``ps`` shows it as ``python -m nb2kfp.local_run.waiting STEP PROJECT
    kept``."""
    name = f"{setting_key}-{time.time_ns():x}"  # its start in the name: the oldest go first (make_room)
    order = {"keep": keep_seconds(), "budget_mb": budget_mb(), "min_free_mb": min_free_mb(), "step": ""}
    imports = {"imports": statements, "runtime": runtime, "runtime_file": runtime_file, "cwd": cwd}
    process = start(name, {**order, **imports}, env, step=step, project=project or cwd, role=waiting.KEPT)
    if process is not None:
        process.returncode = 0  # it outlives this run, not ours to wait for: no ResourceWarning when this object goes


def start(
    name: str, order: dict[str, Any], env: dict[str, str], *, step: str, project: str, role: str
) -> subprocess.Popen[str] | None:
    """Start a waiting process (:mod:`waiting`) under the socket ``name`` with ``order`` (its pid is the id of its
    process group too); None when there is no private folder for its socket. A template's socket listens before it
    starts (the run may send it orders at once; it takes them once its import is done)."""
    where = folder()
    if where is None:
        return None
    listening = None
    if role == waiting.TEMPLATE:
        listening = socket.socket(socket.AF_UNIX)
        try:
            listening.bind(str(where / name))
            listening.listen(64)
        except OSError:
            listening.close()
            return None
        order = {**order, "fd": listening.fileno()}
    try:
        with tempfile.TemporaryFile() as printed:  # what its imports print: the step's output once it runs one
            process = subprocess.Popen(
                [sys.executable, "-m", waiting.MODULE, step, project, role],
                stdin=subprocess.PIPE,
                stdout=printed,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=where,  # python -m looks for the module there first: only sockets; then it enters order["cwd"]
                start_new_session=True,  # a group of its own: the run's supervisor stops it, or (kept) it stays
                text=True,
                pass_fds=() if listening is None else (listening.fileno(),),
            )
    finally:
        if listening is not None:
            listening.close()
    assert process.stdin is not None
    process.stdin.write(json.dumps({**order, "socket": str(where / name), "role": role}) + "\n")
    process.stdin.close()
    return process


def fork(template: str, order: dict[str, Any]) -> bool:
    """Ask the template under the socket ``template`` to fork the waiting process ``order`` describes (it does once
    its import is done; the process then listens under ``order["socket"]``); False when the template is gone."""
    with _connected(template) as peer:
        if peer is None:
            return False
        try:
            _send(peer[0], {"fork": order}, None)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _connected(name: str) -> Iterator[tuple[socket.socket, int] | None]:
    """A connection to the waiting process ``name`` and its pid; None when it is gone or another user's."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(5)
    try:
        conn.connect(address(name))
        creds = _CREDS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size))
    except OSError:
        creds = None
    try:
        yield (conn, creds[0]) if creds is not None and creds[1] == os.getuid() else None  # another user's: never
    finally:
        conn.close()


def _send(conn: socket.socket, order: dict[str, Any], fd: int | None) -> None:
    body = json.dumps(order).encode("utf-8")
    socket.send_fds(conn, [b"o"], [fd] if fd is not None else [])
    conn.sendall(struct.pack("!Q", len(body)) + body)


def take(setting_key: str, args: list[str], env: dict[str, str], cwd: str) -> Running | None:
    """A process kept in the setting ``setting_key`` (the newest that answers) running the command ``args`` (a
    step's command after ``python -c BOOTSTRAP``), or None."""
    for name in kept_for(setting_key, kept()):
        taken = take_named(name, args, env, cwd)
        if taken is not None:
            return taken
    return None


def take_named(
    name: str, args: list[str], env: dict[str, str], cwd: str, *, ready_seconds: float | None = _READY_SECONDS
) -> Running | None:
    """The waiting process under the socket ``name`` running the command ``args``, or None (it is gone). It may
    still be importing: the run waits ``ready_seconds`` (None: as long as it takes, as a fresh process's imports
    would), then kills it, so that it never runs the command once the step has started afresh."""
    read, write = os.pipe()
    try:
        with _connected(name) as peer:
            if peer is None:
                return None
            conn, peer_pid = peer
            _send(conn, {"args": args, "env": env, "cwd": cwd}, write)
            os.close(write)
            write = -1
            conn.settimeout(ready_seconds)
            reply = conn.makefile("rb")
            try:
                pid = json.loads(reply.readline() or b"null")["pid"]
            except TimeoutError:
                with contextlib.suppress(OSError):
                    os.kill(peer_pid, signal.SIGKILL)
                raise
            conn.settimeout(None)
            running = Running(conn.dup(), reply, pid, os.fdopen(read, "r", encoding="utf-8", errors="replace"))
            read = -1
            return running
    except (OSError, ValueError, TypeError, KeyError):
        return None
    finally:
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)


def stop_all(project: str | None = None) -> int:
    """Stop this user's kept processes (those of ``project`` only, when given); how many there were."""
    return stop([n for n in kept() if project is None or n.startswith(project_key(project))])


def stop(names: list[str]) -> int:
    """Ask each to stop; one still waiting a second later (stuck in an import, it reads no request) is killed.
    One that took a run's command since no longer waits under its name: it is never killed here."""
    peers = {}
    for name in names:
        with _connected(name) as peer:
            if peer is not None:
                conn, peers[name] = peer
                with contextlib.suppress(OSError):
                    _send(conn, {"stop": True}, None)
    deadline = time.monotonic() + 1
    while set(peers) & set(kept()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name in set(peers) & set(kept()):
        with contextlib.suppress(OSError):
            os.kill(peers[name], signal.SIGKILL)
    return len(peers)


class Running:
    """A waiting process once it runs a step, as the run's supervisor uses a ``subprocess.Popen``. Its exit status
    comes over the socket (none: it was killed, -9): a kept one is not a child of this process; one started ahead
    by this run is (``child``), and is reaped once it ends."""

    def __init__(self, conn: socket.socket, reply: IO[bytes], pid: int, stdout: IO[str]) -> None:
        self.conn, self.reply, self.pid, self.stdout = conn, reply, pid, stdout
        self.returncode: int | None = None
        self.child: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> int:  # noqa: ARG002 - Popen.wait's signature
        """Its exit status, once it has ended (the socket closes with the process, after its status)."""
        with self._lock:
            if self.returncode is None:
                try:
                    line = self.reply.readline()
                    code = int(json.loads(line)["code"]) if line else -9
                    while self.reply.read(4096):  # until the process is gone, as Popen.wait returns
                        pass
                    self.returncode = code
                except (OSError, ValueError, KeyError, TypeError):
                    self.returncode = -9
                finally:
                    self.reply.close()
                    self.conn.close()
                    if self.child is not None:
                        self.child.wait()
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            if self.child is not None:
                ended = self.child.poll() is not None
            else:
                try:
                    os.kill(self.pid, 0)
                    ended = False
                except OSError:
                    ended = True
            return self.wait() if ended else None
        return self.returncode

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *_: object) -> None:
        self.stdout.close()
        self.wait()
