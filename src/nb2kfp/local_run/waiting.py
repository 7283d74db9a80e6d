"""A waiting step process: ``python -m nb2kfp.local_run.waiting STEP PROJECT ROLE``, started by
:mod:`nb2kfp.local_run.kept`, which describes it. ``ps`` and ``nb2kfp runs`` show which step of which project it
is, and its role: ``ahead`` (started by a run for one of its own steps, :mod:`nb2kfp.local_run.ahead`) or ``kept``
(kept warm for the next run); or a run's ``template`` (``python -m nb2kfp.local_run.waiting MODULE PROJECT
template``): it imports one module, the one several steps of the run import first, and forks each of those steps'
waiting processes (a step started ahead) from there, so that the module is imported once a run, not once a step.

It reads its order (socket, seconds to wait, imports, the runtime's source, folders, memory limits) on stdin, runs
the step runtime in warm-up mode (``runtime/step.py`` ``warm``), then waits on its socket for a run's command. A
kept one leaves when free memory runs low or the user's kept processes hold more than the budget
(:func:`over_budget`, checked once its imports are done and every few seconds while it waits). It imports only the
standard library: what it loads is what the step would load.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import time
import warnings
from typing import Any

MODULE = "nb2kfp.local_run.waiting"  # what ``ps`` shows after ``python -m``
AHEAD, KEPT, TEMPLATE = "ahead", "kept", "template"  # its role, the last word of its command line
CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_CHECK_SECONDS = 10  # how often a waiting process looks at the memory


def memory() -> tuple[int, int]:
    """(MemAvailable, MemTotal) of this machine in MiB, from /proc/meminfo; (0, 0) when unknown."""
    found = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in ("MemAvailable", "MemTotal"):
                    found[name] = int(rest.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    return found.get("MemAvailable", 0), found.get("MemTotal", 0)


def processes(role: str = KEPT) -> list[dict[str, Any]]:
    """This user's waiting processes in ``role``, from /proc: pid, step, project, resident memory (MiB), age (s)."""
    found = []
    uid, now = os.getuid(), time.time()
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            if argv[1:3] != [b"-m", MODULE.encode()] or argv[5:6] != [role.encode()]:
                continue
            with open(f"/proc/{pid}/status", encoding="ascii") as fh:
                rss = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0) // 1024
            age = now - _started(pid)
        except (OSError, ValueError, IndexError):
            continue
        step, project = os.fsdecode(argv[3]), os.fsdecode(argv[4])
        found.append({"pid": int(pid), "step": step, "project": project, "rss_mb": rss, "seconds": round(age)})
    return found


def _started(pid: str) -> float:
    """When process ``pid`` started (seconds since the epoch), from /proc/PID/stat and the boot time."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat", encoding="ascii") as fh:
        boot = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def low_memory(min_free_mb: int) -> bool:
    """Free memory (MemAvailable) under ``min_free_mb`` MiB."""
    available, total = memory()
    return bool(total) and available < min_free_mb


def over_budget(budget_mb: int) -> bool:
    """This user's kept processes hold more than ``budget_mb`` MiB resident in all."""
    return sum(int(p["rss_mb"]) for p in processes()) > budget_mb


