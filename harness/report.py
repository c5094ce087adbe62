"""`python -m harness.report` (console script `tpdiff-report`): redraw a report.

The command lives in `harness.studies.suites.report`; this file is only its entry point.
"""

import sys

from harness.studies.suites.report import main as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
