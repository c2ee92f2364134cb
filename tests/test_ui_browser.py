"""The app in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright's Python package).

    scripts/install-browser.sh && .venv/bin/python -m pytest -q -m browser tests/test_ui_browser.py

Never `playwright install`: the tests use the system Chromium. Screenshots of every tab land in
out/screenshots/ (ignored by git; CI keeps them as artifacts).
"""

from __future__ import annotations

import re
import shutil
import urllib.request
from pathlib import Path

import pytest
import ui_support
from ui_support import ROOT

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "out" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/install-browser.sh"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (the dev extra)")
expect = sync_api.expect
expect.set_options(timeout=30_000)  # a busy 2-core CI machine: assertions wait like page actions do


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    demo, url = ui_support.launch(tiny_model_dir, tmp_path_factory.mktemp("runs"))
    yield url
    demo.close()


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(server)
        expect(page.get_by_role("tab", name="Lyrics")).to_be_visible()
        SHOTS.mkdir(parents=True, exist_ok=True)
        yield page
        browser.close()


def tab(page, name: str):
    page.get_by_role("tab", name=name, exact=True).click()
    panel = page.get_by_role("tabpanel").filter(visible=True).first
    expect(panel).to_be_visible()
    return panel


def shoot(page, name: str) -> None:
    """Screenshot the page without stale toasts."""
    for close in page.locator(".toast-close").all():
        close.click()
    expect(page.locator(".toast-body")).to_have_count(0)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def fixed_seed(panel, seed: int = 2) -> None:
    """Open Advanced, turn off the random seed: the untrained tiny model writes text on seed 2."""
    panel.get_by_text("Advanced").click()
    panel.get_by_label("Random seed").uncheck()
    panel.get_by_label("Seed", exact=True).fill(str(seed))


def written(page, task: str = "lyrics") -> None:
    """Wait until the text has streamed in and the generation has finished."""
    expect(page.locator(f"#{task}-output textarea")).to_have_value(re.compile(r"\S"), timeout=60_000)
    provenance = page.locator(f"#{task}-provenance")
    expect(provenance).to_contain_text('"seed"')
    expect(provenance).not_to_contain_text("writing…", timeout=60_000)


def test_lyrics_stream_into_the_page(page):
    panel = tab(page, "Lyrics")
    fixed_seed(panel)
    page.locator("#lyrics-prompt textarea").fill("rain on a city night")
    page.locator("#lyrics-go").click()
    written(page)
    expect(page.locator("#lyrics-provenance")).to_contain_text('"seed": 2')
    shoot(page, "lyrics")


def test_empty_prompt_shows_an_error_and_the_page_keeps_working(page):
    tab(page, "Lyrics")
    page.locator("#lyrics-prompt textarea").fill("")
    page.locator("#lyrics-go").click()
    expect(page.get_by_text(re.compile("Write a topic first")).first).to_be_visible()
    page.screenshot(path=SHOTS / "lyrics-error.png")
    page.locator("#lyrics-prompt textarea").fill("leaving home")
    page.locator("#lyrics-go").click()
    expect(page.locator("#lyrics-provenance")).to_contain_text("leaving home")
    written(page)


def test_poem_and_story_tabs(page):
    for name, task in (("Poem", "poem"), ("Story", "story")):
        panel = tab(page, name)
        panel.locator(".gallery-item, button.example, [data-testid='examples'] button, table tbody tr").first.click()
        expect(page.locator(f"#{task}-prompt textarea")).not_to_have_value("")
        shoot(page, task)


def test_story_from_a_picture_shows_what_was_seen_then_writes(page, tmp_path):
    import numpy as np
    from PIL import Image

    picture = tmp_path / "photo.png"  # textured noise: photo-like, so the classifier names its best guess
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(picture)
    panel = tab(page, "Story")
    fixed_seed(panel)
    page.locator("#story-prompt textarea").fill("")  # the picture alone is the premise
    page.locator("#story-image input[type=file]").set_input_files(str(picture))
    expect(page.locator("#story-image img")).to_be_visible()
    page.locator("#story-go").click()
    expect(page.locator("#story-seen")).to_contain_text("Seen:")
    expect(page.locator("#story-seen")).to_contain_text("mood:")
    written(page, "story")
    expect(page.locator("#story-provenance")).to_contain_text('"seen"')
    shoot(page, "story-picture")


def test_melody_audio_piano_roll_and_midi_download(page, server):
    panel = tab(page, "Melody")
    page.locator("#melody-go").click()
    audio = page.locator("#melody-audio audio").first  # Gradio draws a waveform over a hidden <audio>
    expect(audio).to_be_attached(timeout=60_000)
    expect(page.locator("#melody-audio a[download$='.wav']")).to_be_attached()
    expect(page.locator("#melody-audio #duration")).not_to_have_text("0:00")
    expect(page.locator("#melody-roll img")).to_be_visible()
    link = page.locator("#melody-mid a[download$='.mid']").first
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    data = urllib.request.urlopen(href if href.startswith("http") else server.rstrip("/") + href, timeout=10).read()
    assert data[:4] == b"MThd"
    expect(panel.get_by_text("Regenerate")).to_be_enabled()
    page.locator("#melody-continue").click()
    expect(page.locator("#melody-mid a[download='melody-002.mid']")).to_be_visible(timeout=60_000)
    shoot(page, "melody")


def test_finetune_in_the_page(page, tmp_path):
    tab(page, "Fine-tune")
    data = tmp_path / "songs.txt"
    shutil.copy(ROOT / "data" / "lyrics.txt", data)
    page.locator("#train-file input[type=file]").set_input_files(str(data))
    expect(page.locator("#train-file").get_by_text("songs.txt")).to_be_visible()
    page.get_by_label("Steps").fill("6")
    page.locator("#train-go").click()
    expect(page.locator("#train-download")).to_be_visible(timeout=120_000)
    expect(page.locator("#train-status")).to_contain_text("is ready")
    expect(page.locator("#train-plot")).to_contain_text("validation")  # the curve's legend
    page.locator("#try-go").click()  # no prompt: a clear error, not a crash
    expect(page.get_by_text(re.compile("Write a topic first")).first).to_be_visible()
    page.locator("#try-prompt textarea").fill("rain on a city night")
    page.locator("#try-go").click()
    expect(page.locator("#try-output textarea")).to_have_value(re.compile(r"\S"), timeout=60_000)
    shoot(page, "finetune")
