"""Whole-book checks: every lab page is complete, ordered and linked both ways.

These read the MyST sources with markdown-it (the parser MyST is built on), so
headings and fences are found as the build finds them, not by guessing.
"""

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
TRACKS = ROOT / "docs" / "tracks"
LAB_PAGES = sorted(TRACKS.glob("*/labs/lab-*.md"))

SECTIONS = [
    "Related handbook section",
    "Concept Goal",
    "Mental Model",
    "Formula bridge",  # optional
    "Annotated Code Preview",
    "Line-by-line Explanation",
    "What to Notice",
    "Common Misunderstandings",
    "Interview Explanation",
    "External intuition notes",
    "Further Reading",
]
OPTIONAL = {"Formula bridge"}
LINE_BY_LINE = ["Setup / contract", "Main transition", "Interview hook"]
HANDBOOK_PARTS = [
    "What problem does this solve?",
    "Core mechanism",
    "What to say in an interview",
    "Common misunderstanding",
]
MARKERS = ["# [1] Setup / contract", "# [2] Main transition", "# [3] Interview hook", "# [end]"]

md = MarkdownIt("commonmark")


def tokens(path: Path):
    return md.parse(path.read_text())


def headings(path: Path, level: int) -> list[str]:
    toks = tokens(path)
    return [toks[i + 1].content for i, t in enumerate(toks) if t.type == "heading_open" and t.tag == f"h{level}"]


def fences(path: Path, directive: str):
    return [t for t in tokens(path) if t.type == "fence" and t.info.strip().startswith("{" + directive + "}")]


def lab_id(page: Path) -> tuple[str, str, str]:
    """(track, NN, slug) from docs/tracks/<track>/labs/lab-NN-<slug>.md."""
    track = page.parents[1].name
    nn, slug = re.fullmatch(r"lab-(\d\d)-(.+)", page.stem).groups()
    return track, nn, slug


# The catalogue's labs (slugs are public URLs): every track has all of its labs, no more, no fewer.
CATALOGUE = {
    "diffuser": [
        "forward-noise-process",
        "denoising-step",
        "scheduler-reading",
        "cfg-code-reading",
        "vae-latent-space",
        "diffusers-pipeline-components",
        "unet-dit-conditioning",
        "lora-injection-reading",
        "controlnet-conditioning-reading",
        "memory-optimization-reading",
        "flow-matching-samplers",
        "inference-speed-knobs",
    ],
    "diffsynth": [
        "pipeline-config-reading",
        "model-loading-path",
        "latent-shape-tracking",
        "scheduler-loop-reading",
        "conditioning-flow",
        "video-latent-frame-dimension",
        "vae-encode-decode",
        "offload-memory-saving",
        "multi-control-pipeline-reading",
        "end-to-end-inference-trace",
        "wan22-experts-ti2v",
        "sequence-parallel-video-dit",
    ],
    "transformer": [
        "tokenization-embedding",
        "qkv-shape-walkthrough",
        "causal-mask-attention",
        "multi-head-attention",
        "rope-mental-model",
        "ffn-swiglu-parameter-count",
        "training-loop-cross-entropy",
        "kv-cache-step-by-step",
        "attention-backend-comparison",
        "quantization-reading",
    ],
    "distributed": [
        "ddp-gradient-buckets",
        "zero-fsdp-state-sharding",
        "tensor-parallel-linear",
        "pipeline-schedule-reading",
        "sequence-context-parallel",
        "expert-parallel-routing",
        "3d-parallelism-plan",
        "topology-communication",
        "interview-scenarios",
    ],
}


def test_every_catalogue_lab_has_a_page():
    found = {track: [p.stem for p in LAB_PAGES if p.parents[1].name == track] for track in CATALOGUE}
    expected = {track: [f"lab-{n:02d}-{slug}" for n, slug in enumerate(slugs, 1)] for track, slugs in CATALOGUE.items()}
    assert found == expected


@pytest.mark.parametrize("track", CATALOGUE)
def test_handbook_sections_follow_the_lab_order(track):
    labels = re.findall(r"^\((" + track + r"-[a-z0-9-]+)\)=$", (TRACKS / track / "index.md").read_text(), re.M)
    assert labels == [f"{track}-handbook"] + [f"{track}-{slug}" for slug in CATALOGUE[track]]


