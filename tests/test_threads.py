"""The CPU thread policy (harness.common.threads): one thread fewer than the cores unless
the environment says otherwise, applied by every command (benchmarks/thread_policy.csv)."""

import pytest
import torch

from harness.common.cli import guarded
from harness.common.threads import policy_threads


def test_one_thread_fewer_than_the_cores_unless_told():
    assert policy_threads(2, {}) == 1
    assert policy_threads(16, {}) == 15
    assert policy_threads(1, {}) == 1 and policy_threads(None, {}) == 1
    assert policy_threads(2, {"OMP_NUM_THREADS": "2"}) == 2
    assert policy_threads(16, {"OMP_NUM_THREADS": "4", "TPDIFF_THREADS": "3"}) == 3
    with pytest.raises(ValueError, match="TPDIFF_THREADS='two' is not a whole number"):
        policy_threads(2, {"TPDIFF_THREADS": "two"})
    with pytest.raises(ValueError, match="OMP_NUM_THREADS=0: set it to 1 or more"):
        policy_threads(2, {"OMP_NUM_THREADS": "0"})


def test_every_command_runs_under_the_policy(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("TPDIFF_THREADS", "1")
    try:
        assert guarded("x", False, torch.get_num_threads) == 1
    finally:
        torch.set_num_threads(before)
