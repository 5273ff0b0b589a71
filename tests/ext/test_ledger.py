"""The ledger roles bite: a claim must name a real test, a citation must be well formed.

Throwaway Sphinx projects, as in test_claims_check.py (they need the docs extra).
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

from sphinx.application import Sphinx

EXT = Path(__file__).resolve().parents[2] / "docs" / "_ext"
sys.path.insert(0, str(EXT))

import infralens_ledger  # noqa: E402

CONF = """
extensions = ["myst_parser", "infralens_ledger"]
"""
REAL_TEST = "tests/upstream/test_citations.py::test_every_upstream_citation_names_a_line_that_holds_its_token"


def build(tmp_path: Path, page: str, ledger: bool = True) -> tuple[str, Path]:
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "conf.py").write_text(CONF)
    toctree = "\n```{toctree}\ndocs/ledger\n```\n" if ledger else ""
    (src / "index.md").write_text(page + toctree)
    (src / "docs" / "ledger.md").write_text("# Ledger\n\n```{claims-ledger}\n```\n")
    warnings = io.StringIO()
    app = Sphinx(src, src, tmp_path / "out", tmp_path / "doctrees", "html", status=None, warning=warnings)
    app.build()
    return warnings.getvalue(), tmp_path / "out"


def test_a_checked_claim_links_to_its_ledger_row(tmp_path):
    page = f"# Page\n\n{{checked}}``The default is `leading` <{REAL_TEST}>``.\n"
    warnings, out = build(tmp_path, page)
    assert "index.md" not in warnings, warnings
    html = (out / "index.html").read_text()
    assert 'href="docs/ledger.html#claim-' in html and "<code" in html  # inline markup parsed
    ledger = (out / "docs" / "ledger.html").read_text()
    assert "The default is leading" in ledger and "test_every_upstream_citation" in ledger
    assert "1 claims on 1 page(s)" in ledger


def test_a_claim_repeated_on_a_page_gets_a_row_and_an_id_each(tmp_path):
    """ePub (XHTML) refuses duplicate ids: the same statement and test twice must not share an anchor."""
    claim = f"{{checked}}`The default is leading <{REAL_TEST}>`"
    warnings, out = build(tmp_path, f"# Page\n\n{claim}.\n\nAgain: {claim}.\n")
    assert "index.md" not in warnings, warnings
    ledger = (out / "docs" / "ledger.html").read_text()
    ids = re.findall(r'id="(claim-[0-9a-f-]+)"', ledger)
    assert len(ids) == 2 and len(set(ids)) == 2, ids
    assert "2 claims on 1 page(s)" in ledger


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests/upstream/test_citations.py::test_no_such_test", "no 'test_no_such_test'"),
        ("tests/upstream/test_nothing.py::test_x", "no test file tests/upstream/test_nothing.py"),
        ("upstream.py", "is not of the form"),
    ],
)
def test_a_claim_without_its_test_fails(tmp_path, target, message):
    warnings, _ = build(tmp_path, f"# Page\n\n{{checked}}`A statement <{target}>`.\n")
    assert "{checked} test not found" in warnings and message in warnings


def test_a_claim_needs_a_test(tmp_path):
    warnings, _ = build(tmp_path, "# Page\n\n{checked}`A statement with no test`.\n")
    assert "{checked} needs a statement and its test" in warnings


def test_upstream_links_take_the_stamped_version(tmp_path):
    version = infralens_ledger.upstream_versions()["diffusers"]
    page = "# Page\n\n{upstream}`diffusers/schedulers/scheduling_ddim.py:209#timestep_spacing`.\n"
    warnings, out = build(tmp_path, page)
    assert "index.md" not in warnings, warnings
    url = f"https://github.com/huggingface/diffusers/blob/v{version}/src/diffusers/schedulers/scheduling_ddim.py#L209"
    assert url in (out / "index.html").read_text()


@pytest.mark.parametrize(
    ("target", "message"),
    [("diffusers/scheduling_ddim.py", "is not package/path.py:LINE"), ("nosuch/x.py:3", "unknown package 'nosuch'")],
)
def test_a_malformed_citation_fails(tmp_path, target, message):
    warnings, _ = build(tmp_path, f"# Page\n\n{{upstream}}`{target}`.\n")
    assert message in warnings


def test_junit_results_fold_parameters_worst_first(tmp_path, monkeypatch):
    junit = tmp_path / "junit"
    junit.mkdir()
    (junit / "a.xml").write_text(
        '<testsuites><testsuite><testcase classname="tests.upstream.test_x" name="test_y[1]"/>'
        '<testcase classname="tests.upstream.test_x" name="test_y[2]"><failure/></testcase>'
        '<testcase classname="tests.upstream.test_x" name="test_z"><skipped/></testcase></testsuite></testsuites>'
    )
    monkeypatch.setattr(infralens_ledger, "JUNIT_DIR", junit)
    assert infralens_ledger.test_results() == {
        "tests/upstream/test_x.py::test_y": "failed",
        "tests/upstream/test_x.py::test_z": "skipped",
    }
