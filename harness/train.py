"""`python -m harness.train` (console script `tpdiff-train`): train or resume one run.

The command lives in `harness.pipeline.train`; this file is only its entry point.
"""

import sys

from harness.pipeline.train import cli as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
