"""train.py / whisper_gl.training: presets, input checks, batches, and real (tiny) training runs.

Most runs use a tiny random Whisper (tests/conftest.py: tiny_whisper_dir) on synthetic
features in the agreed format, so they take seconds; one slow test fine-tunes the real
offline base for two steps to show the checkpoint still predicts timestamps.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import kill_once_exists
from whisper_gl import WhisperGLError, training
from whisper_gl.cli import door, parse_config
from whisper_gl.config import TrainConfig
from whisper_gl.features import pad_features
from whisper_gl.manifest import FeaturesManifest
from whisper_gl.training import WhisperCollator, resolve_config, timestamp_flags

REPO = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "hf_FakeTokenForTests0123456789abcdef"


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    from transformers import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(base_model_dir)
    tokenizer.set_prefix_tokens(language="gl", task="transcribe")
    return tokenizer


def write_features(folder: Path, tokenizer, *, n_train=12, n_test=4, n_validation=4, n_mels=80,
                   window_frames=3000, stored_mels=None, splits=("train", "validation", "test"), seed=0) -> Path:
    """Synthetic features in the agreed format (features_config.json + DatasetDict on disk)."""
    from datasets import Dataset, DatasetDict

    rng = np.random.default_rng(seed)
    sentences = [line.split("\t", 1)[1] for line in (REPO / "Resources/sentences.tsv").read_text().splitlines()[1:]]

    def split(count, offset):
        rows = {"input_features": [], "labels": [], "duration": [], "sentence": []}
        for sentence in sentences[offset: offset + count]:
            duration = float(rng.uniform(1.0, 4.0))
            frames = min(window_frames, int(duration * 100) + 2)
            rows["input_features"].append(rng.uniform(-1, 1, (stored_mels or n_mels, frames)).astype(np.float16))
            rows["labels"].append(tokenizer(sentence).input_ids)
            rows["duration"].append(duration)
            rows["sentence"].append(sentence)
        return Dataset.from_dict(rows)

    sizes = {"train": (n_train, 0), "test": (n_test, n_train), "validation": (n_validation, n_train + n_test)}
    DatasetDict({name: split(*sizes[name]) for name in splits}).save_to_disk(str(folder))
    FeaturesManifest(model="tiny", language="gl", task="transcribe", n_mels=n_mels,
                     window_frames=window_frames).save(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory, tokenizer) -> Path:
    return write_features(tmp_path_factory.mktemp("features"), tokenizer)


def tiny_config(features, model, output, **overrides) -> TrainConfig:
    settings = dict(features=str(features), preset="smoke", model=str(model), output_dir=str(output),
                    max_steps=4, eval_steps=2, batch_size=4, eval_batch_size=4, generation_max_length=8,
                    learning_rate=1e-3, warmup_steps=0)
    return TrainConfig(**{**settings, **overrides})


def tiny_flags(features, model, output, *extra) -> list[str]:
    return ["--preset", "smoke", "--features", str(features), "--model", str(model), "--output-dir", str(output),
            "--batch-size", "2", "--eval-batch-size", "4", "--generation-max-length", "8",
            "--learning-rate", "1e-3", "--warmup-steps", "0", *extra]


# --- presets and flags ----------------------------------------------------------------

def test_presets_reproduce_the_seed():
    model1 = resolve_config(TrainConfig(preset="model1"))
    assert (model1.model, model1.max_steps, model1.eval_steps, model1.save_steps, model1.learning_rate,
            model1.batch_size, model1.warmup_steps, model1.lr_scheduler) == \
        ("openai/whisper-small", 1000, 250, 250, 1e-5, 16, 500, "linear")
    model2 = resolve_config(TrainConfig(preset="model2"))
    assert (model2.model, model2.max_steps, model2.eval_steps, model2.save_steps, model2.learning_rate,
            model2.lr_scheduler, model2.weight_decay, model2.warmup_steps) == \
        ("openai/whisper-medium", 500, 250, 250, 1e-5, "cosine", 0.001, 125)
    assert model1.gradient_checkpointing and model2.gradient_checkpointing
    assert model1.precision == "auto"  # the hardware decides when training starts, not the config


def test_flags_override_only_the_fields_they_set():
    argv = ["--preset", "model2", "--learning-rate", "3e-5", "--max-steps", "20", "--output-dir", "out/m",
            "--no-gradient-checkpointing"]
    config = resolve_config(parse_config(TrainConfig, "train", argv))
    assert (config.learning_rate, config.max_steps, config.gradient_checkpointing) == (3e-5, 20, False)
    assert (config.lr_scheduler, config.weight_decay, config.warmup_steps, config.model) == \
        ("cosine", 0.001, 125, "openai/whisper-medium")
    assert config.work_dir == str(Path("out/m.work"))


def test_smoke_preset_uses_the_offline_base_without_gradient_checkpointing():
    smoke = resolve_config(TrainConfig(preset="smoke"))
    assert smoke.model == "base" and smoke.gradient_checkpointing is False  # the built-in name: from any folder


@pytest.mark.parametrize("overrides, message", [
    ({"preset": "model3"}, "unknown preset 'model3': choose one of model1, model2, smoke"),
    ({"eval_steps": 3, "save_steps": 4}, "must be a multiple of --eval-steps"),
    ({"timestamp_share": 1.5}, "--timestamp-share must be between 0 and 1"),
    ({"precision": "fp8"}, "unknown --precision 'fp8'"),
    ({"push_to_hub": "not a repo"}, "is not a Hub repo id"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(WhisperGLError, match=message.replace("(", r"\(")):
        resolve_config(TrainConfig(**overrides))


@pytest.mark.parametrize("cuda, bf16, expected", [(False, False, "fp32"), (True, True, "bf16"), (True, False, "fp16")])
def test_auto_precision_follows_the_hardware_when_training_starts(monkeypatch, cuda, bf16, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert resolve_config(TrainConfig(preset="smoke")).precision == "auto"  # the same config on any machine
    assert training.hardware_precision("auto") == expected
    assert training.hardware_precision("fp32") == "fp32"  # a choice the hardware has is kept
    assert training.hardware_precision(expected) == expected


@pytest.mark.parametrize("cuda, bf16, precision, message", [
    (False, False, "fp16", "--precision fp16 needs CUDA GPUs, and this process runs on the CPU"),
    (True, False, "bf16", "--precision bf16 needs a GPU that supports it"),
])
def test_a_precision_the_hardware_lacks_is_refused(monkeypatch, cuda, bf16, precision, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    with pytest.raises(WhisperGLError, match=message):
        training.hardware_precision(precision)


def test_push_without_token_fails_before_loading_anything(tmp_path):
    """HF_TOKEN unset and an empty HF_HOME: one line, exit 2, before features or model are read."""
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env["HF_HOME"] = str(tmp_path / "hf-home")
    result = subprocess.run(
        [sys.executable, "train.py", "--preset", "smoke", "--features", str(tmp_path / "nowhere"),
         "--model", str(tmp_path / "no-model"), "--push-to-hub", "someone/whisper-gl"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN"]


# --- features checks (all before the model is loaded) -----------------------------------

@pytest.fixture
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(training, "load_model", refuse)


def test_unknown_preset_on_the_command_line_is_one_line(tiny_features, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "--preset", "large", "--features", str(tiny_features)])
    with pytest.raises(SystemExit) as exit_info:
        door("train")
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: argument --preset: invalid choice: 'large'") and "smoke" in line


def test_missing_features_folder(tmp_path, tiny_whisper_dir, no_model_loading):
    with pytest.raises(WhisperGLError, match="not found"):
        training.train(tiny_config(tmp_path / "missing", tiny_whisper_dir, tmp_path / "out"))


@pytest.mark.parametrize("kind, message", [
    ("no test split", "test"),
    ("wrong mel count", r"input_features of shape \[64, \d+\], expected \[80, <=3000\]"),
    ("window longer than the model's", "made for 40 s windows, but .* takes 30 s windows and cannot be grown"),
])
def test_features_of_the_wrong_shape(kind, message, tmp_path, tokenizer, tiny_whisper_dir, no_model_loading):
    settings = {"no test split": {"splits": ("train",)},
                "wrong mel count": {"stored_mels": 64},
                "window longer than the model's": {"window_frames": 4000}}[kind]
    features = write_features(tmp_path / "features", tokenizer, n_train=3, n_test=2, **settings)
    with pytest.raises(WhisperGLError, match=message):
        training.train(tiny_config(features, tiny_whisper_dir, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --- batches ------------------------------------------------------------------------------

def test_timestamp_share_is_exact_and_fixed_by_the_seed():
    flags = timestamp_flags(101, 0.5, seed=7)
    assert sum(flags) == 50 and flags == timestamp_flags(101, 0.5, seed=7)
    assert flags != timestamp_flags(101, 0.5, seed=8)
    assert not any(timestamp_flags(10, 0.0, 1)) and all(timestamp_flags(10, 1.0, 1))


def _collator(tokenizer):
    return WhisperCollator(window_frames=3000, decoder_start_token_id=tokenizer.convert_tokens_to_ids(
        "<|startoftranscript|>"), no_timestamps_token_id=tokenizer.convert_tokens_to_ids("<|notimestamps|>"))


def test_collator_pads_features_to_the_window_and_labels_with_minus_100(tokenizer):
    rng = np.random.default_rng(0)
    samples = [{"input_features": rng.uniform(-1, 1, (80, frames)).astype(np.float16),
                "labels": np.array(tokenizer(text).input_ids), "duration": frames / 100}
               for frames, text in ((150, "Bos días."), (420, "Hoxe fai moito frío en Lugo."))]
    batch = _collator(tokenizer)(samples)

    assert batch["input_features"].shape == (2, 80, 3000)
    for row, sample in enumerate(samples):
        np.testing.assert_array_equal(batch["input_features"][row].numpy(), pad_features(sample["input_features"], 3000))
        label = sample["labels"][1:]  # <|startoftranscript|> is added back by the model
        assert batch["labels"][row, : len(label)].tolist() == label.tolist()
        assert (batch["labels"][row, len(label):] == -100).all()
    assert tokenizer.convert_ids_to_tokens(batch["labels"][:, :3][0].tolist()) == \
        ["<|gl|>", "<|transcribe|>", "<|notimestamps|>"]


@pytest.mark.parametrize("duration, end", [(2.345, "<|2.34|>"), (2.35, "<|2.36|>"), (45.0, "<|30.00|>")])
def test_flagged_clips_get_timestamp_labels(tokenizer, duration, end):
    text = tokenizer("Bos días.").input_ids
    labels = _collator(tokenizer).labels({"labels": text, "duration": duration, "with_timestamps": True})
    tokens = tokenizer.convert_ids_to_tokens(labels)
    assert tokens[:4] == ["<|startoftranscript|>", "<|gl|>", "<|transcribe|>", "<|0.00|>"]
    assert tokens[-2:] == [end, "<|endoftext|>"]
    assert tokenizer.decode(labels[3:-1]).strip() == "Bos días."
    unflagged = _collator(tokenizer).labels({"labels": text, "duration": duration, "with_timestamps": False})
    assert unflagged == text


# --- tiny training runs -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_whisper_dir, tiny_features):
    """One tiny training run asked to push with a fake token; the Hub is offline so the push fails."""
    import huggingface_hub.constants

    output = tmp_path_factory.mktemp("run") / "model"
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_TOKEN", FAKE_TOKEN)
    patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    test_evaluations.clear()
    original = training._test_scores

    def spy(trainer, inputs):  # when the test split is scored, and what the selection split is
        test_evaluations.append((trainer.state.global_step, sorted(trainer.eval_dataset["sentence"])))
        return original(trainer, inputs)

    patch.setattr(training, "_test_scores", spy)
    try:
        with pytest.raises(WhisperGLError) as push_error:
            training.train(tiny_config(tiny_features, tiny_whisper_dir, output, push_to_hub="someone/whisper-gl"))
    finally:
        patch.undo()
    return output, push_error.value


test_evaluations: list = []  # (step, selection split's sentences) of each test scoring in tiny_run


@pytest.mark.train
def test_run_writes_a_loadable_checkpoint_with_its_reports(tiny_run):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    output, _ = tiny_run
    for name in ("model.safetensors", "config.json", "generation_config.json", "processor_config.json",
                 "preprocessor_config.json", "tokenizer.json", "results.json", "training_curves.png", "README.md"):
        assert (output / name).is_file(), name
    assert (output / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(output.parent.glob(".model.tmp-*"))

    model = WhisperForConditionalGeneration.from_pretrained(output)
    processor = WhisperProcessor.from_pretrained(output)
    assert model.generation_config.language == "gl" and model.generation_config.task == "transcribe"
    features = processor(np.zeros(16000, dtype=np.float32), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features, language="gl", max_new_tokens=4)
    assert 1 <= ids.shape[-1] and isinstance(processor.batch_decode(ids, skip_special_tokens=True)[0], str)


@pytest.mark.train
def test_the_best_is_chosen_on_validation_and_test_is_scored_once_at_the_end(tiny_run, tiny_features):
    from whisper_gl.features import load_features

    output, _ = tiny_run
    results = json.loads((output / "results.json").read_text())
    rows = results["evaluations"]  # the selection split's curve
    assert [row["step"] for row in rows] == [0, 2, 4] and all(row["clips"] == 4 for row in rows)
    assert rows[0]["train_loss"] is None and all(row["train_loss"] is not None for row in rows[1:])
    trained = rows[1:]  # step 0 has no checkpoint: the best is a trained one
    best = min(trained, key=lambda row: row["wer"])
    assert results["best_step"] == best["step"]
    assert results["selection"] == {"split": "validation", "clips": 4, "from": "validation", "optimistic": False}
    dataset, _ = load_features(tiny_features)
    # Test was scored twice: the untuned model before step 1, the chosen checkpoint after the last step;
    # every selection evaluation ran on validation, whose clips are not test's.
    assert [step for step, _ in test_evaluations] == [0, 4]
    assert all(sentences == sorted(dataset["validation"]["sentence"]) for _, sentences in test_evaluations)
    assert not set(dataset["validation"]["sentence"]) & set(dataset["test"]["sentence"])
    for scores in (results["before"], results["after"]):
        assert scores["clips"] == results["test_clips"] == 4
        assert scores["wer_low"] <= scores["wer"] <= scores["wer_high"]
    assert results["before"] != rows[0]  # test, not validation
    assert results["timing"]["steps"] == 4 and results["timing"]["seconds_per_step"] > 0


@pytest.mark.train
def test_the_seed_recipe_selects_on_test_and_says_it_is_optimistic(tmp_path, tiny_whisper_dir, tokenizer, capsys):
    features = write_features(tmp_path / "features", tokenizer, n_train=4, n_test=2, splits=("train", "test"))
    with pytest.raises(WhisperGLError, match="no validation split .* --select-on test"):
        training.train(tiny_config(features, tiny_whisper_dir, tmp_path / "refused", max_steps=2))
    results = training.train(tiny_config(features, tiny_whisper_dir, tmp_path / "seed", max_steps=2,
                                         select_on="test"))
    assert results["selection"]["optimistic"] and results["selection"]["split"] == "test"
    assert results["before"] == results["evaluations"][0] and results["after"]["wer"] == min(
        row["wer"] for row in results["evaluations"][1:])
    assert "selected and reported on the same split: optimistic" in capsys.readouterr().out
    assert "optimistic" in (tmp_path / "seed" / "README.md").read_text()


@pytest.mark.train
def test_best_checkpoint_scores_what_results_json_says(tiny_run, tiny_features):
    output, _ = tiny_run
    results = json.loads((output / "results.json").read_text())
    scores = training.evaluate_only(TrainConfig(evaluate_only=True, preset="smoke", model=str(output),
                                                features=str(tiny_features), eval_batch_size=4,
                                                generation_max_length=8))
    for name in ("wer", "cer", "wer_ortho", "cer_ortho"):
        assert scores[name] == pytest.approx(results["after"][name]), name


@pytest.mark.train
def test_model_card_has_hub_metadata(tiny_run):
    from huggingface_hub import ModelCard

    output, _ = tiny_run
    card = ModelCard.load(output / "README.md")
    results = json.loads((output / "results.json").read_text())
    assert card.data.language == "gl" and "whisper" in card.data.tags
    wer = card.data.eval_results[0]
    assert wer.metric_type == "wer" and wer.metric_value == round(results["after"]["wer"], 2)
    assert f"step {results['best_step']}" in card.text


@pytest.mark.train
def test_push_failure_is_clear_and_the_token_is_never_written(tiny_run, capfd):
    output, error = tiny_run
    assert str(error).startswith(f"{output} is saved, but pushing it to someone/whisper-gl failed")
    token = FAKE_TOKEN.encode()
    written = [path for folder in (output, Path(f"{output}.work")) for path in folder.rglob("*") if path.is_file()]
    assert any("events.out.tfevents" in path.name for path in written)  # TensorBoard logs are among them
    assert [path for path in written if token in path.read_bytes()] == []
    assert FAKE_TOKEN not in str(error)


@pytest.mark.train
def test_lora_is_merged_into_a_plain_checkpoint(tmp_path, tiny_whisper_dir, tiny_features):
    from safetensors.torch import load_file
    from transformers import WhisperForConditionalGeneration

    output = tmp_path / "lora"
    training.train(tiny_config(tiny_features, tiny_whisper_dir, output, lora=True, lora_r=4, lora_alpha=8,
                               max_steps=2, eval_steps=2, max_eval_samples=2))
    assert not (output / "adapter_config.json").exists()
    assert json.loads((output / "config.json").read_text())["architectures"] == ["WhisperForConditionalGeneration"]
    weights = load_file(output / "model.safetensors")
    assert not [name for name in weights if "lora" in name]
    base = load_file(tiny_whisper_dir / "model.safetensors")
    name = "model.decoder.layers.0.self_attn.q_proj.weight"
    assert not np.allclose(weights[name].numpy(), base[name].numpy())  # the adapters were merged in
    name = "model.decoder.layers.0.fc1.weight"
    assert np.array_equal(weights[name].numpy(), base[name].numpy())  # untouched by LoRA
    assert type(WhisperForConditionalGeneration.from_pretrained(output)) is WhisperForConditionalGeneration


@pytest.mark.train
@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_step(tmp_path, tiny_whisper_dir, tiny_features):
    output = tmp_path / "model"
    flags = tiny_flags(tiny_features, tiny_whisper_dir, output, "--max-steps", "10", "--eval-steps", "2",
                       "--max-eval-samples", "4")
    kill_once_exists([sys.executable, "train.py", *flags], REPO,
                     Path(f"{output}.work") / "checkpoint-2" / "trainer_state.json", timeout=240)
    assert not output.exists()  # a killed run leaves nothing that looks like a finished model

    resumed = subprocess.run([sys.executable, "train.py", *flags, "--resume"], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "starting from step 0" not in resumed.stdout
    results = json.loads((output / "results.json").read_text())
    assert [row["step"] for row in results["evaluations"]] == [0, 2, 4, 6, 8, 10]
    assert results["timing"]["steps"] == 10 and results["timing"]["steps_timed"] < 10  # continued, not redone

    scores = training.evaluate_only(TrainConfig(evaluate_only=True, preset="smoke", model=str(output),
                                                features=str(tiny_features), eval_batch_size=4,
                                                generation_max_length=8, max_eval_samples=4))
    assert scores["wer"] == pytest.approx(results["after"]["wer"])


@pytest.mark.train
@pytest.mark.slow
def test_finetuned_base_still_predicts_timestamps(tmp_path, sample_corpus_dir, base_model_dir):
    """The real base, two steps with timestamp labels: the checkpoint loads with the plain classes,
    transcribes with generate(language="gl") and still emits timestamp tokens."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from whisper_gl.config import FeatureConfig
    from whisper_gl.features import extract_features, load_features

    features = tmp_path / "features"
    extract_features(FeatureConfig(dataset=str(sample_corpus_dir), model=str(base_model_dir),
                                   output_dir=str(features), max_samples=4))
    output = tmp_path / "model"
    training.train(TrainConfig(features=str(features), preset="smoke", model=str(base_model_dir),
                               output_dir=str(output), max_steps=2, eval_steps=2, batch_size=2,
                               eval_batch_size=2, max_eval_samples=2, generation_max_length=40,
                               learning_rate=1e-5, timestamp_share=1.0))

    model = WhisperForConditionalGeneration.from_pretrained(output)
    processor = WhisperProcessor.from_pretrained(output)
    dataset, manifest = load_features(features)
    clip = torch.from_numpy(pad_features(dataset["test"][0]["input_features"], manifest.window_frames))[None]
    with torch.no_grad():
        plain = model.generate(clip, language="gl")
        timed = model.generate(clip, language="gl", return_timestamps=True)
    assert processor.batch_decode(plain, skip_special_tokens=True)[0].strip()
    first_timestamp = model.generation_config.no_timestamps_token_id + 1
    assert (timed[0] >= first_timestamp).sum() >= 2  # a start and an end time
    offsets = processor.tokenizer.decode(timed[0], output_offsets=True)["offsets"]
    assert offsets and offsets[0]["text"].strip() and offsets[0]["timestamp"][1] > offsets[0]["timestamp"][0]


def test_a_fresh_run_clears_only_what_runs_leave_in_a_shared_working_folder(tmp_path):
    shared = tmp_path / "shared"
    (shared / "checkpoint-4").mkdir(parents=True)
    (shared / "runs").mkdir()
    (shared / "test_before.json").write_text("{}")
    (shared / "someone-elses-data").mkdir()
    training.last_checkpoint(shared, resume=False)
    assert [path.name for path in shared.iterdir()] == ["someone-elses-data"]


def test_an_output_folder_that_is_not_ours_is_refused_before_training(tmp_path, tiny_features, tiny_whisper_dir):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("mine")
    with pytest.raises(WhisperGLError, match="--output-dir .* is not an output of whisper-gl"):
        resolve_config(tiny_config(tiny_features, tiny_whisper_dir, notes))
