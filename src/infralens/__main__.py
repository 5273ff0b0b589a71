"""``python -m infralens``: the same command as ``infralens``."""

import sys

from infralens.cli import main

if __name__ == "__main__":
    sys.exit(main())
