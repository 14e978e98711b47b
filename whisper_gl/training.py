"""Fine-tuning: stored features -> Seq2SeqTrainer -> the best-WER checkpoint.

The Trainer does the work (mixed precision, gradient checkpointing, checkpoints and
resume, TensorBoard, several processes through `torchrun` / `accelerate launch`); this
module only prepares its inputs: the preset, the features (checked before anything heavy
is loaded), the model with Galician set in its generation config, and a collator that pads
our compact features to the model's window. What several processes need beyond the
Trainer (one starting checkpoint, a shared working folder, the global batch) is in
whisper_gl.distributed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from . import WhisperGLError
from .config import PRECISIONS, TrainConfig, check_choice
from .distributed import (agreed_start, batch_layout, check_launcher, check_world_size, describe_layout,
                          end_processes, is_main_process, launcher_precision, say)
from .manifest import FeaturesManifest
from .metrics import METRIC_NAMES, token_metrics
from .models import resolve_model
from .store import HUB_ID, atomic_dir, check_replaceable, hub_token, push_folder
from .window import Window

REQUIRED_COLUMNS = ("input_features", "labels", "duration")
TIMESTAMP_COLUMN = "with_timestamps"
BEFORE_FILE = "test_before.json"  # the untuned model on test, kept in the working folder for --resume


# --- configuration ------------------------------------------------------------------

def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill the fields left unset from the preset, then the defaults; check the values.

    `precision` stays as given ("auto" included): the hardware decides it when training starts
    (`hardware_precision`), so a config means the same on every machine.
    """
    config = config.with_preset()
    check_choice("--precision", config.precision, PRECISIONS)
    if config.evaluate_only:
        return config
    for name in ("max_steps", "eval_steps", "save_steps", "batch_size", "eval_batch_size", "grad_accum",
                 "logging_steps", "generation_max_length"):
        if getattr(config, name) < 1:
            raise WhisperGLError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    if config.save_steps % config.eval_steps:
        raise WhisperGLError(f"--save-steps ({config.save_steps}) must be a multiple of --eval-steps "
                             f"({config.eval_steps}): the best checkpoint is chosen at evaluations")
    if not 0 <= config.timestamp_share <= 1:
        raise WhisperGLError(f"--timestamp-share must be between 0 and 1, got {config.timestamp_share}")
    check_replaceable(config.output_dir)  # before hours of training, not after
    if config.push_to_hub:
        if not HUB_ID.match(config.push_to_hub):
            raise WhisperGLError(f"--push-to-hub '{config.push_to_hub}' is not a Hub repo id (NAMESPACE/NAME)")
        hub_token()  # fails now, with a clear line, rather than after hours of training
    return config


def hardware_precision(choice: str) -> str:
    """`auto` becomes bf16 where the GPU supports it, else fp16 on a GPU, fp32 on CPU (or the
    mixed precision `accelerate launch` was given); a precision the hardware lacks is refused."""
    import torch

    choice = launcher_precision(choice)
    gpu = torch.cuda.is_available()
    if choice == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if gpu else "fp32"
    if choice == "fp16" and not gpu:
        raise WhisperGLError("--precision fp16 needs CUDA GPUs, and this process runs on the CPU: "
                             "use bf16 (autocast on CPUs) or fp32")
    if choice == "bf16" and gpu and not torch.cuda.is_bf16_supported():
        raise WhisperGLError("--precision bf16 needs a GPU that supports it (Ampere or newer), and this one "
                             "does not: use fp16 or fp32")
    return choice


# --- features -------------------------------------------------------------------------

def load_training_features(location: str):
    """The features DatasetDict and its manifest, checked for what training needs."""
    from .features import load_features

    dataset, manifest = load_features(location)
    problem = _features_problem(dataset, manifest)
    if problem:
        raise WhisperGLError(f"'{location}' does not hold training features ({problem}): "
                             "make them with `whisper-gl features`")
    return dataset, manifest


def _features_problem(dataset, manifest: FeaturesManifest) -> str | None:
    for split in ("train", *(["validation"] if "validation" in dataset else []), "test"):
        if split not in dataset:
            return f"no '{split}' split"
        missing = [column for column in REQUIRED_COLUMNS if column not in dataset[split].column_names]
        if missing:
            return f"split '{split}' lacks column(s) {', '.join(missing)}"
        if len(dataset[split]) == 0:
            return f"split '{split}' is empty"
    first = np.asarray(dataset["train"].with_format("numpy")[0]["input_features"])
    n_mels, window = manifest.n_mels, manifest.window_frames
    if first.ndim != 2 or first.shape[0] != n_mels or first.shape[1] > window:
        return f"input_features of shape {list(first.shape)}, expected [{n_mels}, <={window}]"
    return None


