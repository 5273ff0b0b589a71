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
extensions = ["myst_parser", "sphinx.ext.doctest", "infralens_claims", "infralens_compute", "infralens_ledger"]
myst_enable_extensions = ["dollarmath", "amsmath"]
"""


def build(tmp_path: Path, page: str) -> tuple[str, dict]:
    src = tmp_path / "src"
    src.mkdir(parents=True)
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
{compute}`math.prod(latent_shape("sd", height=512, width=512)) | ,` values;
{exempt}`40 layers <from a released config>`.
Lab 01 uses 1000 steps, as the doctest below says, in Wan 2.1 (diffusers 0.42.1),
on {given}`two ranks`.

```{doctest}
>>> T = 10 * 100
>>> T
1000
```
"""


def test_a_clean_page_passes_and_is_counted(tmp_path):
    warnings, page = build(tmp_path, GOOD)
    assert "claims check" not in warnings, warnings
    assert (page.formulas, page.doctests, page.computed, page.given, page.violations) == (1, 2, 2, 1, 0)
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
    assert "'(1,16,21,60,104)' is a claim no computed value backs" in warnings
    assert "'32760' is a claim no computed value backs" in warnings
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


@pytest.mark.parametrize(
    ("sentence", "claim"),
    [
        ("Wan's VAE has 48 channels.", "48"),
        ("It compresses 16x in space.", "16"),
        ("The DiT has 40 layers and 12 heads.", "40"),
        ("Each step moves 2 GiB.", "2"),
        ("Thirty steps are run.", "30"),
        ("The model runs on eight GPUs.", "8"),
        ("A decode of $32$ tokens.", "32"),
        ("The base is $10000$.", "10000"),
        ("It is $2.25\\times$ the cost.", "2.25"),
    ],
)
def test_small_numbers_by_quantity_words_and_inline_math_are_claims(tmp_path, sentence, claim):
    warnings, page = build(tmp_path, f"# Page\n\n{sentence}\n")
    assert f"'{claim}' is a claim no computed value backs" in warnings, warnings
    assert page.violations >= 1


def test_a_number_only_in_a_doctests_source_backs_nothing(tmp_path):
    text = "# Page\n\nIt holds 31.7 GiB.\n\n```{doctest}\n>>> x = [31.7]\n>>> len(x)\n1\n```\n"
    warnings, page = build(tmp_path, text)
    assert "'31.7' is a claim no computed value backs" in warnings
    assert page.violations == 1


def test_a_number_in_a_doctests_output_backs_the_claim(tmp_path):
    text = (
        "# Page\n\nIt holds 31.7 GiB in 40 layers.\n\n```{doctest}\n>>> round(317 / 10, 1), 4 * 10\n(31.7, 40)\n```\n"
    )
    warnings, page = build(tmp_path, text)
    assert page.violations == 0, warnings


def test_compute_of_literal_arithmetic_is_a_violation(tmp_path):
    warnings, page = build(tmp_path, "# Page\n\nIt has {compute}`21 * 30 * 52 | ,` tokens.\n")
    assert "{compute}`21 * 30 * 52` calls no infralens name" in warnings
    assert page.violations == 1


def test_compute_of_a_library_name_backs_the_claim(tmp_path):
    text = '# Page\n\nIt has {compute}`latent_shape("sd", height=512, width=512)[1]` channels, so 4 channels.\n'
    warnings, page = build(tmp_path, text)
    assert page.violations == 0, warnings


def test_given_and_exempt_numbers_pass_and_are_counted(tmp_path):
    text = "# Page\n\nOn {given}`two ranks` with {exempt}`40 layers <released config>`.\n"
    warnings, page = build(tmp_path, text)
    assert (page.violations, page.given, len(page.exceptions)) == (0, 1, 1), warnings


def test_a_page_exemption_needs_a_reason_and_keeps_the_formula_rule(tmp_path):
    warnings, page = build(tmp_path, "---\nclaims-exempt: syntax examples\n---\n# Page\n\nIt has 40 layers.\n")
    assert page.violations == 0 and page.exceptions == ["page index: syntax examples"], warnings
    warnings, page = build(tmp_path / "b", "---\nclaims-exempt: examples\n---\n# Page\n\n$$\na\n$$\n")
    assert "display formula without a doctest" in warnings
    warnings, page = build(tmp_path / "c", '---\nclaims-exempt: ""\n---\n# Page\n\nIt has 40 layers.\n')
    assert "front matter claims-exempt needs a reason" in warnings


def test_versions_and_model_names_are_not_claims(tmp_path):
    warnings, page = build(tmp_path, "# Page\n\nWan 2.1 in diffusers 0.42.1 and SD 1.5.\n")
    assert page.violations == 0, warnings


def test_the_backlog_is_a_ratchet(tmp_path, monkeypatch):
    """Old unbacked claims are counted, not reported; a fixed one must leave the backlog, a new one is reported."""
    import infralens_claims

    backlog = tmp_path / "claims_backlog.json"
    backlog.write_text('{"index": ["40", "48"]}')
    monkeypatch.setattr(infralens_claims, "BACKLOG", backlog)
    warnings, page = build(tmp_path / "a", "# Page\n\nIt has 40 layers and 12 heads.\n")
    assert page.backlog == {"40"} and page.violations == 1
    assert "'12' is a claim" in warnings and "'40' is a claim" not in warnings
    assert "no longer has the unbacked claims 48: remove them" in warnings
