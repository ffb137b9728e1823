"""``python -m lofn.cli``: the ``lofn`` command line, as ``python -m lofn``."""

import sys

from lofn.cli import main

if __name__ == "__main__":
    sys.exit(main())
