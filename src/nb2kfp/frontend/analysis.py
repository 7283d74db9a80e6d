"""Which names a piece of module-level code reads, binds and changes in place.

The analysis is conservative where it cannot prove a value unchanged (a variable handed to an
unknown function *may* be changed) and precise where it can (``print(df)``, ``df.head()``,
``len(x)`` change nothing). Only definite changes (rebinding, ``x[k] = v``, ``x.append(..)``,
``inplace=True`` ...) feed lint's notebook-order warnings; possible changes only decide which
values flow between steps.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

from nb2kfp.frontend import magics
from nb2kfp.frontend.calls import (
    ARG_MUTATING_CALLS,
    ARG_SAFE_METHODS,
    MUTATING_METHODS,
    PURE_FUNCTIONS,
    PURE_METHODS,
    STATEFUL_IMPORTS,
    configures_shell,
    formula_names,
    seeds_global_random_state,
)

BUILTIN_NAMES = frozenset(dir(builtins)) | {"__file__", "__name__", "display", "get_ipython", "In", "Out"}


_COMPARE = {
    ast.Lt: "__lt__",
    ast.LtE: "__le__",
    ast.Gt: "__gt__",
    ast.GtE: "__ge__",
    ast.Eq: "__eq__",
    ast.NotEq: "__ne__",
}


def _python_version_test(test: ast.expr) -> bool | None:
    """The value of ``sys.version_info < (3, 0)`` (or ``sys.version_info[0] == 2``, ``sys.version_info.major >= 3``)
    on every Python a step may run (3.10 and later), or None when the test is not one of those or depends on the
    release (notebooks written for Python 2 and 3 guard Python 2 code with it: ``unicode(...)``)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _COMPARE):
        return None
    left = test.left
    major = isinstance(left, ast.Subscript) and ast.unparse(left.slice) == "0"
    major = major or (isinstance(left, ast.Attribute) and left.attr == "major")
    if ast.unparse(left.value if major else left) != "sys.version_info":  # type: ignore[attr-defined]
        return None
    try:
        other = ast.literal_eval(test.comparators[0])
    except ValueError:
        return None
    if not (type(other) is int if major else isinstance(other, tuple) and all(type(v) is int for v in other)):
        return None
    method = _COMPARE[type(test.ops[0])]
    results = {getattr(3 if major else (3, minor), method)(other) for minor in (10, 99)}
    return results.pop() if len(results) == 1 else None


@dataclass
class Facts:
    """What a block of module-level code does with names, in execution order."""

    reads: set[str] = field(default_factory=set)  # read before being (definitely) bound here
    on_error: set[str] = field(default_factory=set)  # of ``reads``, those read only as an ``except`` clause's type
    deferred: set[str] = field(default_factory=set)  # read inside function/class bodies
    binds: set[str] = field(default_factory=set)  # bound at module level (possibly conditionally)
    definite: set[str] = field(default_factory=set)  # bound on every path
    mutates: set[str] = field(default_factory=set)  # changed in place for sure
    may_mutate: set[str] = field(default_factory=set)  # maybe changed in place
    deleted: set[str] = field(default_factory=set)  # deleted and not bound again
    star_import: bool = False
    stars: list[str] = field(default_factory=list)  # the `from M import *` statements, in order
    imported: dict[str, str] = field(default_factory=dict)  # name -> import statement that binds it
    first_line: dict[str, int] = field(default_factory=dict)  # first line each name is read or changed at
    # What using a name's value may read later (a function's globals are read when it is called, in the step that
    # calls it): ``needs`` are the globals read inside the function/class/lambda bodies of the statements that set
    # it, ``held`` the names its value was made from (it may hold one of those functions).
    needs: dict[str, set[str]] = field(default_factory=dict)
    held: dict[str, set[str]] = field(default_factory=dict)
    # seeds the global random state (np.random.seed, random.seed...) or imports a library with process state
    process_state: bool = False
    formula_names: set[str] = field(default_factory=set)  # names in formula strings: variables, or data columns
    call: bool = False  # a catalog component's call: it takes its arguments and nothing else

    def free(self) -> set[str]:
        """Names this code needs from outside (builtins excluded)."""
        return (self.reads | (self.deferred - self.binds)) - BUILTIN_NAMES

    def changes(self) -> set[str]:
        return self.binds | self.mutates | self.may_mutate | self.deleted

    def extend(self, other: Facts) -> None:
        """Append ``other`` (code that runs after this one) to these facts."""
        plain = (self.reads - self.on_error) | (other.reads - other.on_error)
        self.reads |= other.reads - self.definite
        self.on_error = ((self.on_error | other.on_error) & self.reads) - plain
        self.deferred |= other.deferred
        self.binds |= other.binds
        self.definite |= other.definite
        self.mutates |= other.mutates
        self.may_mutate |= other.may_mutate
        self.deleted = (self.deleted - other.binds) | other.deleted
        self.star_import |= other.star_import
        self.stars += other.stars
        for name in other.binds:
            self.imported.pop(name, None)
        self.imported.update(other.imported)
        for name, line in other.first_line.items():
            self.first_line.setdefault(name, line)
        for mine, theirs in ((self.needs, other.needs), (self.held, other.held)):
            for name, names in theirs.items():
                mine.setdefault(name, set()).update(names)
        self.process_state |= other.process_state
        self.formula_names |= other.formula_names


