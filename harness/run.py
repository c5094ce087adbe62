"""`python -m harness.run` (console script `tpdiff-run`): run a named suite.

The command lives in `harness.studies.suites.cli`; this file is only its entry point. A
package the harness imports but this install lacks (a bare CUDA image, an offline machine)
ends it with one line naming the package and where the wheels come from (docs/gpu.md).
"""

import sys


def main() -> int:
    try:
        from harness.studies.suites.cli import main as command
    except ModuleNotFoundError as err:
        print(
            f"python -m harness.run: error: the package {err.name!r} is missing: pip install "
            f"it (offline: the wheels docs/gpu.md gathers with pip download)",
            file=sys.stderr,
        )
        return 2
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
