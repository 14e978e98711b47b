"""Voice activity (whisper_gl.vad): Silero hears voices, not noise or tones; what is too short or too
quiet is never decoded. The detector's answers here are far from its threshold (speech against
noise, a tone and silence), not a margin inside its numerical spread across CPUs."""

import numpy as np
import pytest

from whisper_gl.audio import load_audio
from whisper_gl.vad import MIN_SPEECH_SECONDS, SILENCE_PEAK, has_speech, is_inaudible, speech_share, speech_spans

RATE = 16000


@pytest.fixture(scope="module")
def spoken(examples_dir) -> np.ndarray:
    return load_audio(examples_dir / "short.mp3")


def test_the_detector_hears_voices_not_noise_or_tones(hostile_media, spoken):
    assert has_speech(spoken)
    assert has_speech(np.concatenate([load_audio(hostile_media["tone.wav"]), spoken]))  # in the 2nd window
    assert not has_speech(load_audio(hostile_media["noise.wav"]))
    assert not has_speech(load_audio(hostile_media["tone.wav"]))


def test_spans_lie_inside_the_recording_in_order_and_within_the_longest_allowed(spoken):
    padded = np.concatenate([np.zeros(2 * RATE, np.float32), spoken, np.zeros(2 * RATE, np.float32)])
    spans = speech_spans(padded, max_seconds=2.0)
    assert spans, "no speech found in short.mp3"
    assert all(0 <= start < end <= len(padded) for start, end in spans)
    assert [start for start, _ in spans] == sorted(start for start, _ in spans)
    assert all(end - start <= 2.0 * RATE + RATE // 10 for start, end in spans)
    # The two seconds of silence around the clip are not speech (the detector pads spans a little).
    assert spans[0][0] > 1.5 * RATE and spans[-1][1] < len(padded) - 1.5 * RATE


def test_too_short_too_quiet_or_not_a_signal_is_inaudible(spoken):
    assert not is_inaudible(spoken)
    assert is_inaudible(spoken[: round(MIN_SPEECH_SECONDS * RATE) - 1])
    assert is_inaudible(spoken * (0.9 * SILENCE_PEAK / np.abs(spoken).max()))
    assert is_inaudible(np.zeros(0, np.float32))
    nan = spoken.copy()
    nan[100] = np.nan
    assert is_inaudible(nan)


def test_the_share_of_voice_tells_speech_under_noise_from_noise_alone(spoken, sample_corpus_dir):
    """speech_share: what the no-speech guard asks of the detector. Measured on these sets: 0.61-0.80
    for each of the 20 test clips of the sample corpus under noise at 10 dB SNR, 0.00-0.03 for every
    noise clip (3 s and 5 s), those whose blip of "speech" fooled has_speech included (white and
    velvet noise, seed 2). Silero runs in onnxruntime, not in CTranslate2's ISA-dependent kernels."""
    from tests.support import noise_clips, noisy_speech_clips

    assert speech_share(spoken) > 0.5
    assert speech_share(np.zeros(0, np.float32)) == 0.0 and speech_share(spoken[:100]) == 0.0
    assert max(speech_share(clip) for clip in noise_clips().values()) < 0.1
    assert min(speech_share(clip) for clip, _ in noisy_speech_clips(sample_corpus_dir).values()) > 0.4
