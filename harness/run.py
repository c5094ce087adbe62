"""`python -m harness.run` (console script `tpdiff-run`): run a named suite.

The command lives in `harness.studies.suites.cli`; this file is only its entry point.
"""

import sys

from harness.studies.suites.cli import main as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