def analyse(tree: ast.Module) -> Facts:
    facts = Facts()
    bound = _Bound()
    for stmt in tree.body:  # statement by statement, to know what each name's value was made from
        part = Facts()
        bound = _Block(part).stmt(stmt, bound)
        needs = part.deferred - BUILTIN_NAMES
        held = part.first_line.keys() - BUILTIN_NAMES
        for name in part.binds | part.mutates | part.may_mutate:
            if needs:
                part.needs.setdefault(name, set()).update(needs)
            if held:
                part.held.setdefault(name, set()).update(held)
        facts.extend(part)
    facts.definite = bound.flat()
    return facts


class _Bound:
    """Names definitely bound so far. A branch gets a layer over its parent (O(1), not a copy of the set), so
    analysis time stays linear in the code's size however many statements and branches a cell holds."""

    def __init__(self, parent: _Bound | None = None) -> None:
        self.parent, self.added, self.removed = parent, set[str](), set[str]()

    def __contains__(self, name: str) -> bool:
        layer: _Bound | None = self
        while layer is not None:
            if name in layer.removed:
                return False
            if name in layer.added:
                return True
            layer = layer.parent
        return False

    def add(self, name: str) -> None:
        self.added.add(name)
        self.removed.discard(name)

    def discard(self, name: str) -> None:
        self.added.discard(name)
        self.removed.add(name)

    def branch(self) -> _Bound:
        return _Bound(self)

    def join(self, *branches: _Bound) -> _Bound:
        """After branches of which exactly one runs: bound if bound on every branch, unbound if any unbinds."""
        for name in set.intersection(*(b.added for b in branches)):
            self.add(name)
        for name in set.union(*(b.removed for b in branches)):
            self.discard(name)
        return self

    def flat(self) -> set[str]:
        assert self.parent is None
        return set(self.added)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _root_name(node.func.value)  # df.loc[...] / df.iloc[...]; x.method()[...]
    return node.id if isinstance(node, ast.Name) else None


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


