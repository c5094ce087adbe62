"""What a training run's bits and a timing depend on besides the code and the config."""

from __future__ import annotations

import torch


def environment() -> dict:
    """The torch version and this process's intra-op thread count: float reductions are
    split by thread, so a run resumed with another thread count is not bit-identical, and a
    time is only comparable with one measured at the same thread count."""
    return dict(torch=torch.__version__, threads=torch.get_num_threads())