def check_window(model_config, manifest: FeaturesManifest, model_name: str, *, training: bool) -> bool:
    """Refuse features the model cannot take; True when training must first cut the model
    down to the features' shorter window (`shorten_window`).

    A model never grows to a longer window (its encoder has no positions past its own), and
    evaluation measures a model as it is: only training shortens one.
    """
    window, features_window = Window.of(model_config), manifest.window
    made, takes = features_window.seconds, window.seconds
    if manifest.n_mels != model_config.num_mel_bins:
        raise WhisperGLError(
            f"the features were made for {made:g} s windows with {manifest.n_mels} mel bins, but "
            f"{model_name} takes {takes:g} s windows with {model_config.num_mel_bins}: run "
            f"`whisper-gl features` again with --model {model_name}"
        )
    if features_window == window:
        return False
    if features_window.frames > window.frames:
        raise WhisperGLError(
            f"the features were made for {made:g} s windows, but {model_name} takes {takes:g} s windows and "
            f"cannot be grown back to {made:g} s: run `whisper-gl features` again with --max-audio-seconds "
            f"{takes:g}, or train a {made:g} s model (e.g. the pretrained one)"
        )
    if not training:
        raise WhisperGLError(
            f"the features were made for {made:g} s windows, but {model_name} takes {takes:g} s windows: "
            f"evaluate it on features made with --max-audio-seconds {takes:g} (only training turns a model "
            f"into a {made:g} s one)"
        )
    return True


def shorten_window(model, processor, window: Window) -> None:
    """Make a Whisper model and its processor take a shorter window, in place.

    The encoder's positional embeddings are fixed sinusoids, one per two mel frames: a short
    window only ever sees the first ones, so the cut keeps them (whisper.cpp's `audio_ctx`
    does the same at inference; here the model is then trained on the short window, which is
    what keeps it from looping). The processor's chunk_length follows, so the saved folder
    states its own window and the engine reads it from there.
    """
    import torch

    extractor = processor.feature_extractor
    encoder = model.get_encoder()
    positions, seconds = window.positions, window.seconds
    if seconds != int(seconds) or not 0 < positions < encoder.embed_positions.num_embeddings:
        raise WhisperGLError(f"cannot cut the model to a window of {window.frames} frames: it must be a whole "
                             f"number of seconds shorter than the model's window")
    seconds = int(seconds)
    kept = encoder.embed_positions.weight.detach()[:positions].clone()
    encoder.embed_positions = torch.nn.Embedding.from_pretrained(kept, freeze=True)
    encoder.max_source_positions = positions
    model.config.max_source_positions = positions  # the encoder checks its input length against it
    # What WhisperFeatureExtractor.__init__ derives from chunk_length.
    extractor.chunk_length = seconds
    extractor.n_samples = seconds * extractor.sampling_rate
    extractor.nb_max_frames = extractor.n_samples // extractor.hop_length


def timestamp_flags(count: int, share: float, seed: int) -> list[bool]:
    """Which training clips get timestamp labels: round(count * share) of them, fixed by the seed."""
    chosen = np.random.default_rng(seed).permutation(count)[: round(count * share)]
    flags = np.zeros(count, dtype=bool)
    flags[chosen] = True
    return flags.tolist()


# --- batches --------------------------------------------------------------------------

@dataclass
class WhisperCollator:
    """Pads compact log-mels to the model's window and labels with -100.

    Clips flagged `with_timestamps` are labelled `<|0.00|> text <|t_end|>` instead of
    `<|notimestamps|> text`, so the model keeps the timestamp skill it needs for long audio.
    """

    window_frames: int
    decoder_start_token_id: int
    no_timestamps_token_id: int

    def __call__(self, samples: list[dict]) -> dict:
        import torch

        from .features import pad_features

        features = np.stack([pad_features(np.asarray(s["input_features"]), self.window_frames) for s in samples])
        labels = [self.labels(s) for s in samples]
        width = max(len(label) for label in labels)
        padded = np.full((len(labels), width), -100, dtype=np.int64)
        for row, label in enumerate(labels):
            padded[row, : len(label)] = label
        # The model prepends the start token itself when it shifts labels into decoder
        # inputs; keep it out of the labels so it is not there twice.
        if (padded[:, 0] == self.decoder_start_token_id).all():
            padded = padded[:, 1:]
        return {"input_features": torch.from_numpy(features), "labels": torch.from_numpy(padded)}

    def labels(self, sample: dict) -> list[int]:
        label = [int(token) for token in sample["labels"]]
        if not sample.get(TIMESTAMP_COLUMN) or self.no_timestamps_token_id not in label:
            return label
        return self.timestamped(label, float(sample["duration"]))

    def timestamped(self, label: list[int], duration: float) -> list[int]:
        """`... <|notimestamps|> text <|endoftext|>` -> `... <|0.00|> text <|t_end|> <|endoftext|>`."""
        first_timestamp = self.no_timestamps_token_id + 1  # <|0.00|>
        end = first_timestamp + Window(self.window_frames).timestamp_index(duration)
        at = label.index(self.no_timestamps_token_id)
        return label[:at] + [first_timestamp] + label[at + 1:-1] + [end, label[-1]]


