"""End-to-end: the lab's exports for slides and the Metropolis movie in Chromium (issue 12, items 3 and 5).

A short run of the default problem (Heisenberg 4×4, RBM, 20 steps) sampled as the suite's TINY; the
Spins tab then plays one chain's Metropolis movie; the GIF, the MP4, the energy figure (PNG) and the
one-page report download from the sidebar: the GIF's and the MP4's decoded frames have the movie's count
and size, the PNG is 1920×1080 (and downloads again when pressed again), and the report opens in the
browser with the run's final energy.

Run: .venv/bin/python -m pytest -q -n 0 -m browser tests/browser/test_lab_exports.py
"""

from __future__ import annotations

import re
from pathlib import Path

import imageio.v3 as iio
import pytest
from PIL import Image

from app.export_panel import MOVIE_SIZE, MOVIE_STEPS
from tests.browser.test_lab_browser import square_link

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

DOWNLOAD_TIMEOUT_MS = 240_000  # a movie is built and encoded on a loaded 2-core machine
FINAL_ENERGY = re.compile(r"E = (-?\d+\.\d+) ±")


def download(page, label: str, folder: Path) -> Path:
    """Click an export button and save what the browser downloads."""
    with page.expect_download(timeout=DOWNLOAD_TIMEOUT_MS) as info:
        page.get_by_role("button", name=label, exact=True).click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def test_movie_plays_and_exports_download_and_open(open_lab, screenshots, tmp_path):
    page, console = open_lab(viewport=(1366, 768), query=square_link(steps=20))
    page.locator(".nqs-status", has_text="/ 20").wait_for(timeout=15_000)
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator(".nqs-status", has_text="done").wait_for(timeout=300_000)
    message = page.get_by_text(FINAL_ENERGY).first  # the summary under the status line (shadow DOM: by text)
    message.wait_for(timeout=60_000)
    final = FINAL_ENERGY.search(message.inner_text()).group(1)

    page.get_by_role("tab", name="Spins", exact=True).click()
    # the movie plays to its last frame, which it holds (with its move outlined) before playing again
    page.locator(".nqs-movie-caption", has_text=re.compile(r"frame (\d+)/\1 ")).wait_for(timeout=120_000)
    page.get_by_text("Export for slides").first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "20-exports-and-metropolis-movie.png"))

    gif = download(page, "Movie (GIF)", tmp_path)
    with Image.open(gif) as img:
        assert gif.name == "metropolis.gif" and img.n_frames == MOVIE_STEPS and img.size == MOVIE_SIZE
    mp4 = download(page, "Movie (MP4)", tmp_path)
    frames = list(iio.imiter(mp4))
    assert mp4.name == "metropolis.mp4" and len(frames) == MOVIE_STEPS
    assert {f.shape for f in frames} == {(MOVIE_SIZE[1], MOVIE_SIZE[0], 3)}
    png = download(page, "Energy (PNG)", tmp_path)
    with Image.open(png) as img:
        assert png.name == "energy.png" and img.format == "PNG" and img.size == (1920, 1080)
    (tmp_path / "again").mkdir()
    again = download(page, "Energy (PNG)", tmp_path / "again")  # a second press downloads it again
    with Image.open(again) as img:
        assert img.size == (1920, 1080) and again.read_bytes() != png.read_bytes()  # its own stamp
    report = download(page, "Run report (HTML)", tmp_path)

    viewer = page.context.new_page()
    viewer.goto(report.as_uri())
    assert viewer.title().startswith("NQS Lab run report")
    cell = viewer.locator("tr", has_text="final energy E").locator("td").nth(1)
    assert abs(float(cell.inner_text().split("±")[0]) - float(final)) <= 6e-6  # the lab's E (5 decimals)
    assert viewer.locator("#energy-svg").count() == 1
    viewer.close()
    assert console.errors == [], console.errors
