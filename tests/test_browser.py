"""The apps in a real browser: headless Chromium driven by Playwright (the file app's upload, the
microphone app's live captions from Chromium's fake microphone)."""

import contextlib
import re
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "test-screenshots"  # git-ignored
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                    reason="chromium is not installed (`scripts/setup.sh --with-browser` installs it)")


@needs_chromium
@pytest.mark.timeout(180)
def test_file_app_in_chromium_uploads_transcribes_and_offers_subtitles(serve_app, examples_dir, tmp_path,
                                                                       assert_engine_text):
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

            assert_engine_text(page.locator("#transcript textarea").input_value(), clip)
            screenshot = tmp_path / "file_app.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()


# The fake microphone plays this much of long.mp3 (Chromium loops the file: it must outlast the test's wait).
FAKE_MICROPHONE_SECONDS = 30
# The live captions' words, confirmed and tentative, as the page shows them (the spacing is the engine's).
CAPTION_TEXT = "(document.querySelector('#live span.confirmed')?.parentElement.innerText || '').trim()"
CAPTION_PARTS = ("['confirmed', 'tentative'].map(kind => "
                 "(document.querySelector('#live span.' + kind) || {textContent: ''}).textContent)")


@needs_chromium
@pytest.mark.timeout(180)
def test_microphone_app_in_chromium_shows_live_captions_while_the_clip_plays(serve_app, examples_dir, tmp_path,
                                                                             engine_calls):
    """Chromium's fake microphone speaks long.mp3 (48 kHz, as a real one would): captions appear
    before the clip has finished playing, the tentative tail is styled apart, and Stop brings
    the full decode with its subtitles."""
    from tests.support import fake_microphone, ffmpeg
    from whisper_gl.vad import has_speech

    playwright = pytest.importorskip("playwright.sync_api")
    url = serve_app("microphone")
    speech = tmp_path / "microphone.wav"
    ffmpeg("-i", str(examples_dir / "long.mp3"), "-t", str(FAKE_MICROPHONE_SECONDS), "-ar", "48000", "-ac", "1",
           str(speech))
    microphone = fake_microphone(speech)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + microphone)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="load")
            page.locator("#microphone button.record-button").click()
            started = time.monotonic()
            # Live text: confirmed or tentative words, not just the "Listening…" line.
            page.wait_for_function(f"{CAPTION_TEXT}.length > 0", timeout=FAKE_MICROPHONE_SECONDS * 1000)
            first_caption = time.monotonic() - started
            live_text = page.evaluate(CAPTION_TEXT)
            print(f"first live caption after {first_caption:.1f} s of recording: {live_text!r}")
            assert first_caption < FAKE_MICROPHONE_SECONDS and live_text  # while the clip was still playing
            assert page.evaluate("getComputedStyle(document.querySelector('#live .tentative')).fontStyle") == "italic"
            page.wait_for_timeout(max(0, 12_000 - (time.monotonic() - started) * 1000))  # three or four sentences
            page.screenshot(path=str(SCREENSHOTS / "microphone_live.png"), full_page=True)
            confirmed, tentative = page.evaluate(CAPTION_PARTS)
            if confirmed and tentative:  # never glued where the confirmed text meets the tentative tail
                assert tentative.startswith(" ") and f"{confirmed} {tentative.strip()}" in page.evaluate(CAPTION_TEXT)

            page.locator("#microphone button", has_text=re.compile("stop", re.I)).first.click()
            page.wait_for_function("document.querySelector('#transcript textarea').value.length > 0",
                                   timeout=90_000)
            page.wait_for_function("document.querySelector('#subtitles').innerText.replace(/\\s+/g, '')"
                                   ".includes('recording.srt')")
            page.wait_for_function("document.querySelector('#timing').innerText.includes('real time')")
            page.wait_for_timeout(1000)  # let the outputs' fade-in finish before the screenshot
            final = page.locator("#transcript textarea").input_value()
            screenshot = SCREENSHOTS / "microphone_final.png"
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"final transcript: {final!r}; screenshots in {SCREENSHOTS}")

            assert page.evaluate(CAPTION_TEXT) == ""  # the full decode replaced the live text
            # The engine's transcript of what the fake microphone recorded (it starts wherever
            # Chromium's looping file happens to be): speech, at least as long as the wait above.
            recording, result = engine_calls[-1]
            assert final.strip() == result.text.strip() and final.strip()
            assert len(recording) >= 10 * 16000 and has_speech(recording)
            srt_link = page.locator("#subtitles a").first.get_attribute("href")
            srt = page.request.get(srt_link if "://" in srt_link else url.rstrip("/") + srt_link).text()
            assert srt.startswith("1\n00:00:0"), srt[:80]
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()



