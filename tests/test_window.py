"""Short windows end to end: 10 s features -> a 10 s checkpoint -> the engine on audio longer
than the window; and the refusals when features and model windows do not match.

The real offline base is cut to 10 s and trained for one step (once for the module): enough
to prove the folder is self-describing and the engine segments long audio by its window.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_gl import training
from whisper_gl.cli import parse_config
from whisper_gl.config import FeatureConfig, TrainConfig
from whisper_gl.features import extract_features, load_features
from whisper_gl.transcribe import Transcriber
from whisper_gl.window import PRETRAINED_WINDOW, TIME_PRECISION, Window

REPO = Path(__file__).resolve().parents[1]
GREEDY = dict(beam_size=1, temperatures=(0.0,))
CLIPS_IN_LONG_AUDIO = 5  # ~3.4 s each on the bundled corpus, plus pauses: ~19 s

pytestmark = [pytest.mark.slow, pytest.mark.train]  # the module's 10 s checkpoint is trained


def features(corpus: Path, base: Path, output: Path, seconds: int) -> Path:
    """feature_extraction.py's flags, parsed as the script parses them, on 4 clips per split."""
    argv = ["--dataset", str(corpus), "--model", str(base), "--output-dir", str(output),
            "--max-audio-seconds", str(seconds), "--max-samples", "4"]
    extract_features(parse_config(FeatureConfig, "features", argv))
    return output


@pytest.fixture(scope="module")
def features_10s(sample_corpus_dir, base_model_dir, tmp_path_factory) -> Path:
    return features(sample_corpus_dir, base_model_dir, tmp_path_factory.mktemp("f10") / "features", 10)


@pytest.fixture(scope="module")
def features_30s(sample_corpus_dir, base_model_dir, tmp_path_factory) -> Path:
    return features(sample_corpus_dir, base_model_dir, tmp_path_factory.mktemp("f30") / "features", 30)


@pytest.fixture(scope="module")
def model_10s(features_10s, base_model_dir, tmp_path_factory) -> Path:
    """The 30 s base trained one step (batch 2) on the 10 s features: a 10 s checkpoint."""
    output = tmp_path_factory.mktemp("m10") / "model"
    training.train(TrainConfig(features=str(features_10s), preset="smoke", model=str(base_model_dir),
                               output_dir=str(output), max_steps=1, eval_steps=1, batch_size=2,
                               eval_batch_size=1, max_eval_samples=1, generation_max_length=40,
                               learning_rate=1e-5))
    return output


@pytest.fixture(scope="module")
def long_clip(sample_corpus_dir, tmp_path_factory) -> Path:
    """Test-split clips joined by ffmpeg with 0.5 s pauses: one recording about twice the window."""
    with open(sample_corpus_dir / "test.tsv", newline="", encoding="utf-8") as tsv:
        rows = list(csv.DictReader(tsv, delimiter="\t"))[-CLIPS_IN_LONG_AUDIO:]  # not the clips trained/evaluated on
    inputs = [arg for row in rows for arg in ("-i", str(sample_corpus_dir / "clips" / row["path"]))]
    padded = "".join(f"[{i}:a]apad=pad_dur=0.5[a{i}];" for i in range(len(rows)))
    joined = "".join(f"[a{i}]" for i in range(len(rows))) + f"concat=n={len(rows)}:v=0:a=1"
    output = tmp_path_factory.mktemp("long") / "long.wav"
    subprocess.run(["ffmpeg", "-v", "error", *inputs, "-filter_complex", padded + joined, "-ar", "16000",
                    "-ac", "1", str(output)], check=True, timeout=60)
    return output


def test_10_second_features_are_1000_frames(features_10s):
    dataset, config = load_features(features_10s)
    assert (config.chunk_length, config.window_frames) == (10, 1000)
    for split in ("train", "test"):
        assert len(dataset[split]) > 0
        frames = [len(row[0]) for row in dataset[split]["input_features"]]  # [n_mels][frames]
        assert all(0 < n <= 1000 for n in frames), frames


def test_training_cuts_the_model_and_its_processor_to_10_seconds(model_10s):
    from transformers import WhisperConfig, WhisperProcessor

    config = WhisperConfig.from_pretrained(model_10s)
    assert config.max_source_positions == 500
    extractor = WhisperProcessor.from_pretrained(model_10s).feature_extractor
    assert (extractor.chunk_length, extractor.n_samples, extractor.nb_max_frames) == (10, 160_000, 1000)
    # faster-whisper and the export read this file, not processor_config.json
    preprocessor = json.loads((model_10s / "preprocessor_config.json").read_text())
    assert (preprocessor["chunk_length"], preprocessor["nb_max_frames"]) == (10, 1000)


