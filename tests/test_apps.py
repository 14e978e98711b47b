"""The three Gradio apps, launched and called through gradio_client with the real engine
(offline Whisper base): transcripts, subtitles, bad input of every kind, load and cleanup."""

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.support import launched_app, serve_folder
from whisper_gl.download import ALLOW_PRIVATE_ENV

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
# Small caps so that ordinary example files exceed them.
FILE_APP = dict(max_mb=0.5, max_minutes=1.0)
YOUTUBE_APP = dict(max_mb=5.0, max_minutes=1.0)


def client(url: str, tmp: Path) -> Client:
    return Client(url, verbose=False, download_files=str(tmp))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def short_clip(examples_dir):
    """Resources/examples/short.mp3 and the sentence it speaks."""
    return examples_dir / "short.mp3", (examples_dir / "short.txt").read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def file_app(serve_app, tmp_path_factory):
    return client(serve_app("file", **FILE_APP), tmp_path_factory.mktemp("file-app"))


@pytest.fixture(scope="module")
def youtube_app(serve_app, tmp_path_factory):
    return client(serve_app("youtube", **YOUTUBE_APP), tmp_path_factory.mktemp("youtube-app"))


@pytest.fixture(scope="module")
def media_server(examples_dir):
    """Resources/examples over HTTP on 127.0.0.1, as a stand-in for a media site."""
    with serve_folder(examples_dir) as url:
        yield url


def check_good_request(app: Client, value, reference: str, assert_heard) -> str:
    text, _, _ = app.predict(value, api_name="/transcribe")
    assert_heard(text, reference)
    return text


# --- the three apps -------------------------------------------------------------------

def test_file_app_transcribes_an_upload_with_subtitles_and_timing(file_app, short_clip, assert_heard):
    clip, sentence = short_clip
    text, srt_path, timing = file_app.predict(handle_file(clip), api_name="/transcribe")

    assert_heard(text, sentence)
    srt = Path(srt_path).read_text(encoding="utf-8")
    cues = re.findall(r"^\d+\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)$", srt, re.M)
    assert cues, srt
    assert " ".join(cue[2].strip() for cue in cues) == text
    assert cues[0][0] < cues[-1][1] <= "00:00:04,000"  # short.mp3 lasts 3.6 s
    assert Path(srt_path).name == "short.srt"
    assert re.search(r"Audio 3\.\d s · processed in \d+\.\d s \(\d+\.\d\d× real time\) · "
                     r"backend ctranslate2 · language gl", timing), timing