# --- errors stay on the page, next to the input, until the next action ------------------------------

ERROR_SECONDS = 15  # how long after it happened the error must still be there


@contextlib.contextmanager
def browser_page(url: str, *chromium_args: str, height: int = 860, wait_until: str = "networkidle"):
    """A headless Chromium page open at `url`."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(chromium_args))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.goto(url, wait_until=wait_until)
            yield page
        finally:
            browser.close()


def _error_stays(page, box: str, message: str, screenshot: Path) -> None:
    """The error box `box` shows `message` and still does ERROR_SECONDS later (then the screenshot)."""
    page.wait_for_function(f"(document.querySelector('{box}') || {{innerText: ''}}).innerText.includes({message!r})",
                           timeout=120_000)
    page.wait_for_timeout(ERROR_SECONDS * 1000)
    shown = page.locator(box).inner_text()
    assert message in shown and page.locator(box).is_visible(), shown
    assert page.locator(f"{box} [role=alert]").count() == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"{screenshot.name}: {shown!r} still shown {ERROR_SECONDS} s later")


def _cleared(page, box: str) -> None:
    page.wait_for_function(f"document.querySelector('{box}').innerText.trim() === ''", timeout=30_000)


@needs_chromium
@pytest.mark.timeout(240)
def test_file_app_shows_an_error_next_to_the_input_until_the_next_file(serve_app, tmp_path):
    notes = tmp_path / "notes.wav"
    notes.write_text("a shopping list, not a recording\n" * 10)
    with browser_page(serve_app("file")) as page:
        page.locator("input[type=file]").first.set_input_files(str(notes))
        page.wait_for_function("document.querySelector('#source').innerText.includes('notes')")
        page.locator("#transcribe").click()
        _error_stays(page, "#error", "not an audio file", SCREENSHOTS / "file_app_error.png")
        page.locator("#source button[aria-label='Clear']").first.click()  # the next action clears it
        _cleared(page, "#error")


@needs_chromium
@pytest.mark.timeout(240)
def test_youtube_app_offline_says_the_server_has_no_network_and_keeps_saying_it(serve_app, monkeypatch):
    """The app's server cannot resolve any name (as on a machine without network): the page says so,
    next to the link, instead of blaming the link."""
    import socket

    real = socket.getaddrinfo

    def offline(host, *args, **kwargs):  # this process's resolver (the app's): loopback only
        if host in ("localhost", "127.0.0.1", "::1", None):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    url = serve_app("youtube")
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    link = "#source textarea, #source input"
    with browser_page(url) as page:
        page.locator(link).first.fill("https://www.youtube.com/watch?v=dQw4w9WgXcQ")
        page.locator("#transcribe").click()
        _error_stays(page, "#error", "this server cannot reach the internet", SCREENSHOTS / "youtube_app_error.png")
        assert "check the link" not in page.locator("#error").inner_text()
        page.locator(link).first.fill("https://www.youtube.com/watch?v=other")  # the next action clears it
        _cleared(page, "#error")


@needs_chromium
@pytest.mark.timeout(240)
def test_microphone_app_says_why_a_recording_gave_nothing_next_to_the_microphone(serve_app, tmp_path):
    """Chromium's fake microphone records 3 s of silence; Stop: "no speech was heard" stays next to the
    microphone (not a toast that vanishes), until Record is pressed again."""
    from tests.support import fake_microphone, ffmpeg

    silence = tmp_path / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "30", str(silence))
    with browser_page(serve_app("microphone"), *fake_microphone(silence), height=900, wait_until="load") as page:
        page.locator("#microphone button.record-button").click()
        page.wait_for_timeout(3000)
        page.locator("#microphone button", has_text=re.compile("stop", re.I)).first.click()
        _error_stays(page, "#live-error", "no speech was heard", SCREENSHOTS / "microphone_app_error.png")
        page.locator("#microphone button.record-button").click()  # the next action clears it
        _cleared(page, "#live-error")
