"""`python -m harness.weights` (console script `tpdiff-weights`): the committed instruments.

The command lives in `harness.pipeline.instruments`; this file is only its entry point.
"""

import sys

from harness.pipeline.instruments import cli as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