def test_microphone_app_transcribes_a_browser_recording(serve_app, sample_corpus_dir, tmp_path, assert_heard):
    # Browsers record WebM/Opus, and the upload may well be named .wav.
    first = (sample_corpus_dir / "test.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    recording = tmp_path / "recording.wav"
    ffmpeg("-i", str(sample_corpus_dir / "clips" / first[1]), "-c:a", "libopus", "-f", "webm", str(recording))
    microphone_app = client(serve_app("microphone"), tmp_path)

    check_good_request(microphone_app, handle_file(recording), first[3], assert_heard)


def test_youtube_app_downloads_with_yt_dlp_and_cleans_up(
        youtube_app, media_server, short_clip, monkeypatch, assert_heard):
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")  # the media server is on 127.0.0.1
    downloads = Path(tempfile.gettempdir())
    before = set(downloads.glob("whisper-gl-download-*"))
    _, sentence = short_clip

    text, srt_path, timing = youtube_app.predict(f"{media_server}/short.mp3", api_name="/transcribe")

    assert_heard(text, sentence)
    assert Path(srt_path).read_text(encoding="utf-8").startswith("1\n00:00:")
    assert "language gl" in timing
    assert set(downloads.glob("whisper-gl-download-*")) == before  # the download is gone


# --- bad input: a short message, and the app answers the next good request --------------

def _truncated(source: Path, target: Path, size: int) -> None:
    target.write_bytes(source.read_bytes()[:size])


BAD_FILES = {
    # name: (make the file from short.mp3 / long.mp3, message shown)
    "empty": (lambda short, long, out: out.write_bytes(b""), "empty"),
    "text renamed .wav": (lambda short, long, out: out.write_text("not audio at all\n"), "not an audio file"),
    "truncated mp3": (lambda short, long, out: _truncated(short, out, 300), "could not decode"),
    "0.1 s of audio": (lambda short, long, out: ffmpeg("-i", str(short), "-t", "0.1", str(out)), "no speech"),
    "silence": (lambda short, long, out: ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3",
                                                str(out)), "no speech"),
    "over the size cap": (lambda short, long, out: out.write_bytes(long.read_bytes()), r"the limit is 0\.5 MB"),
    "over the duration cap": (lambda short, long, out: ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=300:duration=70", "-b:a", "16k", str(out)), r"limit is 1 min"),
}
SUFFIX = {"text renamed .wav": ".wav", "0.1 s of audio": ".wav", "silence": ".wav", "empty": ".wav"}


@pytest.mark.parametrize("case", BAD_FILES)
def test_file_app_refuses_bad_input_and_keeps_serving(case, file_app, short_clip, examples_dir, tmp_path,
                                                      assert_heard):
    make, message = BAD_FILES[case]
    bad = tmp_path / f"upload{SUFFIX.get(case, '.mp3')}"
    make(short_clip[0], examples_dir / "long.mp3", bad)

    started = time.monotonic()
    with pytest.raises(AppError, match=message) as refused:
        file_app.predict(handle_file(bad), api_name="/transcribe")
    assert "Traceback" not in str(refused.value) and len(str(refused.value)) < 120
    assert time.monotonic() - started < 30

    check_good_request(file_app, handle_file(short_clip[0]), short_clip[1], assert_heard)


def test_file_app_transcribes_what_a_cut_mp3_holds(file_app, short_clip, tmp_path):
    cut = tmp_path / "cut.mp3"
    _truncated(short_clip[0], cut, short_clip[0].stat().st_size // 2)

    text, _, timing = file_app.predict(handle_file(cut), api_name="/transcribe")

    assert text.strip()
    seconds = float(re.search(r"Audio (\d+\.\d) s", timing).group(1))
    assert 0.5 < seconds < 3.0  # the part that arrived, not the 3.6 s the header announces


def test_an_internal_failure_is_a_generic_message_and_logged(file_app, base_transcriber, short_clip, monkeypatch,
                                                            caplog, assert_heard):
    def crash(audio):
        raise RuntimeError("decoder state corrupted at 0x7f3a")

    monkeypatch.setattr(base_transcriber, "transcribe", crash)  # a fault inside the real engine
    with pytest.raises(AppError) as refused:
        file_app.predict(handle_file(short_clip[0]), api_name="/transcribe")
    assert str(refused.value) == "could not transcribe this audio"  # no internals shown
    assert "decoder state corrupted" in caplog.text  # but the server log has them

    monkeypatch.undo()
    check_good_request(file_app, handle_file(short_clip[0]), short_clip[1], assert_heard)


BAD_LINKS = {
    "file:// URL": ("file:///etc/passwd", "only http"),
    "127.0.0.1 without the allow flag": ("{server}/short.mp3", "private or local addresses"),
    "playlist": ("https://www.youtube.com/playlist?list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf", "playlist"),
    "unreachable host": ("http://nonexistent.invalid/a.mp3", "could not reach nonexistent.invalid"),
    "missing file": ("{server}/nothing-here.mp3", "HTTP 404"),
    "over the duration cap (known only after download)": ("{server}/long.mp3", r"limit is 1 min"),
}


@pytest.mark.parametrize("case", BAD_LINKS)
def test_youtube_app_refuses_bad_links_and_keeps_serving(case, youtube_app, media_server, short_clip, monkeypatch,
                                                         assert_heard):
    link, message = BAD_LINKS[case]
    allowed = case not in {"127.0.0.1 without the allow flag"}
    if allowed:
        monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    else:
        monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)

    started = time.monotonic()
    with pytest.raises(AppError, match=message):
        youtube_app.predict(link.format(server=media_server), api_name="/transcribe")
    assert time.monotonic() - started < 20

    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    check_good_request(youtube_app, f"{media_server}/short.mp3", short_clip[1], assert_heard)


# --- the real door under load ---------------------------------------------------------

def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.timeout(300)
def test_file_app_door_under_load_stays_bounded_and_leaves_no_files(base_model_dir, short_clip, tmp_path,
                                                                    assert_heard):
    """`python app_file.py` as a Space runs it: 20 concurrent uploads all answered, memory
    bounded, oversized uploads refused at the door, and no file left after shutdown."""
    gradio_tmp, tmp = tmp_path / "gradio", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(gradio_tmp), "TMPDIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False",
           "WHISPER_GL_MODEL": str(base_model_dir), "WHISPER_GL_MAX_MB": "1"}
    # SIGINT: Gradio's clean shutdown deletes its cached files.
    with launched_app("app_file.py", REPO_ROOT, env, tmp_path / "server.log", startup_seconds=120,
                      stop_signal=signal.SIGINT) as (url, server):
        app = client(url, tmp_path / "downloads")
        clip, sentence = short_clip
        check_good_request(app, handle_file(clip), sentence, assert_heard)  # warm up
        rss_before = _rss_mb(server.pid)

        started = time.monotonic()
        jobs = [app.submit(handle_file(clip), api_name="/transcribe") for _ in range(20)]
        results = [job.result(timeout=240) for job in jobs]

        rss_after = _rss_mb(server.pid)
        print(f"20 concurrent requests in {time.monotonic() - started:.1f} s; "
              f"server RSS {rss_before:.0f} -> {rss_after:.0f} MB")
        for text, srt_path, _ in results:  # every request answered, and answered right
            assert_heard(text, sentence)
            assert Path(srt_path).read_text(encoding="utf-8").startswith("1\n00:00:")
        assert rss_after < rss_before + 250, f"RSS grew from {rss_before:.0f} to {rss_after:.0f} MB"

        too_big = tmp_path / "big.mp3"
        too_big.write_bytes(os.urandom(1_200_000))
        with pytest.raises(ValueError, match="exceeds the maximum file size"):
            app.predict(handle_file(too_big), api_name="/transcribe")
    assert _files_under(gradio_tmp) == []
    assert _files_under(tmp) == []
