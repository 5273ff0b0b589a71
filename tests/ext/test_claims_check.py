"""The book's own Sphinx extensions bite: a bad page fails the build.

These build a throwaway Sphinx project, so they need the docs extra; they run
in ``tox -e docs`` (``tox -e py`` skips them when Sphinx is not installed).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

from sphinx.application import Sphinx

EXT = Path(__file__).resolve().parents[2] / "docs" / "_ext"
sys.path.insert(0, str(EXT))

from infralens_claims import summary  # noqa: E402

CONF = """
extensions = ["myst_parser", "sphinx.ext.doctest", "infralens_claims", "infralens_compute"]
myst_enable_extensions = ["dollarmath", "amsmath"]
"""


def build(tmp_path: Path, page: str) -> tuple[str, dict]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(CONF)
    (src / "index.md").write_text(page)
    warnings = io.StringIO()
    app = Sphinx(src, src, tmp_path / "out", tmp_path / "doctrees", "html", status=None, warning=warnings)
    app.build()
    return warnings.getvalue(), app.env.infralens_claims["index"]


GOOD = """# Page

$$
y = 2 x
$$

```{doctest}
>>> 2 * 21
42
```

A latent of {compute}`latent_shape("sd", height=512, width=512)` holds
{compute}`4 * 64 * 64 | ,` values; {exempt}`40 layers <from a released config>`.
Lab 01 uses 1000 steps, as the doctest below says, in Wan 2.1 (diffusers 0.42.1).

```{doctest}
>>> T = 1000
```
"""


def test_a_clean_page_passes_and_is_counted(tmp_path):
    warnings, page = build(tmp_path, GOOD)
    assert "claims check" not in warnings, warnings
    assert (page.formulas, page.doctests, page.computed, page.violations) == (1, 2, 2, 0)
    assert page.exceptions == ["'40 layers': from a released config"]
    assert "1 display formulas" in summary({"index": page})


def test_formula_without_a_doctest_is_flagged(tmp_path):
    warnings, page = build(tmp_path, "# Page\n\n$$\ny = 2 x\n$$\n\n## Next\n\nText.\n")
    assert "display formula without a doctest" in warnings
    assert page.violations == 1


def test_formula_followed_by_another_formula_is_flagged(tmp_path):
    page_text = "# Page\n\n$$\na\n$$\n\n$$\nb\n$$\n\n```{doctest}\n>>> 1\n1\n```\n"
    warnings, page = build(tmp_path, page_text)
    assert warnings.count("display formula without a doctest") == 1
    assert page.formulas == 2


def test_typed_numbers_and_shapes_are_flagged(tmp_path):
    warnings, page = build(tmp_path, "# Page\n\nThe latent is (1, 16, 21, 60, 104) with 32,760 tokens.\n")
    assert "'(1,16,21,60,104)' is typed in prose" in warnings
    assert "'32760' is typed in prose" in warnings
    assert page.violations == 2


def test_a_number_checked_by_a_doctest_passes(tmp_path):
    text = "# Page\n\nIt has 32,760 tokens.\n\n```{doctest}\n>>> 21 * 30 * 52\n32760\n```\n"
    warnings, page = build(tmp_path, text)
    assert page.violations == 0, warnings


def test_exempt_needs_a_reason(tmp_path):
    warnings, _ = build(tmp_path, "# Page\n\n{exempt}`40 layers`\n")
    assert "{exempt} needs a reason" in warnings


def test_a_failing_compute_expression_is_an_error(tmp_path):
    warnings, _ = build(tmp_path, "# Page\n\n{compute}`no_such_function()`\n")
    assert "failed: NameError" in warnings
