"""A step process kept warm for the next run: ``python -m nb2kfp.local_run.kept STEP PROJECT`` (``ps`` shows which
step of which project it is); started and commanded by :mod:`nb2kfp.local_run.parked`, which describes it.

It reads its order (socket, seconds to wait, imports, the runtime's source, the notebook's folder, memory budget)
on stdin, runs the step runtime in warm-up mode (``runtime/step.py`` ``warm``), then waits on its socket for a run's
command. It leaves when free memory runs low or the user's kept processes hold more than the budget
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
import time
from typing import Any

MODULE = "nb2kfp.local_run.kept"  # what ``ps`` shows after ``python -m``
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


def processes() -> list[dict[str, Any]]:
    """This user's kept processes, from /proc: pid, step, project, resident memory (MiB) and age (s)."""
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
            if argv[1:3] != [b"-m", MODULE.encode()] or len(argv) < 5:
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
    seen: dict[str, tuple[int, int] | None] = {}  # what its imports read, as it was when they opened it
    wrote: list[str] = []
    conn: list[socket.socket] = []  # the run's connection, once it sent a command
    checking = [False]  # its own look at the memory (/proc), which no step's import did

    def audit(event: str, args: tuple[Any, ...]) -> None:
        """The files the imports read or wrote: a run gets it only while those read are as they were then."""
        if event == "open" and not conn and not checking[0] and isinstance(args[0], (str, bytes)):
            path = os.path.abspath(os.fsdecode(args[0]))
            mode, flags = args[1] or "", args[2] or 0
            if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR):
                wrote.append(path)
            elif path not in seen:
                seen[path] = _state(path)

    sys.addaudithook(audit)
    for entry in sys.path:  # a module added to one of its folders meanwhile: stale
        if entry:
            seen.setdefault(entry, _state(entry))

    def stale() -> bool:
        return any(_state(path) != was for path, was in list(seen.items()))

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def forget() -> None:  # stops listening, and its socket's file goes (one a killed process left: kept() removes it)
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(order["socket"])

    def unwanted() -> bool:
        checking[0] = True
        try:
            return low_memory(order["min_free_mb"]) or over_budget(order["budget_mb"])
        finally:
            checking[0] = False

    class Handoff:
        def readline(self) -> str:
            for entry in sys.path:  # folders its imports added
                if entry:
                    seen.setdefault(entry, _state(entry))
            while True:
                if unwanted():  # once its imports are done, and every few seconds while it waits
                    forget()
                    return ""
                server.settimeout(max(0.01, min(_CHECK_SECONDS, deadline - time.monotonic())))
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    if time.monotonic() < deadline:
                        continue
                    forget()
                    return ""
                try:
                    client.settimeout(30)
                    if not _same_user(client):
                        raise PermissionError
                    _, fds, _, _ = socket.recv_fds(client, 1, 1)
                    size = struct.unpack("!Q", _receive(client, 8))[0]
                    line = _receive(client, size).decode("utf-8")
                except (OSError, EOFError, ValueError):
                    client.close()
                    continue
                forget()
                if json.loads(line).get("stop") or len(fds) != 1 or wrote or stale():
                    return ""  # stopped; or stale (a file read changed), or it wrote a file: the step starts afresh
                signal.alarm(0)
                sys.stdout.flush()
                sys.stderr.flush()
                os.lseek(1, 0, os.SEEK_SET)  # what the imports printed, into the step's output
                with os.fdopen(os.dup(1), "rb") as printed:
                    early = printed.read()
                os.dup2(fds[0], 1)
                os.dup2(fds[0], 2)
                os.close(fds[0])
                os.write(1, early)
                client.settimeout(None)
                client.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
                conn.append(client)
                return line

    code = [1]

    def report() -> None:  # registered first, so it runs last: after the step's threads and its own atexit handlers
        if conn:
            sys.stdout.flush()
            sys.stderr.flush()
            conn[0].sendall(json.dumps({"code": code[0]}).encode() + b"\n")

    atexit.register(report)
    try:  # named before the imports: a run that comes meanwhile waits for them rather than start the step afresh
        server.bind(order["socket"])
        server.listen(1)
    except OSError:  # another process holds the name: it serves
        sys.exit(0)
    sys.argv = ["-c", "--warm", json.dumps(order["imports"]), ""]
    try:
        runtime = compile(order["runtime"], order["runtime_file"], "exec")
        exec(runtime, {"__name__": "__main__", "NB2KFP_WARM_COMMANDS": Handoff()})
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
