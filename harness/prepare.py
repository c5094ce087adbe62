"""`python -m harness.prepare` (console script `tpdiff-prepare`): prepare a run's data.

The command lives in `harness.pipeline.prepare`; this file is only its entry point.
"""

import sys

from harness.pipeline.prepare import cli as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
