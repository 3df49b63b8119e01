"""The schema diagrams: one per area, true to the models, and readable in a real browser.

The drift tests regenerate ``docs/schema/`` from the models and compare. The browser test builds
the documentation site, serves it on 127.0.0.1, opens each area's page in headless Chromium at a
normal desktop size (1280 x 900) and measures the diagram as rendered: every label's font size
on screen (its CSS size times the SVG's scale), the diagram fitting the page's width without
being shrunk, and nothing fetched from another host. It needs Debian's ``chromium`` and
``chromium-driver`` (``.ci/run`` installs them); without them it fails, saying so.
"""

from __future__ import annotations

import base64
import functools
import http.server
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authmodels import erd
from authmodels.models import metadata

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DOCS = ROOT / "docs" / "schema"
VIEWPORT = (1280, 900)
SMALLEST_LABEL_PX = 10.0


def test_the_committed_pages_are_what_the_models_draw() -> None:
    """docs/schema/ is what `authmodels erd --docs docs/schema` writes from the models today."""
    generated = erd.pages(metadata)
    committed = {path.name: path.read_text() for path in SCHEMA_DOCS.glob("*.md")}
    assert sorted(committed) == sorted(generated), "a page is missing or left over"
    stale = [name for name, page in generated.items() if committed[name] != page]
    assert stale == [], (
        f"docs/schema/{', '.join(stale)} out of date: run `authmodels erd --docs docs/schema`"
    )


def test_every_table_is_drawn_in_exactly_one_area_with_its_references() -> None:
    owner = erd.area_of(metadata)
    assert set(owner) == {table.name for table in metadata.tables.values()}
    assert [area.slug for area in erd.AREAS] == [
        "identity",
        "tokens",
        "mfa",
        "logs",
        "e2ee",
        "retention",
    ]
    for table in metadata.tables.values():
        drawing = erd.svg(metadata, owner[table.name])
        assert f'data-table="{table.name}"' in drawing
        for ref in erd.references(table):
            assert f'data-from="{ref.table}.{ref.column}" data-to="{ref.target}.' in drawing
            assert f'data-table="{ref.target}"' in drawing  # its own box, or the grey one


def test_a_table_without_an_area_is_refused() -> None:
    from sqlalchemy import Column, Integer, MetaData, Table

    extended = MetaData(schema="auth")
    for table in metadata.tables.values():
        table.to_metadata(extended)
    Table("new_table", extended, Column("id", Integer, primary_key=True))
    with pytest.raises(ValueError, match=r"tables in no area \['new_table'\]"):
        erd.pages(extended)


def test_the_diagrams_load_nothing_from_elsewhere() -> None:
    for area in erd.AREAS:
        drawing = erd.svg(metadata, area)
        assert "<script" not in drawing and "http://" not in drawing.replace(
            'xmlns="http://www.w3.org/2000/svg"', ""
        )
        assert "https://" not in drawing


# --- in a browser ----------------------------------------------------------------------------


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            "the diagrams are checked in headless Chromium: install Debian's chromium and "
            "chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does)"
        )
    return chromium, driver


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The documentation site, built and served on 127.0.0.1; its base URL."""
    folder = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q", "-d", str(folder)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium, driver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--force-device-scale-factor=1",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        session.set_window_size(*VIEWPORT)
        yield session
    finally:
        session.quit()


MEASURE = """
const figure = document.querySelector('.erd');
const drawing = figure.querySelector('svg');
const scale = drawing.getScreenCTM().a;
const labels = Array.from(drawing.querySelectorAll('text')).map(t => ({
    text: t.textContent,
    px: parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a,
    height: t.getBoundingClientRect().height,
}));
const box = drawing.getBoundingClientRect();
const hosts = performance.getEntriesByType('resource').map(e => new URL(e.name).host);
return {
    scale: scale,
    labels: labels,
    width: box.width,
    height: box.height,
    naturalWidth: drawing.width.baseVal.value,
    figureWidth: figure.clientWidth,
    figureScroll: figure.scrollWidth,
    viewport: window.innerWidth,
    hosts: hosts,
    host: location.host,
};
"""


@pytest.mark.slow
@pytest.mark.parametrize("area", [area.slug for area in erd.AREAS])
def test_the_diagram_is_legible_at_the_sites_normal_width(
    area: str, site: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{site}/schema/{area}/")
    WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".erd svg text"))
    )
    seen = browser.execute_script(MEASURE)
    assert seen["viewport"] == VIEWPORT[0]
    smallest = min(seen["labels"], key=lambda label: label["px"])
    assert smallest["px"] >= SMALLEST_LABEL_PX, f"{area}: {smallest} is too small to read"
    assert min(label["height"] for label in seen["labels"]) >= SMALLEST_LABEL_PX
    assert seen["scale"] == pytest.approx(1.0), "the diagram is drawn scaled, not at its size"
    assert seen["figureScroll"] <= seen["figureWidth"], (
        f"{area}: {seen['naturalWidth']} px wide in a page {seen['figureWidth']} px wide"
    )
    assert {host for host in seen["hosts"]} <= {seen["host"]}, seen["hosts"]
    # a screenshot of the whole drawing, at the page's scale: its size is the drawing's own
    box = browser.execute_script(
        "const r = document.querySelector('.erd svg').getBoundingClientRect();"
        "return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};"
    )
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**box, "scale": 1}},
    )
    png = base64.b64decode(shot["data"])
    (tmp_path / f"{area}.png").write_bytes(png)
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (round(seen["naturalWidth"]), round(seen["height"]))
    assert {label["text"] for label in seen["labels"]} >= set(
        next(a for a in erd.AREAS if a.slug == area).tables
    )
