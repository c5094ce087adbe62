"""One writer per folder (harness.common.lock): a second job is refused naming the holder, a
dead holder's lock is taken over, waiting holders take turns, and a process re-enters its
own lock. With real processes, since that is where the lock matters."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.common.lock import FolderBusy, holder, lock_file, owned

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _holding(folder: Path, seconds: float, then: str = "") -> subprocess.Popen:
    """A separate process that holds `folder` for `seconds` (then runs `then`, e.g. a kill
    of itself), having printed 'held' once it holds it."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from harness.common.lock import owned
        with owned({str(folder)!r}, "test folder"):
            print("held", flush=True)
            time.sleep({seconds})
            {then}
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    proc = _holding(folder, 30)
    try:
        with pytest.raises(FolderBusy) as err:
            with owned(folder, "training run"):
                pass
        message = str(err.value)
        assert f"pid {proc.pid} on host {socket.gethostname()}" in message
        assert "training run" in message and str(folder) in message
        assert holder(folder)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    proc = _holding(folder, 0, then="os.kill(os.getpid(), 9)")
    assert proc.wait() == -signal.SIGKILL
    assert json.loads(lock_file(folder).read_text())["pid"] == proc.pid  # never released
    with owned(folder, "training run"):
        assert holder(folder)["pid"] == os.getpid()
    assert f"its last holder, pid {proc.pid}" in capsys.readouterr().err
    assert lock_file(folder).read_text() == ""  # a clean release empties the file


def test_waiting_holders_take_turns(tmp_path, capsys):
    folder = tmp_path / "run"
    proc = _holding(folder, 1.5)
    t0 = time.monotonic()
    with owned(folder, "training run", wait=True):
        waited = time.monotonic() - t0
        assert holder(folder)["pid"] == os.getpid()
    assert waited > 0.5
    assert f"waiting for {folder}" in capsys.readouterr().err
    proc.wait()


def test_a_process_reenters_its_own_lock_and_the_folder_can_move(tmp_path):
    folder = tmp_path / "run"
    with owned(folder, "training run", wait=True):
        with owned(folder, "training run"):  # e.g. a sweep worker that waited, then trains
            assert holder(folder)["pid"] == os.getpid()
        folder.rename(tmp_path / "aside")  # --fresh moves the folder: the lock stays
        proc = subprocess.run(
            [sys.executable, "-c", f"from harness.common.lock import owned\n"
             f"with owned({str(folder)!r}): pass"],
            env=ENV, capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 1 and "FolderBusy" in proc.stderr
    assert holder(folder) == {}


def test_a_file_in_the_way_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="a file is in the way"):
        with owned(tmp_path / "file" / "run"):
            pass


@pytest.mark.slow
def test_two_trainings_of_one_run(tmp_path):
    """The issue's case: the second `harness.train` on a run exits 2 naming the first, and
    the first finishes with a complete log."""
    args = ["size=tiny", "frames=8", "batch_size=4", "num_videos=64", "warmup_steps=2",
            "steps=150", "ckpt_every=50", f"out_dir={tmp_path}", "name=dual"]  # fmt: skip
    cmd = [sys.executable, "-m", "harness.train", *args]
    first = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    log = tmp_path / "dual" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 3):
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.05)
    second = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the second must be tried while the first still trains"
    assert second.returncode == 2, second.stderr
    err = second.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"in use by pid {first.pid} on host {socket.gethostname()}" in err
    assert first.wait(timeout=300) == 0
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, 151))


def test_a_second_suite_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "suite"
    proc = _holding(out, 60)
    try:
        cmd = [sys.executable, "-m", "harness.run", "--suite", "engine", "--out", str(out)]
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        err = done.stderr.strip()
        assert len(err.splitlines()) == 1 and f"pid {proc.pid}" in err, err
        assert list(out.iterdir()) == []  # nothing written
    finally:
        proc.kill()
        proc.wait()


def test_a_report_is_not_redrawn_into_a_folder_another_process_writes(tmp_path):
    import shutil

    folder = tmp_path / "paper"
    shutil.copytree(ROOT / "results" / "paper", folder)
    proc = _holding(folder, 60)
    try:
        cmd = [sys.executable, "-m", "harness.report", str(folder)]
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2
        err = done.stderr.strip()
        assert len(err.splitlines()) == 1 and f"in use by pid {proc.pid}" in err, err
    finally:
        proc.kill()
        proc.wait()
