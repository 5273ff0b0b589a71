"""``python -m infralens``: the same command as ``infralens``."""

import sys

from infralens.cli import main

sys.exit(main())
