"""What is known about calls: which never change their arguments, which change their object, which seed the
global random state, which evaluate a formula string in the caller's namespace.

Names here feed :mod:`nb2kfp.frontend.analysis`; a call not listed is assumed to maybe change
what it is given (conservative), which only costs passing a value on that was unchanged.
"""

import ast
import re

# fmt: off
# Functions that never change their arguments.
PURE_FUNCTIONS = frozenset({
    "abs", "all", "any", "ascii", "bin", "bool", "bytes", "callable", "chr", "complex", "copy", "deepcopy", "dict",
    "dir", "display", "divmod", "enumerate", "filter", "float", "format", "getattr", "hasattr", "hash", "hex", "id",
    "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "oct", "ord", "pow", "print",
    "range", "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "type", "vars", "zip",
})

# Methods that never change their object or arguments (unless given inplace=True).
PURE_METHODS = frozenset({
    "abs", "agg", "aggregate", "all", "any", "apply", "argmax", "argmin", "assign", "astype", "between", "clip",
    "copy", "corr", "count", "cumsum", "decision_function", "decode", "describe", "diff", "difference", "dot",
    "drop", "drop_duplicates", "dropna", "duplicated", "encode", "endswith", "equals", "explode", "fillna", "filter",
    "flatten", "format", "get", "get_params", "groupby", "head", "iloc", "index", "info", "intersection", "isin",
    "isna", "isnull", "issubset", "issuperset", "items", "join", "keys", "loc", "lower", "map", "mask", "max",
    "mean", "median", "melt", "memory_usage", "merge", "min", "nlargest", "nonzero", "notna", "nsmallest", "nunique",
    "pct_change", "pivot", "pivot_table", "predict", "predict_log_proba", "predict_proba", "prod", "quantile",
    "query", "ravel", "rename", "replace", "resample", "reset_index", "reshape", "rolling", "round", "sample",
    "score", "select_dtypes", "set_index", "shift", "sort_index", "sort_values", "split", "startswith", "std",
    "strip", "sum", "tail", "to_csv", "to_dict", "to_json", "to_list", "to_numpy", "to_parquet", "to_string",
    "tolist", "transform", "union", "unique", "upper", "value_counts", "values", "var", "where",
})
# Methods that change their object but never the data passed in (an estimator's fit).
ARG_SAFE_METHODS = PURE_METHODS | {"fit", "fit_transform", "partial_fit"}

# Methods that change their object in place.
MUTATING_METHODS = frozenset({
    "__setitem__", "add", "append", "appendleft", "clear", "close", "difference_update", "discard", "extend",
    "extendleft", "fill", "fit", "fit_transform", "insert", "intersection_update", "itemset", "partial_fit", "pop",
    "popitem", "put", "remove", "resize", "reverse", "rotate", "seek", "set_params", "setdefault", "shuffle", "sort",
    "symmetric_difference_update", "update", "write",
})

# Methods of `random` / `numpy.random` that set the global random state.
SEEDING_METHODS = frozenset({"seed", "set_state", "setstate"})
# Libraries whose import makes a step keep process state no variable holds (python-control numbers its unnamed
# systems with a class counter): the step runtime's _STATE_PARTS says how each part is read and set.
STATEFUL_IMPORTS = frozenset({"control"})

# Calls that evaluate a formula or expression string in the caller's namespace (formulaic, patsy, statsmodels'
# formula API, pandas' query/eval): the names it uses are variables of the notebook, or columns of the data.
FORMULA_CALLS = frozenset({
    "Formula", "model_matrix", "dmatrix", "dmatrices", "from_formula", "ols", "wls", "gls", "glm", "logit",
    "probit", "mnlogit", "poisson", "negativebinomial", "quantreg", "mixedlm", "rlm", "gee", "ordinal_gee",
    "nominal_gee", "phreg", "query", "eval",
})

# Calls (functions or methods) that change their first argument.
ARG_MUTATING_CALLS = frozenset({
    "copyto", "fill_diagonal", "heapify", "heappop", "heappush", "place", "shuffle",
})
# fmt: on


def seeds_global_random_state(func: ast.expr) -> bool:
    """``np.random.seed(..)``, ``numpy.random.set_state(..)``, ``random.seed(..)``: the global random state."""
    if not isinstance(func, ast.Attribute) or func.attr not in SEEDING_METHODS:
        return False
    owner = func.value
    return (isinstance(owner, ast.Name) and owner.id == "random") or (
        isinstance(owner, ast.Attribute) and owner.attr == "random"
    )


def configures_shell(node: ast.Call) -> bool:
    """``%config InteractiveShell.ast_node_interactivity = ...`` (a ``run_line_magic('config', ...)`` call): what
    the following cells show, a setting of the process that later steps receive (the runtime's PROCESS_STATE)."""
    func, args = node.func, node.args
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "run_line_magic"
        and len(args) >= 2
        and isinstance(args[0], ast.Constant)
        and args[0].value == "config"
        and isinstance(args[1], ast.Constant)
        and "ast_node_interactivity" in str(args[1].value)
    )


def formula_names(node: ast.Call) -> set[str]:
    """The names a formula string given to a formula call uses (``"y ~ C(g, contr.custom(coding))"``: y, C, g,
    contr, coding); attributes (``custom``) and quoted text are not names."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if called not in FORMULA_CALLS:
        return set()
    texts = [*node.args[:1], *(k.value for k in node.keywords if k.arg in ("formula", "expr"))]
    out: set[str] = set()
    for text in texts:
        if isinstance(text, ast.Constant) and isinstance(text.value, str):
            unquoted = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", " ", text.value)
            out.update(re.findall(r"(?<![\w.])[A-Za-z_]\w*", unquoted))
    return out
