"""A report's outputs, written as a set: all of them or none.

`staged(out)` yields a hidden folder beside `out` (`.<name>.report-XXXX`, on the same
filesystem). The report writes every output there; only when the block ends without an
error is each file renamed into `out` at the same relative path (subfolders kept). When
it fails, `out` is left as it was. Either way the staging folder is removed. The folder is
held meanwhile (`harness.common.lock`): a suite writing it in another process refuses the
redraw; the suite's own report, in its process, goes through.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.common.lock import owned


@contextmanager
def staged(out: str | Path) -> Iterator[Path]:
    """A fresh folder beside `out` whose files replace those of `out` once the block
    succeeds; `out` is untouched when it raises."""
    out = Path(out).resolve()
    with owned(out, "results folder"):  # a suite writing it (another process) refuses this
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.report-"))
        try:
            yield stage
            publish(stage, out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, out: Path) -> list[Path]:
    """Rename every file under `stage` onto the same relative path under `out` (each rename
    atomic); returns the paths written, in order."""
    written = []
    for src in sorted(p for p in stage.rglob("*") if p.is_file()):
        dest = out / src.relative_to(stage)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        written.append(dest)
    return written
