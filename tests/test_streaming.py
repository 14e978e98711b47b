"""The live transcript (whisper_gl.streaming): LocalAgreement-2 over a bounded buffer.

The policy tests run a stub decoder (it counts decodes and their lengths) over real audio and the
real voice-activity detector; the engine tests run the real models on the bundled examples and
compare sessions with each other (or, with the fine-tuned demo model, with offline transcription).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.support import assert_same_audio
from whisper_gl.audio import AudioTooLong, load_audio
from whisper_gl.backends import Decoded
from whisper_gl.config import DecodingOptions, LiveOptions
from whisper_gl.metrics import compute_metrics
from whisper_gl.streaming import LiveTranscript, LiveUpdate, live_transcript
from whisper_gl.transcript import Segment, Word
from whisper_gl.transcribe import Transcriber
from whisper_gl.window import PRETRAINED_WINDOW, SAMPLING_RATE

DEMO_MODEL = Path(__file__).resolve().parents[1] / "artifacts" / "model"
LONG_REFERENCE = Path(__file__).resolve().parents[1] / "Resources" / "examples" / "long.txt"
REPEATABLE = LiveOptions(paced=False)  # a decode every step, whatever it costs: the same run every time
# Each backend (beam, seconds between decodes), marked with the library whose kernels its numbers come
# from (scripts/test_isa.py). Transformers encodes a whole 30 s window per decode: greedy, and a decode
# a second, or a 25 s clip outlasted pytest's 15 min timeout under torch's AVX2 path on a busy machine.
BACKENDS = [pytest.param("ctranslate2", 5, 0.5, marks=pytest.mark.ctranslate2),
            pytest.param("transformers", 1, 1.0, marks=pytest.mark.torch)]


def pushed(live: LiveTranscript, audio: np.ndarray, chunk_seconds: float = 0.5, rate: int = SAMPLING_RATE):
    """Every update of `audio` pushed in chunks, then close()'s."""
    chunk = round(chunk_seconds * rate)
    updates = [live.push(audio[start: start + chunk], sampling_rate=rate) for start in range(0, len(audio), chunk)]
    return updates + [live.close()]


def assert_only_grows(updates: list[LiveUpdate]) -> None:
    confirmed = ""
    for update in updates:
        assert update.confirmed.startswith(confirmed)
        assert (confirmed + update.delta).strip() == update.confirmed
        confirmed = update.confirmed


class CountingDecoder:
    """A stand-in engine: a word every 0.5 s of the buffer (each "la", a full stop every fourth),
    the last one left out as a word still being spoken; it records every decode's length."""

    backend, model, window = "stub", "stub", PRETRAINED_WINDOW

    def __init__(self):
        self.lengths: list[float] = []

    def decode_window(self, waveform, decoding, window=None) -> Decoded:
        seconds = len(waveform) / SAMPLING_RATE
        self.lengths.append(seconds)
        words = [Word(t, t + 0.4, " la." if index % 4 == 3 else " la", 0.9)
                 for index, t in enumerate(np.arange(0.0, seconds - 0.9, 0.5))]
        segments = [Segment(group[0].start, group[-1].end, "".join(w.text for w in group).strip(), tuple(group))
                    for group in (words[i: i + 4] for i in range(0, len(words), 4))]
        return Decoded(segments, "gl", predicted_timestamps=True)

    def transcribe(self, audio, decoding=None):
        raise AssertionError("keep_audio=False: finish() must not decode again")


@pytest.fixture(scope="module")
def long_audio(examples_dir) -> np.ndarray:
    return load_audio(examples_dir / "long.mp3")


@pytest.fixture(scope="module")
def short_audio(examples_dir) -> np.ndarray:
    return load_audio(examples_dir / "short.mp3")


# --- the policy, on a stub decoder ---------------------------------------------------------------


