"""The feature stage: an audio dataset -> Whisper log-mel features + token labels on disk.

Storage. The seed padded every clip to 30 s before the log-mel and stored float32:
80 x 3000 x 4 B = 960 KB per clip, mostly the same number repeated. Whisper's extractor
pads the audio with zeros, takes a centred STFT (frame i covers samples
[160 i - 200, 160 i + 200)), drops the last frame, clamps the log-mel at (max - 8) and
maps x -> (x + 4) / 4. Every frame that sees only padding is therefore one per-clip
constant, max(stored_max - 2, -1.5). We keep only the frames that see audio (+1 margin),
in float16, and `pad_features` rebuilds the full window at batch time, equal to the
reference extractor on the padded clip within 1e-3 (tests/test_features.py proves it).

Rejected clips (too long for the window, labels over the decoder's 448 positions, empty
sentence, missing or undecodable audio) are kept out of the features and listed in
rejected.csv with their reason; one bad clip never stops the run.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np

from . import WhisperGLError, error_line
from .audio import AudioError, load_audio
from .config import FeatureConfig
from .manifest import FeaturesManifest
from .sources import NO_SPLIT, as_dataset_dict, check_hub_dataset, load_source
from .stats import format_length_table, write_length_report
from .models import resolve_model
from .store import HUB_ID, atomic_dir, check_replaceable, hub_call, hub_token
from .window import HOP_LENGTH, MAX_WINDOW_SECONDS, N_FFT, PRETRAINED_WINDOW, SAMPLING_RATE

if TYPE_CHECKING:
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

REJECTED_FILE = "rejected.csv"

EMPTY_SENTENCE = "empty sentence"
TOO_LONG = "too long"
LABEL_TOO_LONG = "label too long"

_PROCESSED = datasets.Features({
    "input_features": datasets.List(datasets.List(datasets.Value("float16"))),
    "labels": datasets.List(datasets.Value("int32")),
    "duration": datasets.Value("float32"),
    "sentence": datasets.Value("string"),
    "path": datasets.Value("string"),
    "reject": datasets.Value("string"),
    "detail": datasets.Value("string"),
})
_BOOKKEEPING = ["path", "reject", "detail"]


# --- the log-mel, compact and padded ----------------------------------------------------------

def frames_to_keep(n_samples: int, hop_length: int = HOP_LENGTH, n_fft: int = N_FFT,
                   window_frames: int = PRETRAINED_WINDOW.frames) -> int:
    """Frames that see any of the clip's samples, plus one margin frame, capped at the window."""
    return min(window_frames, math.ceil((n_samples + n_fft // 2) / hop_length) + 1)


def compact_log_mel(waveforms: list[np.ndarray], extractor) -> list[np.ndarray]:
    """Whisper log-mel of each 16 kHz waveform, cut to its real length, as float16 [n_mels, frames].

    One batched call of the extractor on the clips zero-padded to the longest kept length
    plus half an FFT: no kept frame reaches the reflect-padding at the end, so each kept
    frame equals the one of the 30 s-padded reference (a clip that nearly fills the
    window is computed on the full window, exactly like the reference).
    """
    if not waveforms:
        return []
    hop, half = extractor.hop_length, extractor.n_fft // 2
    keep = [frames_to_keep(len(w), hop, extractor.n_fft, extractor.nb_max_frames) for w in waveforms]
    length = min(extractor.n_samples, hop * max(keep) + half)
    features = extractor(waveforms, sampling_rate=extractor.sampling_rate, padding="max_length",
                         max_length=length, truncation=True, return_tensors="np")["input_features"]
    return [f[:, :k].astype(np.float16) for f, k in zip(features, keep)]


def pad_features(features, window_frames: int = PRETRAINED_WINDOW.frames) -> np.ndarray:
    """Restore a stored clip to the full window: float32 [n_mels, window_frames].

    The frames past the clip are the extractor's clamp floor for pure padding,
    (max(-10, max_log - 8) + 4) / 4 = max(stored.max() - 2, -1.5).
    """
    stored = np.asarray(features, dtype=np.float32)
    n_mels, n_frames = stored.shape
    if n_frames >= window_frames:
        return stored[:, :window_frames]
    fill = max(float(stored.max()) - 2.0, -1.5) if n_frames else -1.5
    padded = np.full((n_mels, window_frames), fill, dtype=np.float32)
    padded[:, :n_frames] = stored
    return padded


# --- processor ---------------------------------------------------------------------------------

@dataclass
class Processor:
    """What turns one clip into features and labels: the model's extractor and tokenizer."""

    extractor: WhisperFeatureExtractor
    tokenizer: WhisperTokenizer  # prefix tokens (language, task, no timestamps) set
    max_label_tokens: int  # the decoder's positions (448)


def load_processor(model: str, *, language: str, task: str, window_seconds: int) -> Processor:
    """The feature extractor (window = `window_seconds`) and prefixed tokenizer of `model`."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperTokenizer

    folder = resolve_model(model)
    try:
        extractor = WhisperFeatureExtractor.from_pretrained(folder, chunk_length=window_seconds)
        tokenizer = WhisperTokenizer.from_pretrained(folder)
        max_positions = WhisperConfig.from_pretrained(folder).max_target_positions
    except (OSError, ValueError) as error:
        raise WhisperGLError(f"'{model}' has no usable Whisper processor ({error_line(error)})") from None
    try:
        tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    except ValueError as error:  # an unknown language or task
        raise WhisperGLError(f"--language {language} / --task {task}: {error_line(error)}") from None
    return Processor(extractor, tokenizer, max_positions)


# --- per batch ---------------------------------------------------------------------------------

def prepare_batch(batch: dict, processor: Processor, window_seconds: int) -> dict:
    """datasets.map function: decode, check, featurize and tokenize a batch of clips.

    Every clip comes out: kept ones with features, rejected ones with `reject` set.
    """
    n = len(batch["sentence"])
    no_features = np.zeros((0, 0), dtype=np.float16)  # a rejected clip; same type as the kept ones
    out = {"input_features": [no_features] * n, "labels": [[] for _ in range(n)],
           "duration": [math.nan] * n, "sentence": [""] * n, "path": [""] * n,
           "reject": [""] * n, "detail": [""] * n}
    waveforms, kept = [], []
    for i, (audio, sentence) in enumerate(zip(batch["audio"], batch["sentence"])):
        sentence = (sentence or "").strip()
        out["sentence"][i], out["path"][i] = sentence, audio.get("path") or ""
        if not sentence:
            out["reject"][i] = EMPTY_SENTENCE
            continue
        try:
            waveform = load_audio(audio.get("bytes") or audio.get("path") or b"", SAMPLING_RATE)
        except AudioError as error:
            out["reject"][i], out["detail"][i] = error.reason, error.detail
            continue
        out["duration"][i] = duration = len(waveform) / SAMPLING_RATE
        labels = processor.tokenizer(sentence).input_ids
        if duration > window_seconds:
            out["reject"][i], out["detail"][i] = TOO_LONG, f"{duration:.1f} s > {window_seconds} s window"
        elif len(labels) > processor.max_label_tokens:
            out["reject"][i] = LABEL_TOO_LONG
            out["detail"][i] = f"{len(labels)} tokens > {processor.max_label_tokens}"
        else:
            out["labels"][i] = labels
            waveforms.append(waveform)
            kept.append(i)
    for i, features in zip(kept, compact_log_mel(waveforms, processor.extractor)):
        out["input_features"][i] = features
    return out


# --- the stage ---------------------------------------------------------------------------------

@dataclass
class Summary:
    """What a run did, for the closing table."""

    output_dir: Path
    kept: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    reasons: Counter = field(default_factory=Counter)
    seconds_of_audio: float = 0.0
    disk_bytes: int = 0
    elapsed: float = 0.0
    lengths: dict = field(default_factory=dict)

    @property
    def clips(self) -> int:
        return sum(self.kept.values()) + sum(self.rejected.values())

    def format(self) -> str:
        lines = [format_length_table(self.lengths), "", "split   kept  rejected"]
        lines += [f"{split:<6}{self.kept[split]:>6}{self.rejected[split]:>10}" for split in self.kept]
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.reasons.most_common())
        lines.append(f"rejected: {reasons} (see {REJECTED_FILE})" if reasons else "rejected: none")
        kept = sum(self.kept.values())
        lines += [
            f"audio kept: {self.seconds_of_audio / 3600:.2f} h; features on disk: "
            f"{self.disk_bytes / 1e6:.1f} MB ({self.disk_bytes / max(kept, 1) / 1e3:.1f} KB per clip)",
            f"speed: {self.clips} clips in {self.elapsed:.1f} s = {self.clips / max(self.elapsed, 1e-9):.1f} clips/s "
            "(whole run)",
            f"written: {self.output_dir}",
        ]
        return "\n".join(lines)


def extract_features(config: FeatureConfig) -> Summary:
    """Run the stage described by `config`; print and return its summary."""
    started = time.perf_counter()
    window = config.max_audio_seconds
    if not 1 <= window <= MAX_WINDOW_SECONDS:
        raise WhisperGLError(f"--max-audio-seconds must be between 1 and {MAX_WINDOW_SECONDS} (Whisper's window)")
    if config.num_proc < 1 or config.batch_size < 1:
        raise WhisperGLError("--num-proc and --batch-size must be at least 1")
    check_replaceable(config.output_dir)
    token = hub_token() if config.push_to_hub else None  # fail before hours of work, not after
    source, origins = load_splits(config)
    processor = load_processor(config.model, language=config.language, task=config.task, window_seconds=window)
    if config.max_samples is not None:
        source = datasets.DatasetDict({split: ds.select(range(min(config.max_samples, len(ds))))
                                       for split, ds in source.items()})

    summary = Summary(output_dir=Path(config.output_dir))
    with atomic_dir(config.output_dir) as folder:
        work = folder / "_work"  # map/filter caches; inside the temp folder so a killed run leaves nothing loadable
        processed = datasets.DatasetDict({
            split: dataset.map(
                prepare_batch, batched=True, batch_size=config.batch_size,
                num_proc=config.num_proc if config.num_proc > 1 else None,  # 1 would still start a worker pool
                fn_kwargs={"processor": processor, "window_seconds": window},
                remove_columns=dataset.column_names, features=_PROCESSED,
                cache_file_name=str(work / f"{split}.arrow"), load_from_cache_file=False,
                new_fingerprint=uuid.uuid4().hex, desc=f"features ({split})",
            )
            for split, dataset in source.items()
        })
        summary.lengths = write_length_report({s: d["duration"] for s, d in processed.items()}, window, folder)
        summary.reasons = _write_rejects(processed, folder / REJECTED_FILE)
        features = datasets.DatasetDict({
            split: dataset.filter(lambda rejects: [not r for r in rejects], input_columns="reject",
                                  batched=True, desc=f"keep ({split})").remove_columns(_BOOKKEEPING)
            for split, dataset in processed.items()
        })
        for split in processed:
            summary.kept[split] = len(features[split])
            summary.rejected[split] = len(processed[split]) - len(features[split])
            summary.seconds_of_audio += float(np.sum(features[split]["duration"]))
        features.save_to_disk(str(folder))
        manifest(config, processor, origins).save(folder)
        del features, processed
        shutil.rmtree(work)
    summary.disk_bytes = sum(f.stat().st_size for f in summary.output_dir.rglob("*") if f.is_file())
    summary.elapsed = time.perf_counter() - started

    print(summary.format())
    if config.push_to_hub:
        push_features(summary.output_dir, config.push_to_hub, token)
    return summary


def load_splits(config: FeatureConfig) -> tuple[datasets.DatasetDict, dict[str, str]]:
    """The source's train, validation and test splits, and where each came from.

    A source without the validation split gets a fixed-seed slice of train instead, said
    aloud and recorded in the manifest: training must never pick its checkpoint on test
    without knowing it.
    """
    splits = {"train": config.train_split, "validation": config.validation_split, "test": config.test_split}
    source = as_dataset_dict(load_source(config.dataset, splits, optional=("validation",), config=config.config,
                                         revision=config.revision, audio_column=config.audio_column,
                                         text_column=config.text_column))
    origins = {split: splits[split] for split in source}
    if "validation" not in source and config.validation_split.strip().lower() != NO_SPLIT:
        if not 0 < config.validation_share < 1 or len(source["train"]) < 2:
            raise WhisperGLError(f"'{config.dataset}' has no {config.validation_split} split and its train split "
                                 "cannot spare a validation slice: name one with --validation-split, or "
                                 "--validation-share between 0 and 1")
        held_out = source["train"].train_test_split(test_size=config.validation_share, seed=config.seed)
        source = datasets.DatasetDict({"train": held_out["train"], "validation": held_out["test"],
                                       "test": source["test"]})
        origins["validation"] = f"{config.validation_share:.0%} of {config.train_split} (seed {config.seed})"
        print(f"note: no {config.validation_split} split in '{config.dataset}': validation is "
              f"{origins['validation']} ({len(source['validation'])} clips)")
    return source, origins


def manifest(config: FeatureConfig, processor: Processor, origins: dict[str, str]) -> FeaturesManifest:
    extractor = processor.extractor
    return FeaturesManifest(model=config.model, language=config.language, task=config.task,
                            n_mels=extractor.feature_size, window_frames=extractor.nb_max_frames,
                            dataset=config.dataset, splits=origins, sampling_rate=extractor.sampling_rate,
                            hop_length=extractor.hop_length)


def _write_rejects(processed: datasets.DatasetDict, path: Path) -> Counter:
    """rejected.csv (split, path, sentence, reason, detail); returns the count per reason."""
    import pandas as pd

    frames = []
    for split, dataset in processed.items():
        rejected = dataset.select_columns(["path", "sentence", "reject", "detail"]).filter(
            lambda rejects: [bool(r) for r in rejects], input_columns="reject", batched=True,
            desc=f"rejects ({split})")
        frame = rejected.to_pandas().rename(columns={"reject": "reason"})
        frame.insert(0, "split", split)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table.to_csv(path, index=False)
    return Counter(table["reason"])


# --- reading and sharing -----------------------------------------------------------------------

def push_features(folder: str | Path, repo_id: str, token: str | None = None) -> None:
    """Push the features DatasetDict (parquet) and its reports to a Hub dataset repo."""
    from huggingface_hub import HfApi

    if not HUB_ID.match(repo_id):
        raise WhisperGLError(f"--push-to-hub '{repo_id}' is not a Hub repo id NAMESPACE/NAME")
    token = token or hub_token()
    with hub_call(f"the features are saved in {folder} but pushing them to {repo_id}"):
        datasets.load_from_disk(str(folder)).push_to_hub(repo_id, token=token)
        api = HfApi(token=token)
        for name in (FeaturesManifest.FILE, "audio_lengths.json", "audio_lengths.png", REJECTED_FILE):
            api.upload_file(path_or_fileobj=str(Path(folder) / name), path_in_repo=name,
                            repo_id=repo_id, repo_type="dataset")
    print(f"pushed: https://huggingface.co/datasets/{repo_id}")


def load_features(location: str | Path) -> tuple[datasets.DatasetDict, FeaturesManifest]:
    """The features DatasetDict (train, validation when made, test) and its manifest, from a folder or Hub id."""
    path = Path(location).expanduser()
    if path.is_dir():
        manifest = FeaturesManifest.load(path)
        dataset = datasets.load_from_disk(str(path))
    elif HUB_ID.match(str(location)):
        from huggingface_hub import hf_hub_download

        check_hub_dataset(str(location))
        with hub_call(f"loading the features '{location}' from the Hub"):
            dataset = datasets.load_dataset(str(location))
            manifest = FeaturesManifest.read(hf_hub_download(str(location), FeaturesManifest.FILE,
                                                             repo_type="dataset"))
    else:
        raise WhisperGLError(f"features '{location}' not found ({Path(location).absolute()}): expected a folder "
                             "written by `whisper-gl features` or a Hub dataset id")
    if not isinstance(dataset, datasets.DatasetDict) or not {"train", "test"} <= set(dataset):
        raise WhisperGLError(f"'{location}' is not a features DatasetDict with train and test splits")
    return dataset, manifest
