"""The step processes of a local run: each in a process group of its own, all stopped on SIGINT/SIGTERM,
and killed by a watchdog process if nb2kfp itself dies (even by SIGKILL), as a pod's processes end with it.

kfp.local starts each step with ``subprocess_task_handler.run_local_subprocess``; :func:`supervised` swaps in
(:func:`kfp_local.launching`) a version that starts the step in a new session (or hands the command to the step's
process started ahead, :mod:`warm`) and tells the watchdog its process group. A step's arguments (its executor
input: every parameter value, secrets included) never go on a command line, which every user of the machine can
read (``ps``): a ``python -c CODE ARGS...`` (or ``python SCRIPT.py ARGS...``) step starts as ``python -c LAUNCHER
FD`` and gets its code and ARGS on a pipe of its own (:data:`LAUNCHER`), as steps started ahead and kept warm get
their command. With ``--docker`` (``docker_task_handler.run_docker_container``) each step's container gets the
label ``nb2kfp.run=<run id>``, and a Python one runs ``python -c ENV_LAUNCHER -c CODE`` (or ``... SCRIPT.py``) with
ARGS in its environment (a process's environment is readable by its own user only; a container's processes are
processes of this machine, listed by ``ps`` with their command lines). The watchdog reads group ids and the run id
on a pipe; when the pipe closes (nb2kfp ended, however it ended) it kills what is left: the process groups, and the
run's containers (:mod:`nb2kfp.local_run.watchdog`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import marshal
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Protocol

from nb2kfp.backends import step_runtime
from nb2kfp.local_run import watchdog
from nb2kfp.runtime.step import ARTIFACT_KEY_ENV, CELLS_ENV, ENV_LAUNCHER, RUN_COMMAND, RUNTIME_FILE, launcher_env

if TYPE_CHECKING:
    from nb2kfp.local_run.ahead import StepsAhead

GRACE_SECONDS = 3.0


class StepProcess(Protocol):
    """A step's process as the supervisor uses it: started here (``subprocess.Popen``), or a waiting one that took
    the step's command (``kept.Running``: started ahead by this run, or kept warm by an earlier one)."""

    @property
    def pid(self) -> int: ...
    @property
    def stdout(self) -> IO[str] | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def poll(self) -> int | None: ...
    def __enter__(self) -> StepProcess: ...
    def __exit__(self, *args: Any) -> None: ...


# The runtime as the run compiled it, for a step whose bootstrap compiles it (72 KB of source: 25 ms of a 0.1 s step):
# ``compiled`` is [file name, sha256 of the source, base64 of the marshalled code object] or null. Until the bootstrap
# compiles that file name, ``compile`` returns the run's code object for that very source (same interpreter, same
# arguments), and is the real one again from then on: the step's own code never sees the stand-in.
PRECOMPILED = (
    "if compiled:\n"
    "    import binascii, builtins, hashlib, marshal\n"
    "    def _compile(source, filename, *rest, _real=builtins.compile, _made=compiled, **options):\n"
    "        if filename != _made[0]:\n"
    "            return _real(source, filename, *rest, **options)\n"
    "        builtins.compile = _real\n"
    "        same = isinstance(source, bytes) and hashlib.sha256(source).hexdigest() == _made[1]\n"
    "        if same and rest == ('exec',) and not options and not sys.flags.optimize:\n"
    "            return marshal.loads(binascii.a2b_base64(_made[2]))\n"
    "        return _real(source, filename, *rest, **options)\n"
    "    builtins.compile = _compile\n"
    "del compiled\n"
)
# Run as ``python -c LAUNCHER FD``: HEAD, ARGS (and the runtime compiled, :data:`PRECOMPILED`) come on pipe FD (the
# runtime's RUN_COMMAND then runs them). A string, not a module: the step's code runs in ``__main__``, as KFP's own
# ``python -c`` command runs it in a pod.
LAUNCHER = (
    "# nb2kfp step: its code and arguments came on a pipe, not on the command line (nb2kfp.local_run.processes)\n"
    "import json, os, sys\n"
    "with os.fdopen(int(sys.argv[1]), encoding='utf-8') as pipe:\n"
    "    head, args, compiled = json.load(pipe)\n" + PRECOMPILED + RUN_COMMAND
)
DOCKER_ENV = (ARTIFACT_KEY_ENV, CELLS_ENV)  # the run's environment a --docker step gets (no host paths)


