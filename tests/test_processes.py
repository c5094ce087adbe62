"""kill_tree: a process and everything below it end, sessions of their own included (as
torchrun's workers run), and the caller's own group is spared."""

import os
import subprocess
import sys
import time

import pytest

from harness.common.processes import descendants, ended, kill_tree

# a launcher that starts a worker in a session of its own, then both sleep
LAUNCHER = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
    "start_new_session=True)\n"
    "time.sleep(120)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_a_launcher_and_its_worker_in_another_session_both_end():
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not descendants(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (worker,) = descendants(proc.pid)
        assert not ended(worker)
        kill_tree(proc.pid)
        proc.wait(timeout=30)
        assert ended(worker)  # out of reach of the launcher's group, killed all the same
        assert not ended(os.getpid())  # the caller lives on
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
