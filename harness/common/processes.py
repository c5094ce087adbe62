"""Ending a process and everything it started. A child started in a session of its own
(`start_new_session=True`) is out of reach of its parent's group, and torchrun starts each
worker that way: killing the launcher's group leaves the workers running, holding their
run folders. `kill_tree` finds every descendant first (through Linux's /proc; once a
parent dies its children are adopted by init and the link is lost), then kills each one's
group and waits for them to end."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of `pid`, or None when it is gone or /proc lacks it."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs, ...), parents first; [] without /proc."""
    children: dict[int, list[int]] = {}
    for entry in PROC.glob("[0-9]*"):
        found = _stat(int(entry.name))
        if found is not None:
            children.setdefault(found[1], []).append(int(entry.name))
    out, queue = [], [pid]
    while queue:
        kids = children.get(queue.pop(0), [])
        out += kids
        queue += kids
    return out


def ended(pid: int) -> bool:
    found = _stat(pid)
    return found is None or found[0] in "ZX"


def kill_tree(pid: int, wait_s: float = 30.0) -> None:
    """SIGKILL `pid`, every process below it and the process groups of all of them, then
    wait up to `wait_s` for them to end (the caller still reaps `pid` itself)."""
    tree = [pid, *descendants(pid)]
    own = os.getpgrp()
    for member in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(member)
            if group != own:  # never the caller's own group
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(ended(m) for m in tree[1:]):
        time.sleep(0.05)