class _Reads:
    """What the imports read or wrote (an audit hook): a run gets this process only while the files and the folders
    of ``sys.path`` its imports read are as they were when they opened them, and only if they wrote none."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int] | None] = {}
        self.wrote: list[str] = []
        self.paused = False  # its own reads (/proc, the run's command) are none of the imports'
        sys.addaudithook(self.audit)
        self.add_path()

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and not self.paused and isinstance(args[0], (str, bytes)):
            path = os.path.abspath(os.fsdecode(args[0]))
            mode, flags = args[1] or "", args[2] or 0
            if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR):
                self.wrote.append(path)
            elif path not in self.seen:
                self.seen[path] = _state(path)

    def add_path(self) -> None:
        """The folders of ``sys.path`` (a module added to one meanwhile: stale), those the imports added too."""
        for entry in sys.path:
            if entry:
                self.seen.setdefault(entry, _state(entry))

    def changed(self) -> bool:
        return bool(self.wrote) or any(_state(path) != was for path, was in list(self.seen.items()))


class Handoff:
    """Where the runtime's warm-up mode reads the step's command (its ``readline``): waits on the socket for a run of
    this user, takes the run's output pipe as stdout and stderr (what the imports printed first), and returns the
    command; "" (the runtime then exits) when stopped, timed out, unwanted or stale."""

    def __init__(self, order: dict[str, Any], reads: _Reads, deadline: float) -> None:
        self.order, self.reads, self.deadline = order, reads, deadline
        inherited = order.get("fd")  # a template's socket, bound and listening before it started (kept.start)
        self.server = socket.socket(fileno=inherited) if inherited is not None else socket.socket(socket.AF_UNIX)
        self.conn: socket.socket | None = None  # the run's connection, once it sent a command
        self.scope: dict[str, Any] = {}  # the runtime's globals (its warm_up, for a template's forked processes)
        self.forked = False  # a process a template forked (it has no session of its own until it runs a step)

    def listen(self) -> bool:
        """Bind its name (before the imports: a run that comes meanwhile waits for them rather than start the step
        afresh); False when another process holds it."""
        if self.order.get("fd") is not None:
            return True
        try:
            self.server.bind(self.order["socket"])
            self.server.listen(1)
        except OSError:
            return False
        return True

    def forget(self) -> None:
        """Stops listening, and its socket's file goes (one a killed process left: ``kept.kept()`` removes it)."""
        self.server.close()
        with contextlib.suppress(OSError):
            os.unlink(self.order["socket"])

    def unwanted(self) -> bool:
        if self.order["role"] != KEPT:  # started ahead for a run: that run uses or stops it
            return False
        self.reads.paused = True
        try:
            return low_memory(self.order["min_free_mb"]) or over_budget(self.order["budget_mb"])
        finally:
            self.reads.paused = False

    def readline(self) -> str:
        self.reads.add_path()
        if self.order["role"] == TEMPLATE:
            self._serve_forks()  # returns in a forked process only, now the waiting process of its step
        while not self.unwanted():  # once its imports are done, and every few seconds while it waits
            self.server.settimeout(max(0.01, min(_CHECK_SECONDS, self.deadline - time.monotonic())))
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                if time.monotonic() < self.deadline:
                    continue
                break
            self.reads.paused = True  # what it reads from now on is the step's, not its imports'
            received = _command(client)
            if received is None:
                self.reads.paused = False
                continue
            self.forget()
            line, fds = received
            if json.loads(line).get("stop") or len(fds) != 1 or self.reads.changed():
                return ""  # stopped; or stale (a file read changed), or it wrote a file: the step starts afresh
            if self.forked:
                os.setsid()  # the step's process group, which the run stops with the step, apart from the template's
            self._take_output(fds[0])
            client.settimeout(None)
            client.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
            self.conn = client
            return line
        self.forget()
        return ""

    def _serve_forks(self) -> None:
        """A template: for each order a run sends (``{"fork": ORDER}``), fork a process that becomes the waiting
        process ``ORDER`` describes (:meth:`_become`), until stopped or its imports went stale (then it ends, and its
        forked processes still waiting with it: they are in its process group, which the run stops)."""
        signal.signal(signal.SIGCHLD, _reap)
        self.server.settimeout(None)
        while True:
            client, _ = self.server.accept()
            received = _command(client)
            if received is None:
                continue
            client.close()
            line, fds = received
            for fd in fds:
                os.close(fd)
            order = json.loads(line).get("fork")
            self.reads.paused = True
            stale = self.reads.changed()
            self.reads.paused = False
            if not isinstance(order, dict) or stale:
                sys.exit(0)  # stopped, or a file its import read changed: the run starts its steps afresh
            sys.stdout.flush()  # what its import printed is in its file, once: not also in a fork's copy of a buffer
            sys.stderr.flush()
            with warnings.catch_warnings():  # Python 3.12+ warns of a fork with threads running (OpenBLAS's)
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                self._become(order)
                return

    def _become(self, order: dict[str, Any]) -> None:
        """In a process a template forked: the waiting process of the step ``order`` names, which has imported what
        the template imported (what that step imports first) and now imports the rest of its own statements."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.server.close()  # the template's
        self.reads.paused = True  # its own file is none of the imports' writes
        printed = tempfile.TemporaryFile()  # noqa: SIM115 (its output until it runs a step, for its life)
        self.reads.paused = False
        os.write(printed.fileno(), _printed(1))  # what the template's import printed, as the step's own import would
        os.dup2(printed.fileno(), 1)
        os.dup2(printed.fileno(), 2)
        self.order = {**order, "role": AHEAD}
        self.deadline = time.monotonic() + order["keep"]
        signal.alarm(order["keep"] + 60)
        self.forked = True
        self.server = socket.socket(socket.AF_UNIX)
        if not self.listen():
            os._exit(0)
        self.scope["warm_up"](order["imports"], order["step"])
        self.reads.add_path()

    def _take_output(self, fd: int) -> None:
        signal.alarm(0)
        sys.stdout.flush()
        sys.stderr.flush()
        os.lseek(1, 0, os.SEEK_SET)  # what the imports printed, into the step's output
        with os.fdopen(os.dup(1), "rb") as printed:
            early = printed.read()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.write(1, early)

    def report(self, code: int) -> None:
        """Its exit status, to the run it served (last: after the step's threads and its own exit handlers)."""
        if self.conn is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            self.conn.sendall(json.dumps({"code": code}).encode() + b"\n")


def _reap(signum: int, frame: Any) -> None:  # noqa: ARG001 - a signal handler's signature
    """A template's: its forked processes that ended (it never waits for one)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _printed(fd: int) -> bytes:
    """What file ``fd`` holds, read without moving its offset (the template's, which its forks share)."""
    data, offset = b"", 0
    while chunk := os.pread(fd, 65536, offset):
        data += chunk
        offset += len(chunk)
    return data


def _command(client: socket.socket) -> tuple[str, list[int]] | None:
    """The command a run of this user sent (with its output pipe), or None (another user, or a broken order)."""
    try:
        client.settimeout(30)
        if not _same_user(client):
            raise PermissionError
        _, fds, _, _ = socket.recv_fds(client, 1, 1)
        size = struct.unpack("!Q", _receive(client, 8))[0]
        return _receive(client, size).decode("utf-8"), fds
    except (OSError, EOFError, ValueError):
        client.close()
        return None


def main() -> None:
    order = json.loads(sys.stdin.readline())
    deadline = time.monotonic() + order["keep"]
    signal.alarm(order["keep"] + 60)  # stuck in an import: it ends all the same
    null = os.open(os.devnull, os.O_RDONLY)  # a step's stdin: an import that reads it reads nothing
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 (the process's stdin, for its life)
    if sys.path and sys.path[0] == os.getcwd():  # as a step's ``python -c``: its current folder, whichever
        sys.path[0] = ""
    os.chdir(order["cwd"])
    handoff = Handoff(order, _Reads(), deadline)
    code = [1]
    atexit.register(lambda: handoff.report(code[0]))  # registered first, so it runs last
    if not handoff.listen():  # another process holds the name: it serves
        sys.exit(0)
    sys.argv = ["-c", "--warm", json.dumps(order["imports"]), order["step"]]
    try:
        runtime = compile(order["runtime"], order["runtime_file"], "exec")
        handoff.scope = {"__name__": "__main__", "NB2KFP_WARM_COMMANDS": handoff}
        exec(runtime, handoff.scope)
    except SystemExit as exc:
        code[0] = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        raise


def _state(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _same_user(conn: socket.socket) -> bool:
    return bool(CREDS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, CREDS.size))[1] == os.getuid())


def _receive(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


if __name__ == "__main__":
    main()