def assert_timed_past_the_window(result, clip_seconds: float) -> None:
    segments = result.segments
    assert segments, "no segments"
    assert all(s.start < s.end for s in segments), segments
    # In order, never overlapping: no segment closes past its window's end (timestamps beyond
    # 10 s are suppressed for a 10 s model), so the next window never starts inside it.
    assert all(a.start < b.start and a.end <= b.start + 0.01 for a, b in zip(segments, segments[1:])), segments
    # Beyond the first window, and not past the audio. (How much of the last window it times
    # depends on the one-step model's numbers, and so on the CPU: not bounded.)
    assert 10 < segments[-1].end <= clip_seconds + 0.5, segments


@pytest.mark.parametrize("timestamps", ["auto", "model"])
def test_a_10_second_checkpoint_transcribes_audio_longer_than_its_window(model_10s, long_clip, timestamps):
    """auto (the default): voice-activity chunks of at most one window, the engine's choice for
    short windows; model: the checkpoint's own timestamps, window after window."""
    engine = Transcriber(model_10s, backend="transformers", timestamps=timestamps, **GREEDY)
    assert engine.backend == "transformers" and engine.window.seconds == 10
    result = engine.transcribe(long_clip)
    assert result.duration > 15
    assert_timed_past_the_window(result, result.duration)
    if timestamps == "auto":
        assert all(s.end - s.start <= 10 for s in result.segments), result.segments


def test_no_segment_closes_past_the_window(model_10s, examples_dir):
    """On the first 30 s of long.mp3 this checkpoint, left to itself, ends a segment at 17.7 s in
    the window that stops at 10 s; then the next window starts at 10 s, inside that segment."""
    from whisper_gl.audio import load_audio

    engine = Transcriber(model_10s, backend="transformers", timestamps="model", **GREEDY)
    result = engine.transcribe(load_audio(examples_dir / "long.mp3")[: 30 * 16000])
    assert_timed_past_the_window(result, result.duration)


def test_the_ctranslate2_export_of_a_10_second_checkpoint_transcribes_past_its_window(
        model_10s, long_clip, tmp_path):
    from whisper_gl.export import export_model

    export = export_model(str(model_10s), str(tmp_path / "ct2"))
    for timestamps in ("auto", "model"):
        engine = Transcriber(export, backend="ctranslate2", timestamps=timestamps, **GREEDY)
        assert engine.window.seconds == 10
        result = engine.transcribe(long_clip)
        assert_timed_past_the_window(result, result.duration)


def test_only_timestamps_past_a_short_window_are_suppressed():
    begin = 50365  # <|0.00|> in Whisper's multilingual vocabulary
    assert Window.of_seconds(30).timestamps_past_end(begin) == []
    past = Window.of_seconds(10).timestamps_past_end(begin)
    assert past[0] == begin + 501 and past[-1] == begin + 1500  # <|10.02|> .. <|30.00|>


def test_window_geometry_of_a_model_config():
    from transformers import WhisperConfig

    pretrained = Window.of(WhisperConfig())  # max_source_positions 1500
    assert (pretrained.frames, pretrained.seconds, pretrained.samples, pretrained.positions) == (3000, 30, 480_000, 1500)
    assert pretrained == PRETRAINED_WINDOW and pretrained.is_pretrained
    short = Window.of(WhisperConfig(max_source_positions=500))
    assert (short.frames, short.seconds, short.is_pretrained) == (1000, 10, False)
    assert short.timestamp_index(4.013) == 201 and short.timestamp_index(25) == 500  # capped at the window
    assert TIME_PRECISION == 0.02


def cli_error(*argv: str) -> str:
    """train.py's one-line refusal (exit 2, nothing else on stderr)."""
    run = subprocess.run([sys.executable, "train.py", *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-2000:]
    return lines[0]


def test_30_second_features_are_refused_for_a_10_second_model(features_30s, model_10s, tmp_path):
    output = tmp_path / "out"
    error = cli_error("--preset", "smoke", "--features", str(features_30s), "--model", str(model_10s),
                      "--output-dir", str(output), "--max-steps", "1")
    assert error == (f"error: the features were made for 30 s windows, but {model_10s} takes 10 s windows and "
                     f"cannot be grown back to 30 s: run `whisper-gl features` again with --max-audio-seconds 10, "
                     f"or train a 30 s model (e.g. the pretrained one)")
    assert not output.exists() and not Path(f"{output}.work").exists()  # refused before any training


def test_10_second_features_are_refused_when_evaluating_a_30_second_model(features_10s, base_model_dir):
    error = cli_error("--evaluate-only", "--preset", "smoke", "--features", str(features_10s),
                      "--model", str(base_model_dir))
    assert error == (f"error: the features were made for 10 s windows, but {base_model_dir} takes 30 s windows: "
                     f"evaluate it on features made with --max-audio-seconds 30 (only training turns a model "
                     f"into a 10 s one)")
