"""Makes the modules named in NB2KFP_TEST_BLOCK (comma-separated) fail to import, as if not installed."""

import os
import sys

_BLOCKED = frozenset(m for m in os.environ.get("NB2KFP_TEST_BLOCK", "").split(",") if m)


class _Block:
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, _Block())
