import os

import numpy as np
import pytest
import torch
from pg_server import postgres_server, postgres_url  # noqa: F401  (fixtures)

from harness.engine.pyramid import make_plan


def random_valid_plans(form, num_frames, num_stages, upsample, count, seed):
    """Seeded random valid plans with K stages (rejection sampling on make_plan)."""
    rng = np.random.default_rng(seed)
    plans = []
    while len(plans) < count:
        jumps = tuple(sorted(rng.uniform(0.02, 0.98, num_stages - 1), reverse=True))
        steps = tuple(int(n) for n in rng.integers(1, 9, num_stages))
        try:
            plans.append(make_plan(form, num_frames, jumps, steps, upsample))
        except ValueError:
            continue
    return plans


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device of the `cuda`-marked tests: TPDIFF_TEST_DEVICE (default cpu, as CI runs
    them; `python -m harness.run --suite gpu-check` sets cuda). A cuda run without a
    visible GPU fails here, by name, rather than skipping."""
    from harness.pipeline.build import resolve_device

    return resolve_device(os.environ.get("TPDIFF_TEST_DEVICE", "cpu"))
