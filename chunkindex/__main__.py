"""`python -m chunkindex` runs the command line."""

import sys

from chunkindex.cli import main

sys.exit(main())
