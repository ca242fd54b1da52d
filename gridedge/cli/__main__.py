"""``python -m gridedge.cli``."""

import sys

from gridedge.cli.main import main

sys.exit(main())
