"""The built HTML in a real browser: headless Chromium driven by Playwright.

Run by ``tox -e browser`` on the docs build (``_build/html``, MathJax served locally).
The site is served on 127.0.0.1 and every request the pages make is recorded:
a request to any other host, a console error or a failed request fails the
test, so the book works offline. Screenshots land in ``_build/screenshots``.
Each page is loaded once (the ``visits`` fixture, a few pages at a time): the page
test and the download test read what that one load showed.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

async_api = pytest.importorskip("playwright.async_api")
async_playwright = async_api.async_playwright

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("INFRALENS_SITE", ROOT / "_build" / "html"))
SHOTS = ROOT / "_build" / "screenshots"
# a screenshot shows the first screen of a page; INFRALENS_FULL_SCREENSHOTS=1 takes the whole page
# (rendering pages tens of thousands of pixels tall costs the browser more CPU than the rest of the test)
FULL_SCREENSHOTS = os.environ.get("INFRALENS_FULL_SCREENSHOTS", "") == "1"
CHROMIUM = os.environ.get("INFRALENS_CHROMIUM", "/usr/bin/chromium")
PAGES = sorted(
    [
        "index.html",
        *(str(p.relative_to(SITE)) for p in SITE.glob("docs/tracks/*/labs/lab-*.html")),
        *(str(p.relative_to(SITE)) for p in SITE.glob("docs/tracks/*/index.html")),
    ]
)
CHROMIUM_ARGS = [  # no background traffic from the browser itself (this machine has no internet)
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the test reports failures itself
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail(f"no site at {SITE}: build it first (tox -e browser does)")
    handler = functools.partial(QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


# Pages load a few at a time: a load mostly waits (for the network to be idle, for MathJax), so
# four pages in flight keep two cores busy where one page at a time left them idle most of the run.
IN_FLIGHT = 4
SEARCH = "search.html?q=alpha_bar"


class Recorder:
    """Collects console errors, failed requests and requests to other hosts for one page."""

    def __init__(self, page, base: str):
        self.base_host = urlparse(base).hostname
        self.errors: list[str] = []
        self.external: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("requestfailed", lambda req: self.errors.append(f"failed: {req.url} {req.failure}"))
        page.on("response", lambda res: res.status >= 400 and self.errors.append(f"{res.status}: {res.url}"))
        page.on("request", self._request)

    def _request(self, req):
        url = urlparse(req.url)
        if url.scheme in {"http", "https"} and url.hostname != self.base_host:
            self.external.append(req.url)


@dataclass
class Visit:
    """What one load of a page showed; each page is loaded once and read by every test that needs it."""

    links: list[str] = field(default_factory=list)
    downloads: dict[str, tuple[bool, bytes]] = field(default_factory=dict)  # href: (ok, first bytes)
    math: int = 0
    typeset: int = 0
    wide: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)  # the search page's hits
    external: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failure: BaseException | None = None


async def _visit(browser, base: str, path: str) -> Visit:
    page = await browser.new_page(viewport={"width": 1300, "height": 900})
    rec = Recorder(page, base)
    seen = Visit()
    try:
        await page.goto(base + path, wait_until="networkidle")
        if path == SEARCH:
            await page.wait_for_selector("#search-results li", timeout=60_000)
            seen.results = await page.locator("#search-results li").all_inner_texts()
            return seen
        seen.links = await page.locator("a.download").evaluate_all("els => els.map(e => e.href)")
        seen.math = await page.locator(".math").count()
        if seen.math:
            # every formula becomes MathJax output, none is left as raw TeX (counted, not waited
            # for by visibility: a formula may sit in a collapsed part of the page)
            typeset = "document.querySelectorAll('mjx-container').length"
            await page.wait_for_function(f"{typeset} >= document.querySelectorAll('.math').length", timeout=60_000)
            seen.typeset = await page.locator("mjx-container").count()
        # code and doctests fit the content column: no block scrolls sideways by a few characters
        seen.wide = await page.evaluate(
            "[...document.querySelectorAll('article pre')]"
            ".filter(e => e.scrollWidth > e.clientWidth + 2).map(e => e.innerText.slice(0, 60))"
        )
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / (path.replace("/", "__").removesuffix(".html") + ".png")
        await page.screenshot(path=str(shot), full_page=FULL_SCREENSHOTS)
        for href in seen.links:  # the starter files the page offers, fetched as a reader's click would
            response = await page.context.request.get(href)
            seen.downloads[href] = (response.ok, (await response.body())[:16])
    except Exception as exc:  # the page test reports it; the download test still has the links
        seen.failure = exc
    finally:
        await page.close()
        seen.external, seen.errors = rec.external, rec.errors
    return seen


async def _visit_all(base: str, paths: list[str]) -> dict[str, Visit]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            slots = asyncio.Semaphore(IN_FLIGHT)

            async def one(path: str) -> tuple[str, Visit]:
                async with slots:
                    return path, await _visit(browser, base, path)

            return dict(await asyncio.gather(*(one(path) for path in paths)))
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def visits(server) -> dict[str, Visit]:
    """Every page of :data:`PAGES` and the search page, each loaded once, :data:`IN_FLIGHT` at a time."""
    return asyncio.run(_visit_all(server, [*PAGES, SEARCH]))


@pytest.mark.parametrize("path", PAGES)
def test_page_offline_no_errors_math_typeset(visits, path):
    seen = visits[path]
    if seen.failure is not None:
        raise seen.failure
    assert seen.typeset >= seen.math
    assert seen.wide == [], f"code blocks wider than the page: {seen.wide}"
    assert seen.external == [], f"requests to other hosts: {seen.external}"
    assert seen.errors == [], seen.errors


def test_search_finds_lab_01_for_alpha_bar(visits):
    seen = visits[SEARCH]
    if seen.failure is not None:
        raise seen.failure
    assert any("Lab 01: Forward Noise Process" in r for r in seen.results), seen.results
    assert seen.external == [] and seen.errors == []


@pytest.mark.parametrize("path", [p for p in PAGES if "/labs/lab-" in p])
def test_starter_download_links_resolve(visits, path):
    seen = visits[path]
    assert seen.links, "a lab page offers its starter file"
    for href in seen.links:
        ok, head = seen.downloads.get(href, (False, b""))
        assert ok, href
        # the starter itself (a .py docstring or a config's comment), not an error page
        assert head.startswith((b'"""Lab ', b"# Lab ")), href
