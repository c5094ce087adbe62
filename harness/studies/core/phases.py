"""`phases.json`: where a study's wall-clock time goes, phase by phase.

Each phase (`with Phases(path)("train and score"): ...`) adds its seconds to the record of
`path`, so a resumed job sums its sessions; `sessions` counts how many times each phase
ran. The README's time breakdown of the main job is read from this file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.common.io import write_json


class Phases:
    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    @contextmanager
    def __call__(self, phase: str, **info) -> Iterator[None]:
        """Time the block as `phase`; `info` (e.g. workers) is stored with it."""
        start = time.perf_counter()
        yield
        record = self.read()
        entry = record.get(phase, {"seconds": 0.0, "sessions": 0})
        entry = entry | info | {"seconds": entry["seconds"] + time.perf_counter() - start,
                                "sessions": entry["sessions"] + 1}  # fmt: skip
        write_json(self.path, record | {phase: entry})