def _python_step(command: list[str]) -> tuple[list[str], list[str]] | None:
    """(HEAD, ARGS) of a step's Python command with arguments (``python -c CODE ARGS...``, a notebook step run from
    its spec; ``python SCRIPT.py ARGS...``, one run by the runtime in its image); None for any other command."""
    if not command or not os.path.basename(command[0]).startswith("python"):
        return None
    if len(command) > 3 and command[1] == "-c":
        return command[1:3], command[3:]
    if len(command) > 2 and command[1].endswith(".py") and not command[1].startswith("-"):
        return command[1:2], command[2:]
    return None


def _start(full_command: list[str], env: dict[str, str], started: Callable[[int], None]) -> subprocess.Popen[str]:
    """A step's process, in a session of its own (``started(pid)`` hears of it first). A Python step command
    (:func:`_python_step`) starts as ``python -c LAUNCHER FD``, and gets its code and arguments on that pipe."""
    python = _python_step(full_command)
    read, write = os.pipe() if python else (None, None)
    try:
        process = subprocess.Popen(
            [full_command[0], "-c", LAUNCHER, str(read)] if python else full_command,
            stdin=subprocess.DEVNULL,  # as in a pod: a step reads no terminal
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,
            pass_fds=() if read is None else (read,),
        )
    except BaseException:
        if write is not None:
            os.close(write)
        raise
    finally:
        if read is not None:
            os.close(read)
    started(process.pid)
    if write is not None and python is not None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(write, "w", encoding="utf-8") as pipe:
            # a process that died before reading it: its exit status says so
            pipe.write(json.dumps([*python, _compiled_runtime(full_command)]))
    return process


def _compiled_runtime(full_command: list[str]) -> list[str] | None:
    """What :data:`PRECOMPILED` takes for a notebook step's command: this interpreter's, whose ``--runtime`` artifact
    holds this nb2kfp's runtime; None for any other."""
    if full_command[:1] != [sys.executable] or full_command[1:2] != ["-c"]:
        return None
    if runtime_of(full_command) != step_runtime.runtime_source():
        return None
    return list(_runtime_code())


def runtime_of(full_command: list[str]) -> str | None:
    """The runtime a notebook step's command would run: the file its ``--runtime`` argument names."""
    try:
        path = full_command[full_command.index("--runtime") + 1]
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (ValueError, IndexError, OSError, UnicodeDecodeError):
        return None


@functools.cache
def _runtime_code() -> tuple[str, str, str]:
    """The step runtime compiled as a step's bootstrap compiles it (:func:`step_runtime.bootstrap`), once a run."""
    source = step_runtime.runtime_source().encode("utf-8")
    code = compile(source, RUNTIME_FILE, "exec", dont_inherit=True, optimize=0)
    return RUNTIME_FILE, hashlib.sha256(source).hexdigest(), base64.b64encode(marshal.dumps(code)).decode("ascii")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during the run; the step processes are stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


