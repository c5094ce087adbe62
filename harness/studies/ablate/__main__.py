import sys

from harness.studies.ablations.cli import main

sys.exit(main())
