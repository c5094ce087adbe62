"""`artifacts.json`: the identity of each derived file of a results folder (sample grids,
strips), so a file made from other weights or settings is remade instead of kept."""

from __future__ import annotations

import json
from pathlib import Path

from harness.common.io import write_json


class Artifacts:
    """The record of `<out>/artifacts.json`: file name -> the key of what made it."""

    def __init__(self, out: Path):
        self.path = out / "artifacts.json"
        self.keys = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def current(self, name: str, key: str) -> bool:
        return self.keys.get(name) == key and (self.path.parent / name).exists()

    def record(self, name: str, key: str) -> None:
        self.keys[name] = key
        write_json(self.path, self.keys)