class Supervisor:
    def __init__(self) -> None:
        self.steps: dict[int, StepProcess] = {}
        self.signum: int | None = None
        self.run_id = f"{os.getpid()}-{time.time_ns()}"  # the nb2kfp.run label of the run's containers
        self.docker: Any = None  # the docker client kfp.local's DockerRunner uses, once it ran a step
        self.ahead: StepsAhead | None = None  # steps started ahead (set while a run's StepsAhead is open)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", watchdog.__name__], stdin=subprocess.PIPE, text=True, start_new_session=True
        )

    def _tell(self, line: str) -> None:
        stdin: IO[str] | None = self._watchdog.stdin
        if stdin is not None:
            stdin.write(line + "\n")
            stdin.flush()

    def run_local_subprocess(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        """kfp.local's function of the same name, with the step in a session of its own."""
        env = {**os.environ, **(env_vars or {})}
        process: StepProcess | None = None
        if self.ahead is not None:
            process = self.ahead.take(full_command, env)
        if process is None:
            process = _start(full_command, env, self.started)
        with process:
            self.steps[process.pid] = process
            if self.signum is not None:  # stopped while it was being started or handed its command: stop() missed it
                _kill_group(process.pid, signal.SIGKILL)
            threading.Thread(target=_end_with, args=(process,), daemon=True).start()
            try:
                assert process.stdout is not None
                for line in iter(process.stdout.readline, ""):
                    print(line, end="")
                print("\n")
                return process.wait()
            finally:
                _kill_group(process.pid, signal.SIGKILL)  # what the step left running ends with it
                self.steps.pop(process.pid, None)
                self._tell(f"-{process.pid}")

    def started(self, pid: int) -> None:
        """A step's process (or one started ahead) runs in process group ``pid``: the watchdog knows it."""
        self._tell(str(pid))

    def ended(self, pid: int) -> None:
        self._tell(f"-{pid}")

    def run_docker_container(self, original: Callable[..., int], client: Any, **kwargs: Any) -> int:
        """kfp.local's DockerRunner entry, with the run's label on the step's container."""
        if self.docker is None:
            self.docker = client
            self._tell(f"docker {self.run_id}")
        kwargs["labels"] = {**(kwargs.get("labels") or {}), watchdog.LABEL: self.run_id}
        # what a pod of the run gets besides its spec's env: the artifact key (a cluster's comes from the secret
        # artifact_key_secret names) and which notebook cell each step cell is, for tracebacks; never a host path
        environment = {
            **(kwargs.get("environment") or {}),
            **{k: os.environ[k] for k in DOCKER_ENV if os.environ.get(k)},
        }
        command = kwargs.get("command") or []
        python = _python_step(command)
        if python is not None:  # its arguments in its environment, not on its command line (ENV_LAUNCHER)
            head, args = python
            environment.update(launcher_env(args))
            kwargs["command"] = [command[0], "-c", ENV_LAUNCHER, *head]
        kwargs["environment"] = environment
        return original(client=client, **kwargs)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM to every step's process group (or container); SIGKILL to what is left after ``grace`` s."""
        if self.docker is not None:
            with contextlib.suppress(Exception):  # the engine gone too: nothing of ours runs there
                for container in self.docker.containers.list(filters={"label": f"{watchdog.LABEL}={self.run_id}"}):
                    container.stop(timeout=int(grace))
        if self.ahead is not None:
            self.ahead.close()  # their steps never start now
        steps = dict(self.steps)  # the threads that run steps add and remove theirs meanwhile
        for pid in steps:
            _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(pid, p) for pid, p in steps.items()):
            time.sleep(0.05)
        for pid in steps:
            _kill_group(pid, signal.SIGKILL)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 - a signal handler's signature
        if self.signum is not None:
            return  # already stopping
        self.signum = signum
        self.stop()
        raise Interrupted(signum)

    def close(self) -> None:
        if self._watchdog.stdin is not None:
            self._watchdog.stdin.close()
        self._watchdog.wait()


def _end_with(step: StepProcess) -> None:
    """When the step's own process ends, so does what it started (which may hold its output pipe open)."""
    step.wait()
    _kill_group(step.pid, signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int, leader: StepProcess) -> bool:
    leader.poll()  # reap the step itself, so that it does not linger as a zombie in its group
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def supervised() -> Iterator[Supervisor]:
    """Run kfp.local's steps under a :class:`Supervisor`; SIGINT/SIGTERM raise :class:`Interrupted`."""
    from nb2kfp.local_run import kfp_local

    supervisor = Supervisor()
    previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with kfp_local.launching(supervisor.run_local_subprocess, supervisor.run_docker_container):
            yield supervisor
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)
        supervisor.close()
