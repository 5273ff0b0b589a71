"""pytest collection for the whole book.

Besides ``tests/`` and the docstring doctests of ``src/`` (``--doctest-modules``),
pytest runs every ``{doctest}`` block of every MyST page through sybil, so a
formula or shape claim on a page fails ``tox -e py`` as well as ``tox -e docs``.
The blocks of one page share a namespace, as they do in Sphinx's doctest builder.
"""

from doctest import ELLIPSIS, NORMALIZE_WHITESPACE

from sybil import Sybil
from sybil.parsers.myst import DocTestDirectiveParser, SkipParser

# Sphinx extensions (they need the docs extra) and generated API pages are not test modules.
collect_ignore = ["conf.py", "docs/_ext", "docs/api", "code"]

pytest_collect_file = Sybil(
    parsers=[DocTestDirectiveParser(optionflags=ELLIPSIS | NORMALIZE_WHITESPACE), SkipParser()],
    patterns=["*.md"],
    excludes=["README.md"],
).pytest()
