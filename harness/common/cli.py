"""What every `python -m harness.<verb>` shares: bad input ends in one line, not a traceback.

A `ValueError`, `FileNotFoundError` or `FloatingPointError` from a config, plan, data,
weights or results-folder check (or a non-finite loss) is printed as
`<prog>: error: <message>` and the command exits with status 2; `--debug` shows the full
traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from harness.common.threads import apply_thread_policy

USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)
T = TypeVar("T")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the full Python traceback"
    )


def guarded(prog: str, debug: bool, fn: Callable[[], T]) -> T:
    """fn() under the CPU thread policy (`harness.common.threads`); a USER_ERRORS exception
    exits 2 with one line on stderr (re-raised if debug)."""
    try:
        apply_thread_policy()
        return fn()
    except USER_ERRORS as err:
        if debug:
            raise
        message = str(err).strip() or type(err).__name__
        print(f"{prog}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        sys.exit(2)


# the name pip installs a package under, where it differs from the name it is imported by
PIP_NAMES = {"sklearn": "scikit-learn", "PIL": "pillow", "yaml": "pyyaml",
             "psycopg2": "psycopg2-binary", "cv2": "opencv-python"}  # fmt: skip


def pip_name(module: str) -> str:
    """The distribution that provides the top-level module `module` (`sklearn` ->
    `scikit-learn`); the module's own name where the two agree."""
    return PIP_NAMES.get(module, module)


def missing_package(prog: str, err: ModuleNotFoundError) -> int:
    """A package the harness imports but this install lacks (a bare CUDA image, an offline
    machine): one line naming it, the pip command that installs it and where its wheels
    come from (docs/gpu.md); exit 2. A missing module of the harness itself is a broken
    checkout and is re-raised."""
    package = (err.name or "").split(".")[0]
    if package in ("", "harness"):
        raise err
    fix = f"pip install {pip_name(package)} (offline: the wheels docs/gpu.md gathers with pip "
    fix += "download)"
    print(f"{prog}: error: the package {package!r} is missing: {fix}", file=sys.stderr)
    return 2
