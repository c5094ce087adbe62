"""`python -m harness.run` (`tpdiff-run`): the entry point of `harness.studies.suites.cli`;
a missing package ends it in one line (`harness.common.cli.missing_package`)."""

import sys

from harness.common.cli import missing_package


def main() -> int:
    try:
        from harness.studies.suites.cli import main as command
    except ModuleNotFoundError as err:
        return missing_package("python -m harness.run", err)
    result = command()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
