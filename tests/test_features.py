"""whisper_gl.features and feature_extraction.py: exact compact features, rejects, atomic output."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from whisper_gl import WhisperGLError
from whisper_gl.audio import load_audio
from whisper_gl.config import FeatureConfig
from whisper_gl.features import (compact_log_mel, extract_features, frames_to_keep, load_features,
                                 load_processor, pad_features)

REPO_ROOT = Path(__file__).resolve().parents[1]
LONG_SENTENCE = "Bos días a todos os veciños da aldea. " * 80  # far over 448 tokens


def _extractor(model_dir, seconds):
    return load_processor(str(model_dir), language="gl", task="transcribe", window_seconds=seconds).extractor


def _reference(extractor, waveform):
    """What the seed computed: the clip zero-padded to the window, the stock extractor."""
    return extractor(waveform, sampling_rate=16000, return_tensors="np")["input_features"][0]


def test_frames_to_keep():
    assert frames_to_keep(0) == 3  # frames 0 and 1 see the (empty) start, + margin
    assert frames_to_keep(160) == 4
    assert frames_to_keep(16000) == 103  # 1 s: 100 frames + the centred window's overhang + margin
    assert frames_to_keep(480000) == 3000  # capped at the window
    assert frames_to_keep(159_000, window_frames=1000) == 996
    assert frames_to_keep(159_900, window_frames=1000) == 1000


@pytest.mark.parametrize("seconds", [30, 10])
def test_padded_features_equal_the_reference(base_model_dir, sample_corpus_dir, seconds):
    extractor = _extractor(base_model_dir, seconds)
    window = seconds * 16000
    rng = np.random.default_rng(0)
    clips = [
        load_audio(sample_corpus_dir / "clips" / "common_voice_gl_1.mp3"),
        load_audio(sample_corpus_dir / "clips" / "common_voice_gl_2.mp3"),
        (1e-4 * rng.standard_normal(16000)).astype(np.float32),  # near-silent
        np.zeros(8000, dtype=np.float32),  # digital silence
        rng.standard_normal(90).astype(np.float32),  # shorter than one FFT
        (0.1 * rng.standard_normal(window - 10)).astype(np.float32),  # fills the window
        (0.1 * rng.standard_normal(window - 1000)).astype(np.float32),  # sees the window's reflect padding
    ]
    stored = compact_log_mel(clips, extractor)  # one batch, as the pipeline does
    for waveform, features in zip(clips, stored):
        assert features.dtype == np.float16
        assert features.shape == (80, frames_to_keep(len(waveform), window_frames=extractor.nb_max_frames))
        restored = pad_features(features, extractor.nb_max_frames)
        assert restored.dtype == np.float32 and restored.shape == (80, seconds * 100)
        np.testing.assert_allclose(restored, _reference(extractor, waveform), atol=1e-3, rtol=0)
    # A batch gives each clip what it would get alone.
    np.testing.assert_array_equal(compact_log_mel(clips[2:3], extractor)[0], stored[2])


def test_pad_features_keeps_a_full_window():
    full = np.random.default_rng(1).standard_normal((80, 3000)).astype(np.float16)
    np.testing.assert_array_equal(pad_features(full, 3000), full.astype(np.float32))
    padded = pad_features(np.full((80, 5), 0.5, dtype=np.float16), 10)
    assert (padded[:, 5:] == -1.5).all()  # max(0.5 - 2, -1.5)


# --- the stage --------------------------------------------------------------------------------

@pytest.fixture
def messy_corpus(tmp_path, sample_corpus_dir, write_common_voice):
    """A Common Voice folder with good clips and one of each kind of bad clip."""
    clips = sample_corpus_dir / "clips"
    too_long = tmp_path / "long.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=300:duration=12",
                    "-ar", "48000", str(too_long)], check=True)
    audio = {f"good{i}.mp3": clips / f"common_voice_gl_{i}.mp3" for i in range(1, 5)}
    audio.update({"long.mp3": too_long, "corrupt.mp3": np.random.default_rng(0).bytes(4000),
                  "empty_text.mp3": clips / "common_voice_gl_5.mp3", "wordy.mp3": clips / "common_voice_gl_6.mp3"})
    return write_common_voice(tmp_path / "gl", {
        "train": [("good1.mp3", "Hoxe fai frío."), ("good2.mp3", "Mañá chove."), ("corrupt.mp3", "Non se oe."),
                  ("long.mp3", "Un pitido longo."), ("missing.mp3", "Non está.")],
        "dev": [("good3.mp3", "Boas tardes."), ("empty_text.mp3", "  ")],
        "test": [("good4.mp3", "Ata logo."), ("wordy.mp3", LONG_SENTENCE)],
    }, audio)


def _config(dataset, output_dir, model_dir, **overrides):
    return FeatureConfig(dataset=str(dataset), model=str(model_dir), output_dir=str(output_dir), **overrides)


def test_rejects_and_output(messy_corpus, tmp_path, base_model_dir, capsys):
    output = tmp_path / "features"
    summary = extract_features(_config(messy_corpus, output, base_model_dir, max_audio_seconds=10, batch_size=4))

    with open(output / "rejected.csv", newline="") as handle:
        rejected = {(row["split"], Path(row["path"]).name, row["reason"]) for row in csv.DictReader(handle)}
    assert rejected == {
        ("train", "corrupt.mp3", "not an audio file / could not decode"),
        ("train", "long.mp3", "too long"),
        ("train", "missing.mp3", "missing file"),
        ("validation", "empty_text.mp3", "empty sentence"),
        ("test", "wordy.mp3", "label too long"),
    }
    assert summary.kept == {"train": 2, "validation": 1, "test": 1}
    assert summary.rejected == {"train": 3, "validation": 1, "test": 1}
    printed = capsys.readouterr().out
    assert "too long: 1" in printed and "missing file: 1" in printed and "clips/s" in printed

    features, config = load_features(output)
    assert (config.model, config.language, config.task, config.sampling_rate, config.n_mels, config.chunk_length,
            config.window_frames) == (str(base_model_dir), "gl", "transcribe", 16000, 80, 10, 1000)
    assert json.loads((output / "features_config.json").read_text())["chunk_length"] == 10  # for people too
    assert set(features) == {"train", "validation", "test"}
    assert config.splits == {"train": "train", "validation": "validation", "test": "test"}
    assert features["train"].column_names == ["input_features", "labels", "duration", "sentence"]
    assert features["train"].features["input_features"].feature.feature.dtype == "float16"
    assert features["train"]["sentence"] == ["Hoxe fai frío.", "Mañá chove."]
    assert features["validation"]["sentence"] == ["Boas tardes."]

    tokenizer = load_processor(str(base_model_dir), language="gl", task="transcribe", window_seconds=10).tokenizer
    extractor = _extractor(base_model_dir, 10)
    prefix = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|gl|>", "<|transcribe|>", "<|notimestamps|>"])
    for row, clip in zip([*features["train"], *features["validation"]], ["good1.mp3", "good2.mp3", "good3.mp3"]):
        assert row["labels"][:4] == prefix and row["labels"][-1] == tokenizer.eos_token_id
        assert tokenizer.decode(row["labels"], skip_special_tokens=True) == row["sentence"]
        waveform = load_audio(messy_corpus / "clips" / clip)
        assert row["duration"] == pytest.approx(len(waveform) / 16000, abs=1e-3)
        stored = np.asarray(row["input_features"], dtype=np.float32)
        assert stored.shape == (80, frames_to_keep(len(waveform), window_frames=1000))
        np.testing.assert_allclose(pad_features(stored, 1000), _reference(extractor, waveform), atol=1e-3, rtol=0)

    lengths = json.loads((output / "audio_lengths.json").read_text())
    assert lengths["window_seconds"] == 10
    assert lengths["all"]["count"] == 6  # decodable clips: 4 good, the long one, the wordy one
    assert lengths["all"]["max"] == pytest.approx(12.0, abs=0.1)
    assert (output / "audio_lengths.png").stat().st_size > 5000


def test_max_samples(sample_corpus_dir, tmp_path, base_model_dir):
    summary = extract_features(_config(sample_corpus_dir, tmp_path / "f", base_model_dir, max_samples=3))
    assert summary.kept == {"train": 3, "validation": 3, "test": 3}


def _crash_after_writing(monkeypatch):
    original = datasets.DatasetDict.save_to_disk

    def save_then_crash(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)  # the data is fully written...
        raise OSError("disk full")  # ...and the run dies before finishing

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", save_then_crash)


def test_a_crash_leaves_no_output(sample_corpus_dir, tmp_path, base_model_dir, monkeypatch):
    _crash_after_writing(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        extract_features(_config(sample_corpus_dir, tmp_path / "features", base_model_dir, max_samples=2))
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary folder


def test_a_crash_keeps_the_previous_output(sample_corpus_dir, tmp_path, base_model_dir, monkeypatch):
    output = tmp_path / "features"
    extract_features(_config(sample_corpus_dir, output, base_model_dir, max_samples=2))
    _crash_after_writing(monkeypatch)
    with pytest.raises(OSError):
        extract_features(_config(sample_corpus_dir, output, base_model_dir, max_samples=4))
    features, _ = load_features(output)
    assert len(features["train"]) == 2 and len(features["test"]) == 2


def test_a_killed_run_leaves_nothing_that_loads(sample_corpus_dir, tmp_path, base_model_dir):
    """SIGKILL in the middle of writing: the target folder never appears; the next run cleans up."""
    output = tmp_path / "features"
    script = f"""