@pytest.mark.parametrize("page", [*LAB_PAGES, *TRACKS.glob("*/index.md")], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_headings_have_no_math(page):
    """Math in a heading is hidden in the page's contents sidebar and garbles PDF bookmarks."""
    for level in range(1, 5):
        for heading in headings(page, level):
            assert "$" not in heading, heading


@pytest.mark.parametrize("page", LAB_PAGES, ids=lambda p: p.stem)
def test_lab_sections_in_order(page):
    found = headings(page, 2)
    required = [s for s in SECTIONS if s not in OPTIONAL]
    assert [s for s in found if s not in OPTIONAL] == required, found
    assert [s for s in found if s in SECTIONS] == [s for s in SECTIONS if s in found]
    line_by_line = headings(page, 3)
    assert [h for h in line_by_line if h in LINE_BY_LINE] == LINE_BY_LINE


@pytest.mark.parametrize("page", LAB_PAGES, ids=lambda p: p.stem)
def test_lab_includes_its_existing_starter(page):
    track, nn, slug = lab_id(page)
    includes = [f.info.split(None, 1)[1].strip() for f in fences(page, "literalinclude")]
    assert includes, "the code preview must be a literalinclude"
    prefix = f"/code/{track}/lab-{nn}-{slug}/"
    assert all(inc.startswith(prefix) for inc in includes), includes
    for inc in set(includes):
        starter = ROOT / inc.lstrip("/")
        assert starter.is_file(), inc
        text = starter.read_text()
        for marker in MARKERS:
            assert text.count(marker) == 1, f"{inc} needs the marker line {marker!r} once"


@pytest.mark.parametrize("page", LAB_PAGES, ids=lambda p: p.stem)
def test_lab_and_handbook_link_each_other(page):
    track, nn, slug = lab_id(page)
    handbook = TRACKS / track / "index.md"
    section_label, lab_label = f"{track}-{slug}", f"{track}-lab-{nn}"
    text = page.read_text()
    assert f"({lab_label})=" in text
    related = text.split("## Related handbook section", 1)[1].split("\n## ", 1)[0]
    assert f"<{section_label}>`" in related, "the lab links its handbook section"
    hb = handbook.read_text()
    assert f"({section_label})=" in hb
    section = hb.split(f"({section_label})=", 1)[1].split("\n## ", 2)[1]
    assert f"<{lab_label}>`" in section, "the handbook section links back to its lab"
    parts = re.findall(r"^### (.+)$", section, re.M)
    assert parts == HANDBOOK_PARTS


@pytest.mark.parametrize("page", [*LAB_PAGES, *TRACKS.glob("*/index.md")], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_display_formula_is_followed_by_a_doctest(page):
    """A display formula must be exercised on real tensors before the next formula or heading."""
    toks = tokens(page)
    pending = None
    for t in toks:
        if t.type == "heading_open" or (t.type == "paragraph_open" and False):
            assert pending is None, f"formula without a doctest: {pending}"
        if t.type == "inline" and "$$" in t.content:
            assert pending is None, f"formula without a doctest: {pending}"
            pending = t.content.strip().splitlines()[1] if "\n" in t.content else t.content
        if t.type == "fence" and t.info.strip().startswith("{doctest}"):
            pending = None
    assert pending is None, f"formula without a doctest: {pending}"


def test_lab_titles_match_their_file_names():
    for page in LAB_PAGES:
        _, nn, _ = lab_id(page)
        assert headings(page, 1)[0].startswith(f"Lab {nn}: ")


CODE_WIDTH = 84
"""Characters a code line may take: the content column of the HTML theme at the browser test's
1300-pixel viewport shows about 86 monospace characters; wider blocks scroll sideways (tests/browser
measures the rendered pages, this finds the line in the source before a build)."""
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "api" not in p.relative_to(ROOT / "docs").parts)


@pytest.mark.parametrize("page", [*PAGES, ROOT / "index.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_fit_the_page_width(page):
    """Every line of a code or doctest block (output included) fits the content column."""
    wide = []
    for t in tokens(page):
        info = t.info.strip()
        if t.type == "fence" and (not info.startswith("{") or info.startswith(("{doctest}", "{code-block}"))):
            wide += [
                f"line {t.map[0] + 2 + i}: {len(line)} characters"
                for i, line in enumerate(t.content.splitlines())
                if len(line) > CODE_WIDTH and not line.lstrip().startswith(":")  # directive options
            ]
    assert not wide, f"code lines wider than {CODE_WIDTH} characters (break them; doctests ignore whitespace): {wide}"


@pytest.mark.parametrize("page", [*PAGES, ROOT / "index.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_role_opens_with_three_backticks(page):
    """``{checked}```code` ...`` parses as a code span, not a role: the claim would vanish from the ledger.

    A role whose text starts with inline code needs words first (or double backticks around a text that
    does not start with a backtick).
    """
    bad = [n for n, line in enumerate(page.read_text().splitlines(), 1) if re.search(r"\{\w[\w-]*\}```", line)]
    assert not bad, f"a role opens with three backticks on lines {bad}"


def test_operator_subscripts_are_braced_for_latex():
    """``q_\\max`` typesets in MathJax but stops LaTeX (the PDF and the ePub's math): write ``q_{\\max}``."""
    operator = re.compile(r"[_^]\\{1,2}(?:max|min|log|exp|sup|inf|lim|arg|det)\b")
    sources = [*PAGES, ROOT / "index.md", *sorted((ROOT / "src").rglob("*.py"))]
    bad = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sources
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if operator.search(line)
    ]
    assert not bad, f"brace the operator in these subscripts/superscripts: {bad}"
