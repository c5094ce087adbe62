"""`phases.json`: where a study's wall-clock time goes, phase by phase.

Each phase (`with Phases(path)("train and score"): ...`) adds its seconds to the record of
`path`, so a resumed job sums its sessions; `sessions` counts how many times each phase
ran. The running phase's seconds are written every `every` seconds while it runs, so a
session that is killed (not only one that ends) keeps its time, less at most `every`
seconds. The README's time breakdown of the main job is read from this file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.common.io import write_json


class Phases:
    def __init__(self, path: Path, every: float = 30.0):
        self.path = path
        self.every = every

    def read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    @contextmanager
    def __call__(self, phase: str, **info) -> Iterator[None]:
        """Time the block as `phase`; `info` (e.g. workers) is stored with it."""
        start = time.perf_counter()
        before = self.read().get(phase, {"seconds": 0.0, "sessions": 0})
        entry = before | info | {"sessions": before["sessions"] + 1}

        def save() -> None:
            seconds = before["seconds"] + time.perf_counter() - start
            write_json(self.path, self.read() | {phase: entry | {"seconds": seconds}})

        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.every):
                save()

        beating = threading.Thread(target=beat, name=f"phases:{phase}", daemon=True)
        beating.start()
        try:
            yield
        finally:  # an error or an interrupt spent the time too
            done.set()
            beating.join()
            save()
