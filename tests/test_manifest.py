"""features_config.json as one typed record: written by the feature stage, read by the others."""

import json

import pytest

from whisper_gl import WhisperGLError
from whisper_gl.manifest import FeaturesManifest
from whisper_gl.window import Window


def test_round_trip_and_the_window(tmp_path):
    manifest = FeaturesManifest(model="artifacts/whisper-base", language="gl", task="transcribe", n_mels=80,
                                window_frames=1000, dataset="Resources/cv-corpus-sample/gl")
    path = manifest.save(tmp_path)
    assert FeaturesManifest.load(tmp_path) == manifest
    assert manifest.window == Window.of_seconds(10) and manifest.chunk_length == 10
    written = json.loads(path.read_text())
    assert written["chunk_length"] == 10 and written["sampling_rate"] == 16000 and written["hop_length"] == 160


def test_missing_keys_are_named_and_new_keys_ignored(tmp_path):
    (tmp_path / "features_config.json").write_text(json.dumps({"model": "m", "language": "gl", "task": "transcribe"}))
    with pytest.raises(WhisperGLError, match="lacks 'n_mels', 'window_frames'"):
        FeaturesManifest.load(tmp_path)
    (tmp_path / "features_config.json").write_text(json.dumps(
        {"model": "m", "language": "gl", "task": "transcribe", "n_mels": 128, "window_frames": 3000, "new": 1}))
    assert FeaturesManifest.load(tmp_path).n_mels == 128


def test_no_or_broken_manifest_is_one_clear_error(tmp_path):
    with pytest.raises(WhisperGLError, match="holds no features"):
        FeaturesManifest.load(tmp_path)
    (tmp_path / "features_config.json").write_text("{not json")
    with pytest.raises(WhisperGLError, match="not a readable features manifest"):
        FeaturesManifest.load(tmp_path)