# --- model ----------------------------------------------------------------------------

def load_model(path: Path, language: str, task: str):
    """Processor and model, with language and task set in the generation config."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(path)
    processor.tokenizer.set_prefix_tokens(language=language, task=task)
    model = WhisperForConditionalGeneration.from_pretrained(path)
    model.generation_config.language = language
    model.generation_config.task = task
    model.generation_config.forced_decoder_ids = None  # the deprecated way; language/task replace it
    # Whisper's forward takes **kwargs but averages its loss over its own tokens. Told otherwise,
    # the Trainer would multiply each process's loss by the process count and skip the division
    # by accumulation steps: gradients (and the logged loss) N times too large.
    model.accepts_loss_kwargs = False
    return processor, model


def add_lora(model, config: TrainConfig):
    """Wrap the model so only LoRA adapters train (peft)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=[name.strip() for name in config.lora_target_modules.split(",") if name.strip()],
                      bias="none")
    model = get_peft_model(model, lora)
    if is_main_process():
        model.print_trainable_parameters()
    return model


def plain_model(model):
    """The model as a plain WhisperForConditionalGeneration (LoRA adapters merged in)."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def training_arguments(config: TrainConfig, output_dir: str, *, report: bool = True, **overrides):
    """The Trainer's arguments (`overrides` replace any of them, for benchmarks). Under torchrun /
    accelerate, reading `.device` or `.world_size` joins the process group (gloo on CPUs, nccl on GPUs)."""
    import torch
    from transformers import Seq2SeqTrainingArguments

    report_to = "tensorboard" if report and importlib.util.find_spec("tensorboard") else "none"
    precision = hardware_precision(config.precision)
    # transformers 5.x renamed gradient checkpointing to activation checkpointing.
    names = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    settings = dict(
        output_dir=output_dir,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler,
        weight_decay=config.weight_decay,
        **{checkpointing: config.gradient_checkpointing,
           f"{checkpointing}_kwargs": {"use_reentrant": False}},
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        # Told it is on the CPU, the Trainer accepts bf16 autocast there (fast where the CPU has
        # AVX512-BF16/AMX), and several CPU processes train together (gloo) instead of each alone.
        use_cpu=not torch.cuda.is_available(),
        # Every trainable weight takes part in every step: DDP need not search for unused ones.
        ddp_find_unused_parameters=False,
        log_on_each_node=False,  # the main process speaks for all; the others only on errors
        log_level_replica="error",
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        eval_on_start=True,  # step 0: the untuned base, the honest "before" (not when resuming)
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        predict_with_generate=True,
        generation_max_length=config.generation_max_length,
        load_best_model_at_end=True,
        metric_for_best_model="wer",
        greater_is_better=False,
        remove_unused_columns=False,  # the collator needs duration and the timestamp flag
        label_names=["labels"],
        report_to=report_to,
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=config.seed,
    )
    return Seq2SeqTrainingArguments(**{**settings, **overrides})


class StepTimer(TrainerCallback):
    """Times the optimizer steps (forward, backward, update); evaluations are not inside."""

    def __init__(self):
        self.seconds: list[float] = []
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._started)


def _whisper_trainer_class():
    from transformers import Seq2SeqTrainer

    class WhisperTrainer(Seq2SeqTrainer):
        """Seq2SeqTrainer whose evaluation on several processes scores every clip exactly once.

        To give each process the same number of batches, the last one is padded with clips from
        the start of the split; `gather_for_metrics` drops them again, but Seq2SeqTrainer swaps
        it for a plain `gather` (for num_return_sequences > 1, transformers #27025), which
        keeps them and counts those clips twice. We generate one sequence per clip.
        """

        def evaluation_loop(self, *args, **kwargs):
            self.gather_function = self.accelerator.gather_for_metrics
            return super().evaluation_loop(*args, **kwargs)

    return WhisperTrainer


def check_selection_split(config: TrainConfig, dataset, location: str) -> None:
    if config.select_on not in dataset:
        raise WhisperGLError(
            f"'{location}' has no {config.select_on} split to pick the best checkpoint on: make the features "
            "again (`whisper-gl features` keeps the source's validation split, or draws one from train), or "
            "train with --select-on test (the seed's recipe: selected and reported on the same split, optimistic)")


def build_trainer(config: TrainConfig, model, processor, dataset, manifest: FeaturesManifest, args, *,
                  eval_split: str | None = None):
    """The Trainer; it evaluates `eval_split` (default: the selection split), --max-eval-samples of it."""
    train = dataset["train"]
    train = train.add_column(TIMESTAMP_COLUMN, timestamp_flags(len(train), config.timestamp_share, config.seed))
    test = dataset[eval_split or config.select_on]
    if config.max_eval_samples:
        test = test.select(range(min(config.max_eval_samples, len(test))))
    generation = model.generation_config
    collator = WhisperCollator(window_frames=manifest.window_frames,
                               decoder_start_token_id=model.config.decoder_start_token_id,
                               no_timestamps_token_id=generation.no_timestamps_token_id)
    trainer = _whisper_trainer_class()(
        model=model,
        args=args,
        train_dataset=train.with_format("numpy"),
        eval_dataset=test.with_format("numpy"),
        data_collator=collator,
        processing_class=processor,
        compute_metrics=token_metrics(processor.tokenizer),
    )
    _log_into_work_dir(trainer, Path(args.output_dir) / "runs")
    return trainer


def _log_into_work_dir(trainer, runs: Path) -> None:
    """TensorBoard's folder: <work-dir>/runs. The callback picks its folder when training begins;
    an evaluation before that (the untuned model on test) would otherwise open ./runs."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(runs)


@dataclass
class Inputs:
    """The features and the model to load, checked (cheaply) before the model is loaded."""

    dataset: Any
    manifest: FeaturesManifest
    model_path: Path
    shorten: bool  # cut the model down to the features' shorter window (training only)


def check_inputs(config: TrainConfig, *, training: bool) -> Inputs:
    from transformers import WhisperConfig

    dataset, manifest = load_training_features(config.features)
    model_path = resolve_model(config.model)
    shorten = check_window(WhisperConfig.from_pretrained(model_path), manifest, config.model, training=training)
    if training:
        check_selection_split(config, dataset, config.features)
    return Inputs(dataset, manifest, model_path, shorten)


def prepared_model(config: TrainConfig, inputs: Inputs):
    """Processor and model; for training, a model with a longer window than the features' is cut
    down to theirs (e.g. 30 s Whisper -> 10 s)."""
    processor, model = load_model(inputs.model_path, inputs.manifest.language, inputs.manifest.task)
    if inputs.shorten:
        longer = model.config.max_source_positions
        shorten_window(model, processor, inputs.manifest.window)
        say(f"{config.model}: encoder cut from {longer} to {model.config.max_source_positions} positions "
            f"for the features' {inputs.manifest.window.describe()} windows")
    return processor, model


# --- entry points ---------------------------------------------------------------------

def last_checkpoint(work_dir: Path, resume: bool) -> str | None:
    """The checkpoint to resume from; a fresh run starts with an empty working folder.

    The Trainer writes trainer_state.json last, so a checkpoint without it was cut short
    by the kill and is passed over.
    """
    if not resume:
        clear_work_dir(work_dir)
        return None
    steps = {int(path.name.split("-")[1]): path for path in work_dir.glob("checkpoint-*")
             if path.name.split("-")[1].isdigit()}
    for _, checkpoint in sorted(steps.items(), reverse=True):
        if (checkpoint / "trainer_state.json").is_file():
            return str(checkpoint)
    say(f"--resume: no complete checkpoint in {work_dir} yet, starting from step 0")
    return None


def clear_work_dir(work_dir: Path) -> None:
    """Remove what an earlier run left in the working folder, and only that: a folder shared with
    other files (`--work-dir /mnt/shared`) keeps them."""
    for leftover in [*work_dir.glob("checkpoint-*"), work_dir / "runs", work_dir / BEFORE_FILE]:
        if leftover.is_dir():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()


def train(config: TrainConfig) -> dict:
    """Fine-tune, keep the best-WER checkpoint in config.output_dir; return the results
    (in the main process; the others of a torchrun / accelerate launch return {})."""
    config = resolve_config(config)
    check_launcher()
    config = dataclasses.replace(config, precision=hardware_precision(config.precision))  # reported as used
    inputs = check_inputs(config, training=True)
    try:
        return _train(config, inputs)
    finally:
        end_processes()


def _train(config: TrainConfig, inputs: Inputs) -> dict:
    work_dir = Path(config.work_dir)
    args = training_arguments(config, str(work_dir))
    check_world_size(args.world_size, len(inputs.dataset["train"]))
    checkpoint = agreed_start(work_dir, args, lambda: last_checkpoint(work_dir, config.resume))
    args.eval_on_start = checkpoint is None
    layout = batch_layout(args, len(inputs.dataset["train"]))
    say(describe_layout(layout))

    processor, model = prepared_model(config, inputs)
    if config.lora:
        model = add_lora(model, config)
    elif config.freeze_encoder:
        model.freeze_encoder()
    trainer = build_trainer(config, model, processor, inputs.dataset, inputs.manifest, args)
    timer = StepTimer()
    trainer.add_callback(timer)
    started = time.perf_counter()
    before = _test_before(trainer, config, inputs, work_dir, fresh=checkpoint is None)
    trainer.train(resume_from_checkpoint=checkpoint)
    after = None if config.select_on == "test" else _test_scores(trainer, inputs)  # the chosen checkpoint, once
    if not trainer.is_world_process_zero():
        return {}
    return _publish(config, inputs, trainer, processor, layout=layout, timer=timer, test=(before, after),
                    wall_seconds=time.perf_counter() - started)


def _test_scores(trainer, inputs: Inputs) -> dict:
    """The model as it is now, on the whole test split (every process takes part)."""
    from .reports import scores_from

    return scores_from(trainer.evaluate(eval_dataset=inputs.dataset["test"].with_format("numpy"),
                                        metric_key_prefix="test"), "test")


def _test_before(trainer, config: TrainConfig, inputs: Inputs, work_dir: Path, *, fresh: bool) -> dict | None:
    """The untuned model on test, measured before the first step (and read back on --resume)."""
    import json

    if config.select_on == "test":
        return None  # the step-0 evaluation already is on test
    saved = work_dir / BEFORE_FILE
    if not fresh:
        return json.loads(saved.read_text()) if saved.is_file() else None
    before = _test_scores(trainer, inputs)
    if trainer.is_world_process_zero():
        saved.write_text(json.dumps(before, indent=2) + "\n")
    return before


def _publish(config: TrainConfig, inputs: Inputs, trainer, processor, *, layout: dict, timer: StepTimer,
             test: tuple[dict | None, dict | None], wall_seconds: float) -> dict:
    """The main process's part after training: the final folder, its reports, the table, the push."""
    from . import reports

    results = reports.build_results(trainer.state, config, inputs.manifest, layout=layout, test=test,
                                    train_clips=len(inputs.dataset["train"]), test_clips=len(inputs.dataset["test"]),
                                    selection_clips=len(trainer.eval_dataset),
                                    wall_seconds=wall_seconds, step_seconds=timer.seconds)
    with atomic_dir(config.output_dir) as folder:
        save_checkpoint(plain_model(trainer.model), processor, folder)
        reports.write_reports(folder, results, trainer.state.log_history)
    print(reports.before_after_table(results))
    print(f"best step {results['best_step']}; {reports.batch_line(results)}")
    print(f"model and reports in {config.output_dir}")
    if config.push_to_hub:
        print(f"pushed {config.output_dir} to {push_folder(config.output_dir, config.push_to_hub)}")
    return results


def save_checkpoint(model, processor, folder: Path) -> None:
    """Model, generation config and processor; both processor file names are written because
    transformers 5 reads processor_config.json and faster-whisper preprocessor_config.json."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    processor.feature_extractor.save_pretrained(folder)


def evaluate_only(config: TrainConfig) -> dict[str, float]:
    """WER/CER of config.model on the test split of config.features."""
    from . import reports

    config = resolve_config(config)
    inputs = check_inputs(config, training=False)
    processor, model = prepared_model(config, inputs)
    try:
        with tempfile.TemporaryDirectory(prefix="whisper-gl-eval-") as scratch:
            args = training_arguments(config, scratch, report=False)
            trainer = build_trainer(config, model, processor, inputs.dataset, inputs.manifest, args,
                                    eval_split="test")
            metrics = trainer.evaluate()
    finally:
        end_processes()
    scores = {name: metrics[f"eval_{name}"] for name in METRIC_NAMES}
    say(reports.metrics_table({f"{config.model} ({metrics['eval_clips']:.0f} test clips)": scores}))
    return scores


def run(config: TrainConfig) -> dict:
    """`whisper-gl train`: fine-tune, or with --evaluate-only score --model on the test split."""
    return evaluate_only(config) if config.evaluate_only else train(config)