class _Block:
    """Walks module-level statements, tracking which names are definitely bound so far."""

    def __init__(self, facts: Facts) -> None:
        self.f = facts
        self.handler_type = False  # reading an ``except`` clause's type: evaluated only when an exception happens

    # -- statements -------------------------------------------------------------------------
    def run(self, body: list[ast.stmt], bound: _Bound) -> _Bound:
        for stmt in body:
            bound = self.stmt(stmt, bound)
        return bound

    def stmt(self, s: ast.stmt, bound: _Bound) -> _Bound:  # noqa: C901 - one branch per kind of statement
        f = self.f
        if isinstance(s, ast.Assign):
            self.expr(s.value, bound)
            for t in s.targets:
                bound = self.store(t, bound)
        elif isinstance(s, ast.AnnAssign):
            if s.value is not None:
                self.expr(s.value, bound)
                bound = self.store(s.target, bound)
            self.expr(s.annotation, bound)
        elif isinstance(s, ast.AugAssign):
            self.expr(s.value, bound)
            if isinstance(s.target, ast.Name):
                self.load(s.target.id, s.target.lineno, bound)
                bound = self.bind(s.target.id, bound)
            else:
                self.expr(s.target, bound, store=True)
                self.mutate(s.target, s.lineno, definite=True)
        elif isinstance(s, ast.Import | ast.ImportFrom):
            modules = [s.module or ""] if isinstance(s, ast.ImportFrom) else [a.name for a in s.names]
            f.process_state |= any(m.split(".")[0] in STATEFUL_IMPORTS for m in modules)
            for alias in s.names:
                if alias.name == "*":
                    f.star_import = True
                    f.stars.append(ast.unparse(s))
                    continue
                name = alias.asname or alias.name.split(".")[0]
                bound = self.bind(name, bound)
                single = (
                    ast.ImportFrom(s.module, [alias], s.level) if isinstance(s, ast.ImportFrom) else ast.Import([alias])
                )
                self.f.imported[name] = ast.unparse(single)
        elif isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for d in s.decorator_list:
                self.expr(d, bound)
            if isinstance(s, ast.ClassDef):
                for b in [*s.bases, *(k.value for k in s.keywords)]:
                    self.expr(b, bound)
            else:
                self.arguments(s.args, bound)
            self.scope(s)
            bound = self.bind(s.name, bound)
        elif isinstance(s, ast.Delete):
            for t in s.targets:
                if isinstance(t, ast.Name):
                    self.load(t.id, t.lineno, bound)
                    f.deleted.add(t.id)
                    bound.discard(t.id)
                else:
                    self.expr(t, bound, store=True)
                    self.mutate(t, s.lineno, definite=True)
        elif isinstance(s, ast.If) and (python3 := _python_version_test(s.test)) is not None:
            self.expr(s.test, bound)  # the branch a Python 3 kernel never runs (`if sys.version_info < (3, 0):`)
            bound = self.run(s.body if python3 else s.orelse, bound)
        elif isinstance(s, ast.If | ast.While):
            self.expr(s.test, bound)
            then = self.run(s.body, bound.branch())
            other = self.run(s.orelse, bound.branch())
            if isinstance(s, ast.If):
                bound = bound.join(then, other)
        elif isinstance(s, ast.For | ast.AsyncFor):
            self.expr(s.iter, bound)
            self.run(s.body, self.store(s.target, bound.branch()))
            self.run(s.orelse, bound.branch())
        elif isinstance(s, ast.With | ast.AsyncWith):
            for item in s.items:
                self.expr(item.context_expr, bound)
                if item.optional_vars is not None:
                    bound = self.store(item.optional_vars, bound)
            bound = self.run(s.body, bound)
        elif isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
            body_bound = self.run(s.body, bound.branch())  # type: ignore[attr-defined]
            for h in s.handlers:  # type: ignore[attr-defined]
                if h.type is not None:
                    self.handler_type = True
                    self.expr(h.type, bound)
                    self.handler_type = False
                inner = self.bind(h.name, bound.branch()) if h.name else bound.branch()
                self.run(h.body, inner)
            body_bound = self.run(s.orelse, body_bound)  # type: ignore[attr-defined]
            bound = self.run(s.finalbody, bound.join(body_bound))  # type: ignore[attr-defined]
        elif isinstance(s, ast.Match):
            self.expr(s.subject, bound)
            for case in s.cases:
                inner = bound.branch()
                for node in ast.walk(case.pattern):
                    captured = getattr(node, "name", None)
                    if isinstance(captured, str):
                        inner = self.bind(captured, inner)
                    if isinstance(node, ast.MatchValue):
                        self.expr(node.value, bound)
                if case.guard is not None:
                    self.expr(case.guard, inner)
                self.run(case.body, inner)
        elif isinstance(s, ast.Global | ast.Nonlocal | ast.Pass | ast.Break | ast.Continue):
            pass
        else:  # Expr, Return, Raise, Assert, and anything newer: evaluate the expressions inside
            for child in ast.iter_child_nodes(s):
                if isinstance(child, ast.expr):
                    self.expr(child, bound)
        return bound

    # -- names -------------------------------------------------------------------------------
    def bind(self, name: str, bound: _Bound, *, definite: bool = True) -> _Bound:
        """Record a binding; a definite one joins ``bound`` in place (callers copy ``bound`` where a branch
        starts, never per statement, so a long cell costs linear time)."""
        self.f.binds.add(name)
        self.f.deleted.discard(name)
        self.f.imported.pop(name, None)
        if definite:
            bound.add(name)
        return bound

    def load(self, name: str, line: int, bound: _Bound) -> None:
        if name not in bound:
            if not self.handler_type:
                self.f.on_error.discard(name)
            elif name not in self.f.reads:
                self.f.on_error.add(name)
            self.f.reads.add(name)
        self.f.first_line.setdefault(name, line)

    def store(self, target: ast.expr, bound: _Bound, *, definite: bool = True) -> _Bound:
        if isinstance(target, ast.Name):
            return self.bind(target.id, bound, definite=definite)
        if isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                bound = self.store(elt, bound, definite=definite)
            return bound
        if isinstance(target, ast.Starred):
            return self.store(target.value, bound, definite=definite)
        # x[k] = v, x.attr = v: reads x and changes it in place
        self.expr(target, bound, store=True)
        self.mutate(target, target.lineno, definite=True)
        return bound

    def mutate(self, node: ast.expr, line: int, *, definite: bool) -> None:
        name = _root_name(node)
        if name is None:
            return
        (self.f.mutates if definite else self.f.may_mutate).add(name)
        self.f.first_line.setdefault(name, line)

    # -- expressions --------------------------------------------------------------------------
    def expr(self, node: ast.expr, bound: _Bound, *, store: bool = False) -> None:
        for sub in _walk_scope(node):
            if isinstance(sub, ast.Name):
                if isinstance(sub.ctx, ast.Load) or store:
                    self.load(sub.id, sub.lineno, bound)
            elif isinstance(sub, ast.NamedExpr):
                self.bind(sub.target.id, bound, definite=False)
            elif isinstance(sub, ast.Call):
                self.call(sub)
                self.magic(sub, bound)
            elif isinstance(sub, ast.Lambda):
                self.scope(sub)
            elif isinstance(sub, ast.GeneratorExp | ast.ListComp | ast.SetComp | ast.DictComp):
                self.scope(sub, bound)

    def call(self, node: ast.Call) -> None:
        func = node.func
        self.f.process_state |= seeds_global_random_state(func) or configures_shell(node)
        self.f.formula_names |= formula_names(node)
        args = [*node.args, *(k.value for k in node.keywords)]
        inplace = any(k.arg == "inplace" and _is_true(k.value) for k in node.keywords)
        if isinstance(func, ast.Attribute):
            method = func.attr
            if method in MUTATING_METHODS or inplace:
                self.mutate(func.value, node.lineno, definite=True)
            elif method not in PURE_METHODS:
                self.mutate(func.value, node.lineno, definite=False)
            args_safe = method in ARG_SAFE_METHODS and method not in ARG_MUTATING_CALLS
            if method in ARG_MUTATING_CALLS:
                for a in node.args[:1]:
                    self.mutate(a, node.lineno, definite=True)
        else:
            name = func.id if isinstance(func, ast.Name) else None
            args_safe = name in PURE_FUNCTIONS
            if name in ARG_MUTATING_CALLS:
                for a in node.args[:1]:
                    self.mutate(a, node.lineno, definite=True)
        if not args_safe:
            for a in args:
                if _root_name(a) is not None:
                    self.mutate(a, node.lineno, definite=False)

    def magic(self, node: ast.Call, bound: _Bound) -> None:
        """A magic that runs code (``%timeit``, ``%%capture``, ``%run`` ...: magics.embedded) reads and sets what
        that code does where IPython runs it."""
        found = magics.embedded(node)
        if found is None:
            return
        try:
            tree = ast.parse(found.code)
        except SyntaxError:
            return  # the step fails on it, in that cell
        for sub in ast.walk(tree):  # its lines are the magic's line
            if hasattr(sub, "lineno"):
                sub.lineno = sub.end_lineno = node.lineno  # type: ignore[attr-defined]
        if found.scope == "notebook":
            self.run(tree.body, bound)
        elif found.scope == "function":
            inner = ast.FunctionDef("inner", ast.arguments([], [], None, [], [], None, []), tree.body, [], None)
            self.scope(inner, bound)
        else:  # a script's own namespace: it reads nothing of the notebook's; its names join it
            for name in analyse(tree).binds:
                if not name.startswith("__"):
                    self.bind(name, bound, definite=False)
        for name in found.binds:
            self.bind(name, bound)

    def arguments(self, args: ast.arguments, bound: _Bound) -> None:
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.expr(default, bound)

    def scope(self, node: ast.AST, bound: _Bound | None = None) -> None:
        """A nested scope. Comprehensions (``bound`` given) run at once: their free names are reads.
        Functions, lambdas and classes run later: their free names are deferred. ``global`` names
        a function binds, and free names it may change, count for the module."""
        names = _ScopeNames.of(node)
        self.f.process_state |= names.process_state
        local = names.local
        if bound is not None:  # a comprehension: := binds in the enclosing (module) scope
            local -= names.walrus
            for name in names.walrus:
                self.bind(name, bound, definite=False)
        for name in names.declared_global:
            local.discard(name)
            self.f.binds.add(name)
            self.f.may_mutate.add(name)
        for n in names.loads:
            if n.id in local:
                continue
            if bound is not None:
                self.load(n.id, n.lineno, bound)
            else:
                self.f.deferred.add(n.id)
                self.f.first_line.setdefault(n.id, n.lineno)
        self.f.may_mutate |= (names.changed - local - {""}) | (names.changed & names.declared_global)


