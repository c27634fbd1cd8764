"""Sphinx configuration: MyST Markdown pages, the furo theme, an API reference from docstrings."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

project = "broadcast-domain"
author = "broadcast-domain developers"
copyright = author
release = _project["version"]
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "autoapi.extension",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
language = "en"

# MyST: fenced ```{directive} blocks, definition lists, heading anchors for
# cross-page links such as [the bounce window](concepts.md#bounce-window).
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist", "substitution"]
myst_heading_anchors = 3

# The API reference is read from the source text, not imported, so optional
# extras never need to be importable to build the docs.
autoapi_type = "python"
autoapi_dirs = [
    str(ROOT / "src" / "broadcast_domain"),
    str(ROOT / "adapters" / "broadcast_adapters"),
]
autoapi_root = "api"
autoapi_add_toctree_entry = False  # reference.md places it
autoapi_keep_files = False
autoapi_member_order = "groupwise"
autoapi_python_class_content = "both"
autoapi_options = [
    "members",
    "undoc-members",
    "show-inheritance",
    "show-module-summary",
    "special-members",
]
# Type hints are strings under `from __future__ import annotations`; show them
# in the signature, where they read as written.
autodoc_typehints = "signature"

napoleon_google_docstring = True
napoleon_numpy_docstring = False


html_theme = "furo"
html_title = f"broadcast-domain {release}"


class _PageNotWrittenYet(logging.Filter):
    """Drops the warning for a toctree pattern in index.md that matches no page yet.

    index.md names the pages by pattern, in reading order, so a page added
    later needs no edit there; until it exists its pattern matches nothing.
    Sphinx gives that warning no type, so ``suppress_warnings`` cannot reach it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "didn't match any documents" not in str(record.msg)


logging.getLogger("sphinx.sphinx.directives.other").addFilter(_PageNotWrittenYet())