def test_a_ten_minute_recording_keeps_the_buffer_and_each_decode_bounded(long_audio):
    audio = np.tile(long_audio, int(np.ceil(600 * SAMPLING_RATE / len(long_audio))))[: 600 * SAMPLING_RATE]
    decoder = CountingDecoder()
    live = LiveTranscript(decoder, DecodingOptions(language="gl"), REPEATABLE, keep_audio=False)
    window = min(REPEATABLE.window_seconds, PRETRAINED_WINDOW.seconds)
    most = 0.0
    updates = []
    for start in range(0, len(audio), SAMPLING_RATE // 2):
        updates.append(live.push(audio[start: start + SAMPLING_RATE // 2]))
        most = max(most, live.buffered_seconds)
    updates.append(live.close())
    assert most < window and max(decoder.lengths) < window
    assert live.seconds == pytest.approx(600)
    assert_only_grows(updates)
    assert len(decoder.lengths) <= 600 / REPEATABLE.step_seconds
    words = live.words
    assert all(a.end <= b.start + 1e-6 for a, b in zip(words, words[1:]))  # timed in the recording, in order
    assert words[-1].end > 590 and live.finish().text.replace(".", "").split() == ["la"] * len(words)


def test_silence_and_noise_give_no_text_and_no_decode():
    decoder = CountingDecoder()
    live = LiveTranscript(decoder, DecodingOptions(language="gl"), REPEATABLE, keep_audio=False)
    noise = np.random.default_rng(0).normal(0, 0.01, 20 * SAMPLING_RATE).astype(np.float32)
    updates = pushed(live, np.concatenate([np.zeros(20 * SAMPLING_RATE, np.float32), noise]))
    assert decoder.lengths == [] and all(u.confirmed == u.tentative == "" for u in updates)
    assert live.buffered_seconds == 0 and live.finish().text == ""


def test_past_max_seconds_keeps_what_fits_and_raises(short_audio):
    decoder = CountingDecoder()
    live = LiveTranscript(decoder, DecodingOptions(language="gl"), REPEATABLE, keep_audio=False, max_seconds=2.0)
    live.push(short_audio[: SAMPLING_RATE])
    with pytest.raises(AudioTooLong):
        live.push(short_audio[SAMPLING_RATE: 3 * SAMPLING_RATE])
    assert live.seconds == pytest.approx(2.0)
    live.close()
    with pytest.raises(Exception, match="closed"):
        live.push(short_audio[:100])


# --- the real engine ------------------------------------------------------------------------------


@pytest.mark.slow
def test_interleaved_sessions_do_not_mix(base_transcriber, long_audio, short_audio):
    clips = [long_audio[20 * SAMPLING_RATE: 32 * SAMPLING_RATE], short_audio]
    alone = []
    for clip in clips:
        live = live_transcript(base_transcriber, live=REPEATABLE, keep_audio=False)
        pushed(live, clip)
        alone.append(live.words)
    sessions = [live_transcript(base_transcriber, live=REPEATABLE, keep_audio=False) for _ in clips]
    chunk = SAMPLING_RATE // 2
    for start in range(0, max(map(len, clips)), chunk):
        for live, clip in zip(sessions, clips):
            if start < len(clip):
                live.push(clip[start: start + chunk])
    for live in sessions:
        live.close()
    assert [live.words for live in sessions] == alone
    assert all(words for words in alone)


@pytest.mark.slow
@pytest.mark.model_output
@pytest.mark.ctranslate2
def test_a_48_khz_stereo_int16_microphone_is_heard_like_16_khz(base_transcriber, short_audio, engine_calls):
    """A 48 kHz stereo int16 microphone: mixed down and scaled, its samples are exactly those of
    the same microphone sending mono floats (so the words are the same), and resampled to 16 kHz
    they are the clip's, up to resampling and 16-bit rounding (what finish() decodes).

    The texts of a 48 kHz and a 16 kHz run are not compared on the untuned base: the resampling
    alone changes its words (WER 37.5 % between the two on an AMD EPYC, the issue-19 failure of a
    25 % bound). Nor on the demo model: 0 % under CT2_FORCE_CPU_ISA GENERIC/AVX2/AVX512 with
    CT2_USE_MKL=0 and AVX2 with =1, but 37.5 % (3 of 8 words of short.mp3) under ONEDNN_MAX_CPU_ISA=AVX2
    CT2_USE_MKL=0; so the 48 kHz path is held to the samples, which decide the words."""
    import soxr

    at_48k = soxr.resample(short_audio, SAMPLING_RATE, 48_000)
    pcm = (np.clip(at_48k, -1, 1) * 32767).astype(np.int16)
    live = live_transcript(base_transcriber, live=REPEATABLE)
    updates = pushed(live, np.stack([pcm, pcm], axis=1), rate=48_000)
    assert_only_grows(updates)
    assert live.seconds == pytest.approx(len(short_audio) / SAMPLING_RATE, abs=0.01)
    mono = live_transcript(base_transcriber, live=REPEATABLE, keep_audio=False)
    pushed(mono, (pcm / 32767).astype(np.float32), rate=48_000)
    assert live.text == mono.text and live.words == mono.words and live.text
    result = live.finish()
    (recording, decoded), = engine_calls
    assert_same_audio(recording, short_audio)
    assert result.text == decoded.text and result.duration == pytest.approx(len(short_audio) / SAMPLING_RATE, abs=0.01)


def _live_run(model, backend: str, beam: int, step: float, clip):
    engine = Transcriber(model, backend=backend, language="gl", beam_size=beam, temperatures=(0.0,))
    live = live_transcript(engine, live=LiveOptions(paced=False, beam_size=beam, step_seconds=step))
    return engine, live, pushed(live, clip)


@pytest.mark.slow
@pytest.mark.model_output
@pytest.mark.parametrize("backend, beam, step", BACKENDS)
def test_live_text_is_confirmed_once_spaced_and_given_while_spoken(backend, beam, step, long_audio, base_model_dir,
                                                                   record_property):
    clip = long_audio[: 25 * SAMPLING_RATE]
    engine, live, updates = _live_run(base_model_dir, backend, beam, step, clip)
    assert_only_grows(updates)
    # Text while it is spoken: two decodes agreeing on a word, 20 s before the end of the clip. Not
    # paced (a decode every step), so the load does not move it; measured on CTranslate2: 2 s under
    # CT2_FORCE_CPU_ISA GENERIC, AVX2 and AVX512 with CT2_USE_MKL=0, and AVX2 with =1.
    first = min((update.seconds for update in updates if update.confirmed), default=float("inf"))
    record_property("first_confirmed_seconds", first)
    assert first < 20
    assert not re.search(r"[.?!,][^\s.?!,]|\s\s|^\s|\s$", live.text)  # a space after punctuation, one between words
    # finish(): the engine's normal path over the recording it kept (as 16-bit samples).
    assert live.finish().text == engine.transcribe((np.clip(clip, -1, 1) * 32767).astype(np.int16)).text


@pytest.mark.slow
@pytest.mark.model_output
@pytest.mark.skipif(not (DEMO_MODEL / "ctranslate2").is_dir(), reason="needs the fine-tuned demo model (make demo)")
@pytest.mark.parametrize("backend, beam, step", BACKENDS)
def test_live_text_of_the_demo_model_is_close_to_offline(backend, beam, step, long_audio, record_property):
    """Accuracy needs a model that knows Galician (the untuned base's texts are noise): the
    fine-tuned demo model, where `make demo` has built it."""
    clip = long_audio[: 25 * SAMPLING_RATE]
    engine, live, _ = _live_run(DEMO_MODEL, backend, beam, step, clip)
    # The first seven sentences of long.txt are spoken in its first 25 s. The demo model is weak
    # (WER ~45 %): the live text is held to offline transcription's errors, within a tolerance.
    # Measured on CTranslate2 (live / offline WER): 40.4 / 48.9 under CT2_FORCE_CPU_ISA=AVX2
    # CT2_USE_MKL=0, 40.4 / 59.6 with =1, 38.3 / 59.6 under AVX512, 44.7 / 57.4 under GENERIC: the
    # offline WER alone moves 11 points between paths, live stays below it on each.
    reference = " ".join((LONG_REFERENCE.read_text(encoding="utf-8").splitlines())[:7])
    offline = engine.transcribe(clip).text
    live_wer, offline_wer = (compute_metrics([text], [reference])["wer"] for text in (live.text, offline))
    record_property("live_wer", live_wer)
    record_property("offline_wer", offline_wer)
    assert live_wer <= offline_wer + 10
