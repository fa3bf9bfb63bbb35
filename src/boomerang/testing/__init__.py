"""Helpers shared by the tests (``tests/``) and the benchmark scripts (``benchmarks/``); not for users.

* :mod:`boomerang.testing.tiny`: tiny diffusion models with random weights, built offline
  from configs (a pixel DDPM and a Stable-Diffusion-shaped pipeline).
* :func:`console_script`: the ``boomerang`` command of the Python that runs the caller.

Tests import these from the package, and so do the benchmarks: neither imports the
other's files. Importing this package imports no torch.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

__all__ = ["console_script"]


def console_script() -> str:
    """The path of the ``boomerang`` console script beside this Python (``sys.executable``), so that
    ``.venv/bin/python X.py`` runs that venv's CLI without activating it; else the one on ``PATH``.

    Raises:
        FileNotFoundError: neither exists (the package is not installed).
    """
    beside = pathlib.Path(sys.executable).parent / "boomerang"
    exe = str(beside) if beside.is_file() else shutil.which("boomerang")
    if not exe:
        raise FileNotFoundError("no `boomerang` command next to this Python or on PATH; install the package first")
    return exe
