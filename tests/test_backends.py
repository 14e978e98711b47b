"""The backend registry: a new decoder plugs in by registering itself; options travel down."""

import dataclasses

import numpy as np
import pytest

from whisper_gl import WhisperGLError, backends
from whisper_gl.backends import BACKENDS, Decoded, load_backend, register_backend
from whisper_gl.config import DecodingOptions, ModelOptions
from whisper_gl.transcript import Segment
from whisper_gl.transcribe import Transcriber
from whisper_gl.window import PRETRAINED_WINDOW


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry (the real one is restored afterwards)."""
    monkeypatch.setattr(backends, "BACKENDS", dict(BACKENDS))
    return backends.BACKENDS


@pytest.fixture
def model_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def echo_backend(registry, backend_name="echo", fails=False, suits=True):
    """A backend that decodes nothing: it reports the options it was given."""

    @register_backend
    class Echo:
        name = backend_name
        window = PRETRAINED_WINDOW
        seen: list = []

        def __init__(self, folder, options: ModelOptions):
            if fails:
                raise WhisperGLError(f"{backend_name} cannot load {folder}")
            self.options = options

        @classmethod
        def suits(cls, folder, options):
            return suits

        def decode_sequential(self, audio, options: DecodingOptions):
            Echo.seen.append(options)
            text = f"{options.forced_language} {options.task} beam {options.beam_size}"
            yield Decoded([Segment(0.0, len(audio) / 16000, text)], options.forced_language or "xx", True)

        def decode_chunks(self, chunks, options, timestamps):
            Echo.seen.append(options)
            return [Decoded([Segment(0.0, len(chunk) / 16000, self.looping_text or f"chunk {i} batch {options.batch_size}")],
                            options.forced_language or "xx", timestamps)
                    for i, chunk in enumerate(chunks)]

        looping_text = ""

    assert registry[backend_name] is Echo
    return Echo


def speech() -> np.ndarray:
    return (0.3 * np.sin(np.linspace(0, 2 * np.pi * 440, 16000))).astype(np.float32)


def test_a_registered_backend_is_chosen_by_name_and_gets_the_options(registry, model_folder):
    echo = echo_backend(registry)
    # require_speech off: the echo backend must see the tone (the VAD hears no speech in it)
    engine = Transcriber(model_folder, backend="echo", beam_size=3, language="es", device="cuda",
                         require_speech=False, long_form="sequential")
    assert engine.backend == "echo" and engine._backend.options.device == "cuda"
    assert engine.transcribe(speech()).text == "es transcribe beam 3"
    # per call: another language and task, the engine's own options unchanged
    assert engine.transcribe(speech(), language="auto", task="translate").text == "None translate beam 3"
    assert engine.decoding.language == "es" and echo.seen[-1].temperatures == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert engine.transcribe(speech(), timestamps="vad").segments == []  # a tone has no speech for the VAD
    decoded = len(echo.seen)
    assert Transcriber(model_folder, backend="echo").transcribe(speech()).text == ""  # require_speech: on
    assert len(echo.seen) == decoded  # the tone never reached the backend


def test_batched_decoding_hands_voice_activity_chunks_to_the_backend_and_collapses_loops(
        registry, model_folder, examples_dir):
    from whisper_gl.audio import load_audio

    echo = echo_backend(registry)
    engine = Transcriber(model_folder, backend="echo", batch_size=3, long_form="batched")
    long = load_audio(examples_dir / "long.mp3")[: 40 * 16000]  # sentences with pauses between them
    result = engine.transcribe(long)
    assert echo.seen[-1].batch_size == 3 and len(result.segments) >= 2  # joined up to a window each
    assert all(segment.end - segment.start <= 30 for segment in result.segments)
    starts = [segment.start for segment in result.segments]
    assert starts == sorted(starts) and starts[1] > 10
    vad = engine.transcribe(long, timestamps="vad")  # no timestamps: one sentence-sized chunk each
    assert len(vad.segments) > len(result.segments)
    echo.looping_text = "No o o o o o o vén"  # a loop inside a segment, as the demo model wrote it
    assert {segment.text for segment in engine.transcribe(long).segments} == {"No o vén"}


def test_auto_takes_the_first_that_suits_and_falls_back_when_it_cannot_load(registry, model_folder, caplog):
    registry.clear()
    echo_backend(registry, "broken", fails=True)
    echo_backend(registry, "picky", suits=False)
    echo_backend(registry, "works")
    assert load_backend(model_folder, ModelOptions()).name == "works"
    assert "broken cannot load" in caplog.text and "using the works backend instead" in caplog.text
    assert load_backend(model_folder, ModelOptions(backend="picky")).name == "picky"  # named: tried first


def test_unknown_backends_and_bad_options_are_refused_before_loading(registry, model_folder):
    with pytest.raises(WhisperGLError, match="unknown backend 'onnx': choose one of auto, ctranslate2, transformers"):
        Transcriber(model_folder, backend="onnx")
    with pytest.raises(WhisperGLError, match="unknown task 'summarise'"):
        Transcriber(model_folder, task="summarise")
    with pytest.raises(TypeError, match="unknown engine settings: beams"):
        Transcriber(model_folder, beams=3)
    registry.clear()
    with pytest.raises(WhisperGLError, match="holds no model that a backend can load"):
        load_backend(model_folder, ModelOptions())


def test_decoding_options_are_checked_and_normalised():
    options = DecodingOptions(temperatures=[0, 1], language="auto")
    assert options.temperatures == (0.0, 1.0) and options.forced_language is None
    with pytest.raises(WhisperGLError):
        DecodingOptions(beam_size=0)
    with pytest.raises(WhisperGLError, match="timestamps mode"):
        dataclasses.replace(options, timestamps="never")


def test_unknown_languages_are_refused_in_one_line():
    assert DecodingOptions(language="pt").forced_language == "pt"
    with pytest.raises(WhisperGLError, match="unknown language 'xx'"):
        DecodingOptions(language="xx")
    with pytest.raises(WhisperGLError, match="none below 0"):
        DecodingOptions(temperatures=(-0.5,))


def test_a_prompt_keeps_its_end_within_a_quarter_of_the_context():
    from whisper_gl.backends import prompt_tokens

    def encode(text):
        return list(range(len(text.split())))

    assert prompt_tokens(encode, None, 448) == [] and prompt_tokens(encode, "  ", 448) == []
    assert prompt_tokens(encode, "a b c", 448) == [0, 1, 2]
    assert prompt_tokens(encode, "w " * 500, 448) == list(range(500 - 112, 500))


def test_segments_stream_in_order_as_each_batch_is_decoded(registry, model_folder, examples_dir):
    """transcribe_segments: the decode of transcribe, a batch at a time. A chunk the model leaves
    open (its last segment unclosed) has the rest decoded before any later chunk's segments come out."""
    from whisper_gl.audio import load_audio

    echo = echo_backend(registry)
    batches = []

    def halves(self, chunks, options, timestamps, window=None):  # closes the first half, leaves the rest open
        batches.append(len(chunks))
        return [Decoded([Segment(0.0, len(chunk) / 32000, f"half of {len(chunk)}"),
                         Segment(len(chunk) / 32000, len(chunk) / 16000, "open")], "gl", True, open_end=True)
                for chunk in chunks]

    echo.decode_chunks = halves
    engine = Transcriber(model_folder, backend="echo", batch_size=2, long_form="batched")
    long = load_audio(examples_dir / "long.mp3")[: 70 * 16000]  # three chunks of up to 30 s
    stream = engine.transcribe_segments(long)
    first = next(stream)
    assert batches == [2]  # the first batch only: its first chunk's closed half is ready
    streamed = [first, *stream]
    starts = [segment.start for segment in streamed]
    assert starts == sorted(starts) and len(batches) > 2  # the rests were decoded, in their places
    assert streamed == engine.transcribe(long).segments and stream.language == "gl"
    assert stream.duration == 70.0
