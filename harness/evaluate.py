"""`python -m harness.evaluate` (console script `tpdiff-evaluate`): score samples.

The command lives in `harness.pipeline.evaluate_folder`; this file is only its entry point.
"""

import sys

from harness.pipeline.evaluate_folder import cli as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
