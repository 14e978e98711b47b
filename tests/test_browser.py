"""The file app in a real browser: headless Chromium driven by Playwright."""

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                    reason="chromium is not installed (`scripts/setup.sh --with-browser` installs it)")
@pytest.mark.timeout(180)
def test_file_app_in_chromium_uploads_transcribes_and_offers_subtitles(serve_app, examples_dir, tmp_path,
                                                                       assert_heard):
    playwright = pytest.importorskip("playwright.sync_api")
    url = serve_app("file")
    clip = examples_dir / "short.mp3"

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url, wait_until="networkidle")
            assert "whisper-base" in page.locator("body").inner_text()  # the title names the model

            page.locator("input[type=file]").first.set_input_files(str(clip))
            # File names are rendered as "short" + ".mp3" in separate blocks: compare without spaces.
            shows = ("text => document.querySelector('{}').innerText.replace(/\\s+/g, '')"
                     ".includes(text.replace(/\\s+/g, ''))")
            page.wait_for_function(shows.format("#source"), arg="short.mp3")  # the upload landed
            page.locator("#transcribe").click()
            page.wait_for_function("document.querySelector('#transcript textarea').value.length > 0",
                                   timeout=120_000)
            page.wait_for_function(shows.format("#subtitles"), arg="short.srt")
            page.wait_for_function(shows.format("#timing"), arg="real time")
            page.wait_for_timeout(1000)  # let the outputs' fade-in finish before the screenshot

            assert_heard(page.locator("#transcript textarea").input_value(), (examples_dir / "short.txt")
                         .read_text(encoding="utf-8").strip())
            screenshot = tmp_path / "file_app.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()
