"""``nb2kfp ARGS`` tied to the webhook server that started it, run as ``python -I -m nb2kfp.delivery.tethered ARGS``
by its workers (:mod:`nb2kfp.delivery.worker`): it exits (status :data:`ORPHANED`) as soon as its stdin closes, i.e.
when the server died (even by kill -9), so no orphan keeps writing into a checkout or output folder that a retry of
the same event then uses. ``-I``: the checkout it runs in (the pushed repository) is not on ``sys.path``, nor are the
user's site-packages and ``PYTHON*`` variables.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading

ORPHANED = 70  # EX_SOFTWARE


def _exit_when_stdin_closes() -> None:
    os.read(0, 1)  # the server never writes: this returns at end of file
    os._exit(ORPHANED)


def main() -> None:
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    sys.argv = ["nb2kfp", *sys.argv[1:]]
    runpy.run_module("nb2kfp", run_name="__main__", alter_sys=True)  # nb2kfp's __main__: delivery is below the cli


if __name__ == "__main__":
    main()
