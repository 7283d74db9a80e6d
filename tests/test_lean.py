"""Lean steps: a step runs only the imports-cell imports it (or the prelude's code) uses, never a statement
with side effects, with the notebook's line numbers kept."""

from __future__ import annotations

from nb2kfp.frontend.lean import prelude_for
from nb2kfp.ir import CodeCell

IRIS_IMPORTS = CodeCell(
    2,
    "import pandas as pd\n"
    "from sklearn.datasets import load_iris\n"
    "from sklearn.ensemble import RandomForestClassifier\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.metrics import accuracy_score\n"
    "from sklearn.model_selection import train_test_split\n",
)


def kept(prelude: tuple[CodeCell, ...], step: str, imports: set[int] | None = None) -> list[str]:
    out = prelude_for(prelude, imports if imports is not None else {prelude[0].index}, (CodeCell(9, step),))
    for before, after in zip(prelude, out, strict=True):
        assert before.source.count("\n") == after.source.count("\n")  # tracebacks keep the notebook's lines
    return [line for cell in out for line in cell.source.splitlines() if line.strip()]


def test_iris_steps_import_only_what_they_use() -> None:
    evaluate = "best_accuracy = max(forest_accuracy, logreg_accuracy)\nprint(best_accuracy)"
    assert kept((IRIS_IMPORTS,), evaluate) == []
    logreg = "logreg = LogisticRegression(C=C, max_iter=500)\nacc = accuracy_score(y_test, logreg.predict(X_test))"
    assert kept((IRIS_IMPORTS,), logreg) == [
        "from sklearn.linear_model import LogisticRegression",
        "from sklearn.metrics import accuracy_score",
    ]


def test_statements_with_side_effects_stay_with_the_imports_they_use() -> None:
    imports = CodeCell(
        1,
        "import matplotlib\nmatplotlib.use('Agg')\n"
        "import pandas as pd\npd.set_option('display.max_columns', 5)\n"
        "import warnings\nwarnings.filterwarnings('ignore')\n"
        "import sklearn\nsklearn.set_config(transform_output='pandas')\n"
        "try:\n    import ujson as json\nexcept ImportError:\n    import json\n"
        "from os.path import *\n"
        "import numpy as np\n",
    )
    lines = kept((imports,), "x = 1")
    assert "import numpy as np" not in lines
    assert lines == [line for line in imports.source.splitlines() if line != "import numpy as np"]


def test_names_the_functions_cell_uses_are_kept_for_every_step() -> None:
    imports = CodeCell(1, "import numpy as np\nimport pandas as pd\n")
    functions = CodeCell(2, "def norm(v):\n    return np.linalg.norm(v)\n")
    assert kept((imports, functions), "y = 2", {1}) == [
        "import numpy as np",
        "def norm(v):",
        "    return np.linalg.norm(v)",
    ]


def test_steps_that_reach_names_indirectly_keep_every_import() -> None:
    imports = CodeCell(1, "import numpy as np\nimport json\n")
    assert kept((imports,), "get_ipython().run_line_magic('timeit', 'np.zeros(3)')") == [
        "import numpy as np",
        "import json",
    ]
    assert kept((imports,), "z = eval('np.zeros(3)')") == ["import numpy as np", "import json"]


def test_imports_sharing_a_line_and_accessor_modules_are_kept() -> None:
    imports = CodeCell(1, "import os; os.chdir('.')\nimport hvplot.pandas\nimport numpy as np\n")
    assert kept((imports,), "plot = df.hvplot()") == ["import os; os.chdir('.')", "import hvplot.pandas"]


def test_only_imports_cells_are_thinned() -> None:
    functions = CodeCell(3, "import numpy as np\n")
    assert kept((functions,), "x = 1", set()) == ["import numpy as np"]
