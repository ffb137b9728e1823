"""Sphinx configuration for the lofn documentation.

Build it with warnings as errors, as ``scripts/dev.sh test`` does::

    python -m sphinx -W -q -b html docs docs/_build/html
"""

import os
import sys

# Document the lofn of this checkout, whatever else is installed.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import lofn  # noqa: E402
from sphinx.util import logging  # noqa: E402

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

# Google-style docstrings: Args:, Keyword Args:, Returns:, Yields:, Raises:.
napoleon_google_docstring = True
napoleon_numpy_docstring = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

html_theme = "alabaster"
html_theme_options = {
    "description": "One Docker container per Spark partition",
}
html_show_copyright = False

_logger = logging.getLogger(__name__)


def _drop_object_base(app, name, obj, options, bases):
    """Leave out "Bases: object": it says nothing."""
    if list(bases) == [object]:
        bases.clear()


def _check_public_api(app, env):
    """Warn (an error under -W) if a name in ``lofn.__all__`` is not documented.

    api.rst documents each public object once, in the module that defines it;
    this keeps that page in step with ``lofn.__all__``.
    """
    documented = env.get_domain("py").objects
    for name in lofn.__all__:
        obj = getattr(lofn, name)
        if not hasattr(obj, "__qualname__"):
            continue  # __version__
        target = f"{obj.__module__}.{obj.__qualname__}"
        if target not in documented:
            _logger.warning("lofn.%s is in lofn.__all__ but %s is not documented",
                            name, target)


def setup(app):
    app.connect("autodoc-process-bases", _drop_object_base)
    app.connect("env-check-consistency", _check_public_api)
