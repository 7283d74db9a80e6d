"""Steps started ahead: a step's process starts while the steps before it still run, and imports its modules.

A step's process spends most of its life importing (pandas and scikit-learn: ~1 s of a 1.2 s step), and a
chain of steps paid that one after another. Once a local run knows a step will run (a step above it ran, so
its inputs will be new; or nothing is cached), it starts that step's process right away: the step runtime in
warm-up mode (``runtime/step.py``, :func:`nb2kfp.runtime.step.warm`) runs the step's leading import statements
and waits. When kfp.local launches the step, the command goes to the waiting process (over the transport of
:mod:`kept`, which also keeps such processes warm for the next run), which then runs it as a fresh process
would: it is still one process per step, the step's inputs are read only once it is launched, and the step's
own import statements run as written (finding their modules loaded). :class:`StepsAhead` is a context manager:
it starts them while the run lasts, and when the run ends stops those no step took and keeps processes for the
steps that ran (:meth:`StepsAhead.keep`).

What a warm-up imports is chosen so that it cannot change what the step does:

- only the import statements that open the step's prelude (its imports cell, as lean as the step runs it), up
  to the first statement that is anything else (``matplotlib.use``, ``warnings.filterwarnings``, an
  ``os.environ`` assignment may change what a later import does); and, when the prelude is nothing but
  those, the modules the step receives as values (``np`` from a step that ran ``import numpy as np``) and
  the leading imports of its own cells: the step imports them anyway, unpickling its inputs right after its
  prelude and starting its cells right after that (unpickling only imports, and sets the process state);
- only modules installed for this interpreter: nothing next to the notebook (a step imports those from its own
  folder, where their ``__file__`` differs), and no installed name shadowed by a file next to the notebook;
- in the environment the step gets (a command whose environment or runtime differs is not handed over: the
  step starts afresh), with the Agg backend and the runtime's import hooks set first, as in a step.

A step whose statements start with an import of ``MODULE`` (``from sklearn.ensemble import ...`` imports
``sklearn`` first: 1.7 s of the 1.9 s it takes) gets its process from the run's *template* of that module (one per
module and environment): a process that set what a step sets first, imported the module and nothing else, in a
folder seeded as a step's is (the same files to read), and forks each such step's waiting process, which enters its
own step's folder and runs the rest of its own statements. (A module that keeps the working folder it was imported
in holds the template's.) Each step still gets a process of
its own, in which its imports ran in the order its own statements import them; the module is imported once a run
instead of once a step (five steps of iris: once, not five times, on a machine's two cores). Templates end with the
run; processes kept for the next run start afresh.

``NB2KFP_WARM=0`` turns it off. At most ``limit`` processes wait at once (one per job): more would only
compete for the cores with the steps that run.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.machinery
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.machinery import PathFinder
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nb2kfp.backends import step_runtime
from nb2kfp.backends.kfp_spec import container_env
from nb2kfp.ir import CodeCell, Pipeline, Step
from nb2kfp.local_run import kept, kfp_local, waiting
from nb2kfp.local_run.cache import environment
from nb2kfp.local_run.processes import runtime_of
from nb2kfp.local_run.records import project_root
from nb2kfp.runtime.step import RUN_ENV, RUNTIME_FILE

if TYPE_CHECKING:
    from types import TracebackType

    from nb2kfp.local_run.processes import Supervisor

AHEAD_SECONDS = 24 * 3600  # a started-ahead process waits for its step as long as a run lasts (the run stops it)


def leading_imports(cells: Iterable[CodeCell], installed: Callable[[str], bool]) -> tuple[list[str], bool]:
    """The import statements that open ``cells``, up to the first other statement or the first import of a
    module that is not ``installed`` (top-level name); ``from __future__`` ones are left out. And whether
    that was all of ``cells``."""
    found: list[str] = []
    for cell in cells:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            return found, False
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                return found, False
            if not all(installed(n.split(".")[0]) for n in names):
                return found, False
            found.append(ast.unparse(node))
    return found, True


def binding_imports(cells: Iterable[CodeCell], name: str, installed: Callable[[str], bool]) -> list[str]:
    """Imports of installed modules that bind ``name`` at the top level of ``cells``, as the statement that loads
    what a step receiving ``name`` loads when it unpickles it (``import a.b`` binds ``a``: ``import a``)."""
    found: list[str] = []
    for cell in cells:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    module = alias.name if alias.asname else alias.name.split(".")[0]
                    if (alias.asname or module) == name and installed(module.split(".")[0]):
                        found.append(f"import {module}")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    if (alias.asname or alias.name) == name and installed(node.module.split(".")[0]):
                        found.append(f"from {node.module} import {alias.name}")
    return found


def step_imports(pipeline: Pipeline, step: Step, installed: Callable[[str], bool]) -> dict[str, list[str]]:
    """What a step's process may import ahead: its prelude's leading imports; and when that is all its prelude
    does (nothing runs between them and the loading of its inputs), the modules its inputs are, where a step
    above binds them by an import (``np``, ``plt``, ``ct`` handed on from the step that imported them), and the
    leading imports of its own first cell (the first thing it does once its inputs are loaded; what they print is
    kept for that cell's output). As ``{"prelude": [...], "cell": [...]}``."""
    cells = step.prelude if step.prelude is not None else pipeline.prelude
    found, whole = leading_imports(cells, installed)
    if whole:
        steps = {s.name: s for s in pipeline.steps}
        for edge in step.inputs:
            producer = steps.get(edge.producer) if edge.kind == "value" else None
            while producer is not None:  # up to the step that bound it, through those that handed it on
                bound = binding_imports(producer.cells, edge.name, installed)
                found += bound
                handed = next((e for e in producer.inputs if e.name == edge.name and e.kind == "value"), None)
                producer = steps.get(handed.producer) if handed is not None and not bound else None
        first = leading_imports(step.cells[:1], installed)[0]  # what it does right after loading them
        return {"prelude": list(dict.fromkeys(found)), "cell": [s for s in dict.fromkeys(first) if s not in found]}
    return {"prelude": list(dict.fromkeys(found)), "cell": []}


def installed_here(seed: Path, beside: set[str] | None = None) -> Callable[[str], bool]:
    """Whether a top-level module name is one this interpreter has installed (standard library included),
    and no file or folder next to the notebook (``seed``; the names in it: ``beside``) could stand in for it."""
    beside = _names_beside(seed) if beside is None else beside
    local = {str(seed.resolve()), os.getcwd(), ""}
    path = [p for p in sys.path if p not in local and os.path.isabs(p)]

    def installed(top: str) -> bool:
        if top in beside:
            return False
        if top in sys.builtin_module_names or top in sys.stdlib_module_names:
            return True
        return PathFinder.find_spec(top, path) is not None

    return installed


def first_module(statements: dict[str, list[str]]) -> str | None:
    """The top-level module the first of a step's leading import statements imports first (its template's)."""
    if not statements["prelude"]:
        return None  # the first cell's imports: what they print is that cell's output, not a template's
    node = ast.parse(statements["prelude"][0]).body[0]
    if isinstance(node, ast.Import):
        return node.names[0].name.split(".")[0]
    if isinstance(node, ast.ImportFrom) and node.module:
        return node.module.split(".")[0]
    return None


@dataclass
class _Waiting:
    name: str  # its socket's
    process: subprocess.Popen[str]  # its own; a forked one's: its template's
    env: dict[str, str]
    forked: bool = False  # forked by a template: not this process's child, and in the template's process group


class StepsAhead:
    """The local run's steps started ahead, and kept for the next run when it ends (see the module's docstring).
    The run's ``supervisor`` hears of each process, so that a stopped or killed run takes them with it."""

    def __init__(self, pipeline: Pipeline, limit: int, supervisor: Supervisor, *, every_step_runs: bool) -> None:
        seed = Path(pipeline.source).resolve().parent
        beside = _names_beside(seed)
        installed = installed_here(seed, beside)
        self.seed = seed
        self.project = str(project_root(seed))
        self.beside = sorted(beside)
        self.limit = max(1, limit)
        self.statements: dict[str, dict[str, list[str]]] = {}
        self.below: dict[str, set[str]] = {s.name: set() for s in pipeline.steps}
        self.env: dict[str, dict[str, str]] = {}
        for step in pipeline.steps:
            for parent in step.after:
                self.below.setdefault(parent, set()).add(step.name)
            if step.component is None and not pipeline.workspace:  # a workspace is the step's folder: ahead, none
                statements = step_imports(pipeline, step, installed)
                if any(statements.values()):
                    self.statements[step.name] = statements
                    self.env[step.name] = container_env(step)
        self.order = [s.name for s in pipeline.steps]
        # what SubprocessRunner will launch: its command, and the runtime source its input artifact holds
        self.command = [sys.executable, "-c", kfp_local.as_launched(step_runtime.bootstrap())]
        self.runtime = step_runtime.runtime_source()
        self.kept = kept.kept()  # step processes earlier runs kept warm (kept.py)
        self.environment = environment()  # this interpreter and its installed distributions
        self.process = process_setting()
        self.supervisor = supervisor
        self.every_step_runs = every_step_runs
        self.kept_steps: list[str] = []  # those it kept a process for, once the run ended
        self._ran: set[str] = set()  # steps that ran (succeeded or failed), in this run
        self._wanted: set[str] = set()
        self._waiting: dict[str, _Waiting] = {}
        self._used: set[str] = set()
        self._lock = threading.RLock()  # close() may run in a signal handler while this thread holds it
        self._keys: dict[str, str] = {}
        self._templates: dict[str, _Waiting] = {}  # by module and environment
        self._closed = False

    def will_run(self, steps: Iterable[str]) -> None:
        """These steps will run (and every step below them): start them ahead, up to ``limit`` at once."""
        with self._lock:
            todo = list(steps)
            while todo:
                name = todo.pop()
                if name not in self._wanted:
                    self._wanted.add(name)
                    todo.extend(self.below.get(name, ()))
            self._fill()

    def step_event(self, step: str, status: str) -> None:
        """``step`` runs (it was not cached: the steps below it will run too), or ran (succeeded or failed: a
        process may be kept for its next run)."""
        if status == "running":
            with self._lock:
                self._used.add(step)
            self.will_run(self.below.get(step, ()))
        elif status in ("succeeded", "failed"):
            self._ran.add(step)

    def __enter__(self) -> StepsAhead:
        self.supervisor.ahead = self
        if self.every_step_runs:
            self.will_run(self.order)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
        if self.supervisor.signum is None:  # not stopped: for the next run of the steps that ran
            self.kept_steps = self.keep([name for name in self.order if name in self._ran])

    def _fill(self) -> None:
        if self._closed:
            return
        for name in self.order:
            if len(self._waiting) >= self.limit:
                return
            wanted = name in self._wanted and name in self.statements and not self._is_kept(name, self.kept)
            if wanted and name not in self._used and name not in self._waiting:
                started = self._start(name)
                if started is None:  # no private folder for its socket: the step starts afresh
                    self._used.add(name)
                else:
                    self._waiting[name] = started

    def _start(self, name: str) -> _Waiting | None:
        env = {**os.environ, **self.env[name]}
        socket_name = f"ahead-{os.getpid()}-{time.time_ns():x}"
        # it enters the step's folder first, as the step does (this run's folders are in its environment)
        order = {"imports": self.statements[name], "keep": AHEAD_SECONDS, "step": name, "cwd": str(self.seed)}
        module = first_module(self.statements[name])
        template = self._template(module, env) if module else None
        if template is not None:
            where = kept.folder()
            if where is not None and kept.fork(template.name, {**order, "socket": str(where / socket_name)}):
                return _Waiting(socket_name, template.process, env, forked=True)
        order = {**order, "runtime": self.runtime, "runtime_file": RUNTIME_FILE}
        process = kept.start(socket_name, order, env, step=name, project=self.project, role=waiting.AHEAD)
        if process is None:
            return None
        self.supervisor.started(process.pid)
        return _Waiting(socket_name, process, env)

    def _template(self, module: str, env: dict[str, str]) -> _Waiting | None:
        """The run's template of ``module`` in ``env`` (started now if it has none); None when it cannot start."""
        key = json.dumps([module, env], sort_keys=True)
        if key not in self._templates:
            socket_name = f"ahead-{os.getpid()}-{time.time_ns():x}-{module}"
            # it imports in a folder of its own, seeded as a step's (``<run>/files/.template-MODULE``): what an import
            # writes lands there, never next to the notebook (and makes it stale: the steps then start afresh)
            step = f".template-{module}"
            order: dict[str, Any] = {"imports": {"prelude": [f"import {module}"], "cell": []}, "step": step}
            order |= {"runtime": self.runtime, "runtime_file": RUNTIME_FILE}
            order |= {"keep": AHEAD_SECONDS, "cwd": str(self.seed)}
            process = kept.start(socket_name, order, env, step=module, project=self.project, role=waiting.TEMPLATE)
            if process is None:
                return None
            self.supervisor.started(process.pid)
            self._templates[key] = _Waiting(socket_name, process, env)
        return self._templates[key]

    def take(self, full_command: list[str], env: dict[str, str]) -> kept.Running | None:
        """The process kept warm (by an earlier run) or waiting (started ahead in this run) for the step
        ``full_command`` runs, now running that command; None when there is none, or its setting would differ
        from the command's (the step then starts afresh)."""
        step = _step_of(full_command)
        with self._lock:
            self._used.add(step or "")
            waiting = self._waiting.pop(step, None) if step else None
            self._fill()
        launchable = full_command[:3] == self.command and runtime_of(full_command) == self.runtime
        if step in self.statements and launchable and _stable(env) == self._setting_env(step):
            taken = kept.take(self._kept_as(step), full_command[3:], env, os.getcwd())
            if taken is not None:
                self.supervisor.started(taken.pid)
                if waiting is not None:
                    self._discard(waiting)
                return taken
        if waiting is None:
            return None
        if waiting.env == env and launchable and (not waiting.forked or self._forked(waiting)):
            # still importing: the step waits for it, as it would for its own imports (the run's own process)
            taken = kept.take_named(waiting.name, full_command[3:], env, os.getcwd(), ready_seconds=None)
            if taken is not None:
                if waiting.forked:  # its own session now; its template reaps it
                    self.supervisor.started(taken.pid)
                else:
                    taken.child = waiting.process
                return taken
        self._discard(waiting)
        return None

    @staticmethod
    def _forked(waiting: _Waiting) -> bool:
        """Wait for the template to fork ``waiting`` (once its import is done: the step waits for it, as for its
        own imports); False when the template ended first."""
        path = kept.address(waiting.name)
        while waiting.process.poll() is None:
            if os.path.exists(path) and kept.listening(path):
                return True
            time.sleep(0.01)
        return False

    def _setting_env(self, name: str) -> dict[str, str]:
        return _stable({**os.environ, **self.env[name]})

    def _is_kept(self, name: str, names: list[str]) -> bool:
        return bool(kept.kept_for(self._kept_as(name), names))

    def _kept_as(self, name: str) -> str:
        """What the socket names of processes kept for step ``name`` in this run's setting start with (kept.py);
        computed once per step (it hashes the runtime's source)."""
        if name not in self._keys:
            setting = [sys.executable, self.environment, self.runtime, self.statements[name], self._setting_env(name)]
            self._keys[name] = kept.key([*setting, str(self.seed), self.beside, self.process], self.project)
        return self._keys[name]

    def keep(self, ran: list[str]) -> list[str]:
        """Keep processes warm for the next run: for the steps that ran, latest in the notebook first, up to
        ``limit`` of them (one per job) and ``kept.KEEP_PER_RUN``, as many as memory allows (``kept.make_room``:
        this user's oldest kept processes stop when there would be more than ``kept.KEEP_IN_ALL`` or the memory
        budget would be exceeded). The steps it kept one for."""
        if not kept.keep_seconds():
            return []
        names = kept.kept()
        chosen = [n for n in reversed(self.order) if n in ran and n in self.statements and not self._is_kept(n, names)]
        chosen = chosen[: kept.make_room(min(len(chosen), self.limit, kept.KEEP_PER_RUN))]
        for name in chosen:
            env, statements = self._setting_env(name), self.statements[name]
            key, seed = self._kept_as(name), str(self.seed)
            kept.keep(key, self.runtime, RUNTIME_FILE, statements, env, seed, step=name, project=self.project)
        return chosen

    def close(self) -> None:
        """Stop the processes no step took (their steps were cached, or the run stopped), and the templates (with
        the processes they forked that no step took: those are in their process groups)."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting.values()), {}
            templates, self._templates = list(self._templates.values()), {}
        for w in waiting + templates:
            self._discard(w)

    def _discard(self, waiting: _Waiting) -> None:
        if waiting.forked:  # asked to stop; if its template has not forked it yet, it goes with the template
            kept.stop([waiting.name])
            return
        process = waiting.process
        with contextlib.suppress(OSError):  # gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        with contextlib.suppress(OSError):  # its socket's file (kept.kept() removes those killed ones leave)
            os.unlink(kept.address(waiting.name))
        self.supervisor.ended(process.pid)


def process_setting() -> list[Any]:
    """What a process inherits besides its environment, which a kept process must share with the run it serves:
    umask, resource limits, niceness, CPU affinity, groups."""
    with open("/proc/self/status", encoding="ascii") as fh:  # os.umask can read it only by setting it (threads)
        umask = next((line.split()[1] for line in fh if line.startswith("Umask:")), "")
    names = sorted(name for name in dir(resource) if name.startswith("RLIMIT_"))
    limits = [(name, resource.getrlimit(getattr(resource, name))) for name in names]
    return [umask, limits, os.nice(0), sorted(os.sched_getaffinity(0)), sorted(os.getgroups())]


def _names_beside(seed: Path) -> set[str]:
    """The module names the files and folders next to the notebook could be imported as: a folder named as a module
    (a package, or a namespace one), a file with a suffix the import system loads (``.py``, ``.pyc``, an extension
    module's). A data file cannot be imported (``notes.txt``, ``data.csv``, ``nb.pipeline.yaml``, and ``.nb2kfp``,
    which a first run makes): a new one changes nothing, and a process kept warm stays usable."""
    suffixes = sorted(importlib.machinery.all_suffixes(), key=len, reverse=True)
    names = set()
    try:
        entries = os.listdir(seed)
    except OSError:
        return set()
    for entry in entries:
        if os.path.isdir(seed / entry):
            name = entry
        else:
            suffix = next((s for s in suffixes if entry.endswith(s)), None)
            name = entry[: -len(suffix)] if suffix else ""
        if name.isidentifier():
            names.add(name)
    return names


def _stable(env: dict[str, str]) -> dict[str, str]:
    """A step's environment less what each run sets anew (its folders, its artifact key)."""
    return {k: v for k, v in env.items() if k not in RUN_ENV}


def _step_of(full_command: list[str]) -> str | None:
    """The step name in a notebook step's command (its ``--spec``), or None for any other command."""
    if "--spec" not in full_command:
        return None
    try:
        spec = json.loads("".join(full_command[full_command.index("--spec") + 1 :]))
    except ValueError:
        return None
    step = spec.get("step") if isinstance(spec, dict) else None
    return step if isinstance(step, str) else None
