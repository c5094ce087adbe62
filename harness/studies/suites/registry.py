"""Plain registries of the named jobs.

`SUITES`: `python -m harness.run --suite NAME`; a suite is `fn(out: Path, scale: str,
fresh: bool) -> dict` that writes its tables to `out` and returns a JSON-able summary
(`fresh`: move an occupied folder aside first, for suites that resume; see
`harness.pipeline.provenance.claim_folder`). The suites of `SEEDED` also take the design
options `seeds`, `seed_offset` and `workers`; those of `DRY_RUN` take `dry_run`. Its keys
are the only names the CLI and result folders use.

The reports' registry is in `report` (`python -m harness.report`), which imports only the
studies' report modules, not their training code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.studies.checks import cli as checks
from harness.studies.paper import cli as paper

Suite = Callable[[Path, str, bool], dict]

SUITES: dict[str, Suite] = {
    "engine": checks.engine,
    "cost": checks.cost,
    "gpu-check": checks.gpu_check,
    "smoke": paper.smoke,
    "paper": paper.suite,
}
SEEDED = {"smoke", "paper"}  # suites trained at several paired seeds
DRY_RUN = {"gpu-check"}  # suites with a CPU mode of the same plumbing (--dry-run)
