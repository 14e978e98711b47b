"""whisper_gl.audio: any container decodes to 16 kHz mono float32; bad input gets a short reason."""

import shutil
import subprocess
import time

import numpy as np
import pytest

from tests.support import memory_mb, reset_peak_memory, send_media, serve_routes
from whisper_gl import WhisperGLError, audio
from whisper_gl.audio import (EMPTY_FILE, MISSING_FILE, NO_AUDIO_STREAM, NOT_AUDIO, TOO_SLOW, AudioError, AudioTooLong,
                              load_audio, read_audio)

BACKENDS = ["torchcodec", "ffmpeg"]

# name -> ffmpeg output options (the speech comes from one espeak-ng wav at 22.05 kHz)
GOOD_FORMATS = {
    "speech.mp3": ["-ar", "48000", "-ac", "1"],  # Common Voice
    "stereo_44k.m4a": ["-ar", "44100", "-ac", "2", "-c:a", "aac"],
    "speech.ogg": ["-c:a", "libopus"],
    "speech.flac": [],
    "recording.webm": ["-c:a", "libopus"],  # a browser's MediaRecorder
    "unsigned_8bit.wav": ["-c:a", "pcm_u8", "-ar", "8000"],
}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The same ~2.5 s of speech in many containers, plus a video and broken files."""
    folder = tmp_path_factory.mktemp("clips")
    source = folder / "source.wav"
    subprocess.run(["espeak-ng", "-v", "es", "-w", str(source), "Ola, bos días. Como estás hoxe?"], check=True)
    for name, options in GOOD_FORMATS.items():
        _ffmpeg("-i", str(source), *options, str(folder / name))
    shutil.copy(folder / "recording.webm", folder / "webm_named.wav")  # extension lies
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:d=4", "-i", str(source),
            "-shortest", "-c:v", "libx264", "-c:a", "aac", str(folder / "video.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:d=1", "-c:v", "libx264", str(folder / "silent_video.mp4"))
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "text.wav").write_text("this is not audio\n")
    (folder / "random.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    return folder


def _seconds(folder, name="source.wav") -> float:
    return len(load_audio(folder / name)) / 16000


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [*GOOD_FORMATS, "webm_named.wav", "video.mp4"])
def test_every_container_decodes_to_16k_mono_float32(clips, name, backend):
    waveform = load_audio(clips / name, backend=backend)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    # Same speech in every container: same length at 16 kHz (codec padding aside), not silence.
    assert len(waveform) / 16000 == pytest.approx(_seconds(clips), abs=0.05)
    assert np.sqrt(np.mean(waveform**2)) > 0.01
    assert np.abs(waveform).max() < 1.5


def test_content_is_probed_not_the_extension(clips):
    np.testing.assert_array_equal(load_audio(clips / "webm_named.wav"), load_audio(clips / "recording.webm"))


def test_bytes_decode_like_the_file(clips):
    data = (clips / "speech.ogg").read_bytes()
    np.testing.assert_array_equal(load_audio(data), load_audio(clips / "speech.ogg"))
    assert len(load_audio(data, backend="ffmpeg")) / 16000 == pytest.approx(_seconds(clips), abs=0.05)


def test_other_sampling_rate(clips):
    assert len(load_audio(clips / "speech.flac", sampling_rate=8000)) / 8000 == pytest.approx(_seconds(clips), abs=0.01)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, reason", [
    ("missing.mp3", MISSING_FILE),
    ("empty.mp3", EMPTY_FILE),
    ("text.wav", NOT_AUDIO),
    ("random.mp3", NOT_AUDIO),
    ("silent_video.mp4", NO_AUDIO_STREAM),
])
def test_bad_input_has_a_short_reason(clips, name, reason, backend):
    with pytest.raises(AudioError) as caught:
        load_audio(clips / name, backend=backend)
    assert caught.value.reason == reason
    assert isinstance(caught.value, WhisperGLError)  # entry points print it as one line
    assert str(caught.value) == f"{name}: {reason}"


def test_empty_bytes():
    with pytest.raises(AudioError, match=EMPTY_FILE):
        load_audio(b"")


def test_falls_back_to_ffmpeg_without_torchcodec(clips, monkeypatch):
    import whisper_gl.audio as audio

    monkeypatch.setattr(audio, "_torchcodec_available", lambda: False)
    monkeypatch.setattr(audio, "_decode_torchcodec", lambda *a: pytest.fail("torchcodec used"))
    assert len(load_audio(clips / "speech.mp3")) / 16000 == pytest.approx(_seconds(clips), abs=0.05)


# --- a stranger's file: decoded under a cap, whatever it claims ------------------------------

@pytest.mark.parametrize("name", [*GOOD_FORMATS, "webm_named.wav", "video.mp4"])
def test_a_capped_decode_gives_the_same_samples(clips, name):
    decoded = read_audio(clips / name, max_seconds=60)
    assert len(decoded.waveform) == pytest.approx(len(load_audio(clips / name, backend="ffmpeg")), abs=2)
    assert decoded.partial_note == ""  # whole files say nothing
    from_bytes = load_audio((clips / name).read_bytes(), max_seconds=60)
    assert len(from_bytes) == pytest.approx(len(decoded.waveform), abs=160)  # a pipe hides an mp3's padding info
    np.testing.assert_allclose(from_bytes[:16000], decoded.waveform[:16000], atol=1e-5)


@pytest.mark.parametrize("name, announced", [("chained.ogg", 1.0), ("vbr.mp3", 28.7), ("silence.ogg", 1.0),
                                             ("recording.webm", None)])
def test_a_capped_decode_stops_at_the_cap_whatever_the_file_announces(hostile_media, name, announced):
    """60 min that announce 1 s, 120 s that announce 29 s, 4 h of silence in 5.4 MB, 2 h of WebM
    without duration: decoding stops just past the cap, in bounded time and memory."""
    started = time.monotonic()
    reset_peak_memory()
    resident, _ = memory_mb()
    with pytest.raises(AudioTooLong, match="this media lasts more than 1 min; the limit is 1 min"):
        read_audio(hostile_media[name], max_seconds=60)
    _, peak = memory_mb()
    assert time.monotonic() - started < 10
    # 61 s at 16 kHz is 3.9 MB of float32; decoding the whole file would take 0.2 to 0.9 GB.
    assert peak - resident < 50, f"peak memory grew by {peak - resident:.0f} MB"


def test_a_cut_file_says_how_much_of_it_was_decoded(clips):
    whole = clips / "speech.mp3"
    cut = clips / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 10])
    decoded = read_audio(cut, max_seconds=60)
    assert 0 < decoded.seconds < 0.5 * read_audio(whole, max_seconds=60).seconds
    assert decoded.partial_note.startswith(f"only {decoded.seconds:.1f} s of the ")
    assert "may be cut or damaged" in decoded.partial_note


def test_an_uploaded_playlist_cannot_make_the_decoder_fetch_urls(clips, tmp_path):
    with serve_routes({"/a.mp3": lambda h: send_media(h, (clips / "speech.mp3").read_bytes())}) as (url, hits):
        playlist = tmp_path / "upload.m3u8"
        playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n{url}/a.mp3\n#EXT-X-ENDLIST\n")
        with pytest.raises(AudioError, match=NOT_AUDIO):
            read_audio(playlist, max_seconds=60)
        with pytest.raises(AudioError, match=NOT_AUDIO):
            read_audio(playlist.read_bytes(), max_seconds=60)
    assert hits == []


def test_a_decode_that_runs_past_its_deadline_is_stopped(hostile_media, monkeypatch):
    monkeypatch.setattr(audio, "DECODE_SECONDS_MIN", 0.05)
    monkeypatch.setattr(audio, "DECODE_SECONDS_PER_SECOND", 0.0)
    started = time.monotonic()
    with pytest.raises(AudioError, match=TOO_SLOW):
        read_audio(hostile_media["chained.ogg"], max_seconds=3600)  # an hour: far more than 0.05 s of work
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("name, reason", [("empty.mp3", EMPTY_FILE), ("text.wav", NOT_AUDIO),
                                          ("silent_video.mp4", NO_AUDIO_STREAM), ("missing.mp3", MISSING_FILE)])
def test_a_capped_decode_has_the_same_short_reasons(clips, name, reason):
    with pytest.raises(AudioError) as caught:
        read_audio(clips / name, max_seconds=60)
    assert caught.value.reason == reason
