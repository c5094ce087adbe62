"""The CPU thread policy of every `python -m harness.*` command.

torch's default is one intra-op thread per core, with GNU OpenMP's threads spin-waiting
at every barrier. Measured on a 2-core machine (`benchmarks/thread_policy.py`,
`benchmarks/thread_policy.csv`: the CPU recipe's DiT, steps per second): with 2 threads a
training run does 15.1 alone and 0.71 with one busy process beside it (21x slower); a
shorter spin (GOMP_SPINCOUNT 10,000 / 1,000) gives 15.5 / 9.6 alone and 3.7 / 6.7 beside
one; passive waiting 7.8 / 7.5; one thread 9.8 / 9.8. Only one thread fewer than the cores,
or passive waiting, keeps a run within 2x of its idle speed beside a busy process, and on
2 cores one thread is the faster of those.

So a command runs with one thread fewer than the machine's cores (at least one), unless
`OMP_NUM_THREADS` or `TPDIFF_THREADS` says otherwise. Independent runs side by side in
processes of one thread each (`--workers`) use both cores without the collapse: two
1-thread runs do about 22.6 steps per second together.
"""

from __future__ import annotations

import os

import torch

ENV = "TPDIFF_THREADS"


def policy_threads(cores: int | None, env: dict[str, str]) -> int:
    """The intra-op threads of a command: `TPDIFF_THREADS`, else `OMP_NUM_THREADS`, else
    one fewer than `cores` (at least 1)."""
    for name in (ENV, "OMP_NUM_THREADS"):
        value = env.get(name, "").strip()
        if value:
            try:
                threads = int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a whole number of threads: set it "
                                 "to 1 or more, or unset it") from None  # fmt: skip
            if threads < 1:
                raise ValueError(f"{name}={threads}: set it to 1 or more, or unset it")
            return threads
    return max(1, (cores or 1) - 1)


def apply_thread_policy() -> int:
    """Set torch's intra-op threads by `policy_threads` for this process; returns them."""
    threads = policy_threads(os.cpu_count(), dict(os.environ))
    torch.set_num_threads(threads)
    return threads
