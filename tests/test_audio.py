"""whisper_gl.audio: any container decodes to 16 kHz mono float32; bad input gets a short reason."""

import shutil
import subprocess

import numpy as np
import pytest

from whisper_gl import WhisperGLError
from whisper_gl.audio import (EMPTY_FILE, MISSING_FILE, NO_AUDIO_STREAM, NOT_AUDIO, AudioError,
                              load_audio, probe_duration)

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


def test_probe_duration_matches_the_decoded_length(clips):
    assert probe_duration(clips / "speech.flac") == pytest.approx(_seconds(clips), abs=0.01)
    assert probe_duration(clips / "webm_named.wav") == pytest.approx(_seconds(clips), abs=0.05)
    with pytest.raises(AudioError, match=NOT_AUDIO):
        probe_duration(clips / "text.wav")
    with pytest.raises(AudioError, match=MISSING_FILE):
        probe_duration(clips / "missing.mp3")


def test_falls_back_to_ffmpeg_without_torchcodec(clips, monkeypatch):
    import whisper_gl.audio as audio

    monkeypatch.setattr(audio, "_torchcodec_available", lambda: False)
    monkeypatch.setattr(audio, "_decode_torchcodec", lambda *a: pytest.fail("torchcodec used"))
    assert len(load_audio(clips / "speech.mp3")) / 16000 == pytest.approx(_seconds(clips), abs=0.05)
