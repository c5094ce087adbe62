"""`python -m harness.sample` (console script `tpdiff-sample`): sample from a trained run.

The command lives in `harness.pipeline.sample`; this file is only its entry point.
"""

import sys

from harness.pipeline.sample import cli as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
