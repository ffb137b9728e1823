"""``python -m lofn``: the ``lofn`` command line (see :mod:`lofn.cli`)."""

import sys

from lofn.cli import main

if __name__ == "__main__":
    sys.exit(main())
