"""`python -m pdp.cli`: the `portcullis` command line, as the console script runs it."""

import sys

from pdp.cli import main

sys.exit(main())
