"""Sphinx configuration for the lofn documentation.

Build with warnings as errors, as ``scripts/dev.sh test`` does::

    python -m sphinx -W -q -b html docs docs/_build/html
"""

import os
import sys

# Document the lofn in this checkout, not whichever one is installed.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import lofn  # noqa: E402

project = "lofn"
version = lofn.__version__
release = lofn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = False

# Google-style docstrings (Args:, Keyword Args:, Returns:, Raises:, Yields:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

html_theme = "alabaster"
html_theme_options = {
    "description": "One Docker container per Spark partition",
    "fixed_sidebar": True,
}