import os, signal, datasets
from whisper_gl.config import FeatureConfig
from whisper_gl.features import extract_features
original = datasets.DatasetDict.save_to_disk
def save_then_die(self, path, *args, **kwargs):
    original(self, path, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
datasets.DatasetDict.save_to_disk = save_then_die
extract_features(FeatureConfig(dataset={str(sample_corpus_dir)!r}, model={str(base_model_dir)!r},
                               output_dir={str(output)!r}, max_samples=2))
"""
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True)
    assert killed.returncode == -9
    assert not output.exists()
    leftovers = [path.name for path in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".features.tmp-")  # hidden, not the output
    with pytest.raises(WhisperGLError):
        load_features(output)
    extract_features(_config(sample_corpus_dir, output, base_model_dir, max_samples=2))
    assert [path.name for path in tmp_path.iterdir()] == ["features"]


def test_push_to_hub_checks_the_token_before_any_work(tmp_path, monkeypatch):
    import whisper_gl.features as features

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(features, "load_source", lambda *a, **k: pytest.fail("work started without a token"))
    with pytest.raises(WhisperGLError, match="token"):
        extract_features(FeatureConfig(push_to_hub="someone/features", output_dir=str(tmp_path / "f")))


def test_push_to_hub_sends_the_same_dataset_and_its_config(sample_corpus_dir, tmp_path, base_model_dir, monkeypatch):
    """The Hub is unreachable here: record what would be sent."""
    from huggingface_hub import HfApi

    pushed, uploaded = [], []
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub",
                        lambda self, repo_id, token=None, **kw: pushed.append((repo_id, token, dict(self.num_rows))))
    monkeypatch.setattr(HfApi, "upload_file", lambda self, **kw: uploaded.append((kw["path_in_repo"], kw["repo_id"])))
    extract_features(_config(sample_corpus_dir, tmp_path / "f", base_model_dir, max_samples=2,
                             push_to_hub="someone/gl-features"))
    assert pushed == [("someone/gl-features", "hf_test_token", {"train": 2, "validation": 2, "test": 2})]
    assert ("features_config.json", "someone/gl-features") in uploaded


def test_load_features_errors(tmp_path):
    with pytest.raises(WhisperGLError, match="no features_config.json"):
        load_features(tmp_path)
    with pytest.raises(WhisperGLError, match="not found"):
        load_features(tmp_path / "nothing" / "here")
    with pytest.raises(WhisperGLError, match="reaching the Hugging Face Hub dataset failed|loading .* failed"):
        load_features("nobody-here/no-such-features")


# --- the command line -------------------------------------------------------------------------

def _cli(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, str(REPO_ROOT / "feature_extraction.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def _bad_tsv(tmp_path, write_common_voice):
    folder = write_common_voice(tmp_path / "gl", {"train": [("a.mp3", "Ola.")], "test": [("b.mp3", "Ola.")]})
    (folder / "test.tsv").write_text("client_id\tpath\n1\tb.mp3\n")
    return folder


@pytest.mark.parametrize("dataset, expected", [
    (lambda tmp, _: tmp, "is not a dataset folder I know: expected a Common Voice release folder"),
    (_bad_tsv, r"lacks the column\(s\) sentence"),
    (lambda tmp, _: "nobody-here/no-such-dataset", "reaching the Hugging Face Hub dataset failed"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, write_common_voice, dataset, expected, base_model_dir):
    result = _cli("--dataset", str(dataset(tmp_path, write_common_voice)), "--model", str(base_model_dir),
                  "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert __import__("re").search(expected, lines[0])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_on_the_sample_corpus(sample_corpus_dir, base_model_dir, tmp_path):
    """The main job's command, on the bundled corpus with the real offline base."""
    output = tmp_path / "features"
    result = _cli("--dataset", str(sample_corpus_dir), "--model", str(base_model_dir), "--output-dir", str(output))
    assert result.returncode == 0, result.stderr[-2000:]
    with open(sample_corpus_dir / "test.tsv", encoding="utf-8") as handle:
        test_rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    features, config = load_features(output)
    assert len(features["test"]) == len(test_rows) and len(features["train"]) > len(test_rows)
    assert features["test"]["sentence"] == [row["sentence"] for row in test_rows]
    assert config.window_frames == 3000
    assert "audio lengths in seconds" in result.stdout and "clips/s" in result.stdout
    sizes = [np.asarray(f).shape[1] for f in features["train"][:10]["input_features"]]
    assert max(sizes) < 1000  # seconds-long clips stored at their length, not 3000 frames
    assert sorted(p.name for p in output.iterdir()) == ["audio_lengths.json", "audio_lengths.png", "dataset_dict.json",
                                                        "features_config.json", "rejected.csv", "test", "train", "validation"]


def test_a_source_without_validation_gets_a_seeded_slice_of_train_said_aloud(tmp_path, sample_corpus_dir,
                                                                             write_common_voice, base_model_dir,
                                                                             capsys):
    clips = sample_corpus_dir / "clips"
    rows = [(f"c{i}.mp3", f"Frase número {i}.") for i in range(1, 11)]
    corpus = write_common_voice(tmp_path / "gl", {"train": rows[:8], "test": rows[8:]},
                                {name: clips / f"common_voice_gl_{i}.mp3" for i, (name, _) in enumerate(rows, 1)})
    runs = [extract_features(_config(corpus, tmp_path / f"f{n}", base_model_dir, validation_share=0.25))
            for n in (1, 2)]
    assert runs[0].kept == {"train": 6, "validation": 2, "test": 2}
    assert "validation is 25% of train (seed 42) (2 clips)" in capsys.readouterr().out
    first, second = (load_features(tmp_path / f"f{n}") for n in (1, 2))
    assert first[1].splits["validation"] == "25% of train (seed 42)"
    assert first[0]["validation"]["sentence"] == second[0]["validation"]["sentence"]  # the seed fixes it
    assert not set(first[0]["validation"]["sentence"]) & set(first[0]["train"]["sentence"])

    seed_recipe = extract_features(_config(corpus, tmp_path / "seed", base_model_dir, validation_split="none"))
    assert seed_recipe.kept == {"train": 8, "test": 2}