@dataclass
class _ScopeNames:
    """What the code of a nested scope (a function, lambda, class or comprehension) does with names."""

    local: set[str] = field(default_factory=set)  # bound in the scope: its parameters, assignments, imports...
    declared_global: set[str] = field(default_factory=set)
    walrus: set[str] = field(default_factory=set)  # bound with :=
    loads: list[ast.Name] = field(default_factory=list)  # every read
    changed: set[str] = field(default_factory=set)  # roots of what it may change in place ("" for no name)
    process_state: bool = False  # seeds a global random state

    @classmethod
    def of(cls, node: ast.AST) -> _ScopeNames:
        names = cls()
        for sub in ast.walk(node):
            if sub is not node:
                names.see(sub)
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.local.discard(node.name)  # its name inside is the module's (a recursive call reads it)
        return names

    def see(self, sub: ast.AST) -> None:
        if isinstance(sub, ast.Global):
            self.declared_global.update(sub.names)
        elif isinstance(sub, ast.arg):
            self.local.add(sub.arg)
        elif isinstance(sub, ast.Name):
            if isinstance(sub.ctx, ast.Load):
                self.loads.append(sub)
            else:
                self.local.add(sub.id)
        elif isinstance(sub, ast.NamedExpr):
            self.walrus.add(sub.target.id)
        elif isinstance(sub, ast.AugAssign) and isinstance(sub.target, ast.Name):
            self.loads.append(ast.Name(sub.target.id, ast.Load(), lineno=sub.lineno))
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            self.local.add(sub.name)
        elif isinstance(sub, ast.alias):
            self.local.add((sub.asname or sub.name).split(".")[0])
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            self.local.add(sub.name)
        elif isinstance(sub, ast.Subscript | ast.Attribute) and not isinstance(sub.ctx, ast.Load):
            self.changed.add(_root_name(sub) or "")
        elif isinstance(sub, ast.Call):
            self.call(sub)

    def call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and node.func.attr not in PURE_METHODS:
            self.changed.add(_root_name(node.func.value) or "")
        self.process_state |= seeds_global_random_state(node.func)
        callee = node.func.id if isinstance(node.func, ast.Name) else None
        if callee not in PURE_FUNCTIONS:
            self.changed.update(_root_name(a) or "" for a in node.args)


def _walk_scope(node: ast.AST) -> list[ast.AST]:
    """Nodes of an expression, not descending into nested scopes (lambdas, comprehensions)."""
    out: list[ast.AST] = []
    stack = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        if isinstance(n, ast.Lambda | ast.GeneratorExp | ast.ListComp | ast.SetComp | ast.DictComp):
            continue  # a nested scope: the caller analyses it with scope()
        stack.extend(ast.iter_child_nodes(n))
    return out


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True
