"""`python -m harness.sweep` (console script `tpdiff-sweep`): stage-boundary sweep.

The command lives in `harness.studies.sweep.cli`; this file is only its entry point.
"""

import sys

from harness.studies.sweep.cli import main as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
