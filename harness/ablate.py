"""`python -m harness.ablate` (console script `tpdiff-ablate`): named ablations.

The command lives in `harness.studies.ablate`; this file is only its entry point.
"""

import sys

from harness.studies.ablate import main as command


def main() -> int:
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
