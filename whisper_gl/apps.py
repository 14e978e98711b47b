"""The three Gradio apps (microphone, file, YouTube), all made by one builder.

They differ only in where the audio comes from: a recording, an upload, or a link that
yt-dlp downloads. Everything else is shared: the title naming the loaded model, the
transcript, a downloadable .srt, the timing line, examples from Resources/, the queue
that makes a busy app answer later instead of falling over, and the error policy: a
short human message (gr.Error), never a stack trace.

They are built to face strangers on a public Space (the caps are config.MediaLimits):
audio is decoded under the duration cap whatever the file claims (audio.read_audio),
links are fetched by the guarded downloader (download.py), uploads are bounded on disk
(uploads.UploadGuard), and SIGTERM shuts the app down leaving no file (shutdown.py).

    python app_file.py            # or app_microphone.py / app_youtube.py
    build_app("file")             # the gr.Blocks, for tests or mounting elsewhere
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import gradio as gr

from . import GENERIC_FAILURE, WhisperGLError, shutdown
from .config import AppConfig, DecodingOptions, MediaLimits, ModelOptions, subset

logger = logging.getLogger(__name__)

API_NAME = "transcribe"  # every app answers gradio_client's predict(..., api_name="/transcribe")
NO_SPEECH = "no speech was heard in this audio"
RESOURCES = Path(__file__).resolve().parents[1] / "Resources"
# Every 10 minutes, uploads and .srt files older than 30 minutes are deleted (and all at shutdown).
DELETE_CACHE = (600, 1800)


@dataclass(frozen=True)
class AppKind:
    """What makes one app different from the others."""

    heading: str
    instructions: str
    make_input: Callable[[], gr.Component]
    # Turns the input's value into a local audio file for the time of the transcription.
    open_audio: Callable[[object, AppConfig], ContextManager[Path]]
    examples: Callable[[], list[str]]


def build_app(kind: str, transcriber=None, config: AppConfig | None = None) -> gr.Blocks:
    """The Gradio app of `kind` ("microphone", "file" or "youtube"), with its queue set up.

    transcriber: a loaded whisper_gl.transcribe.Transcriber (default: one for config.model).
    """
    if kind not in KINDS:
        raise WhisperGLError(f"unknown app '{kind}': choose one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    config = config or AppConfig()
    if transcriber is None:
        transcriber = load_transcriber(config)

    title = f"Galician speech to text · {spec.heading}"
    with gr.Blocks(title=title, delete_cache=DELETE_CACHE, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\n{spec.instructions}\n\n{_model_line(transcriber)}")
        with gr.Row():
            with gr.Column():
                source = spec.make_input()
                button = gr.Button("Transcribe", variant="primary", elem_id="transcribe")
                examples = spec.examples()
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[source], cache_examples=False)
            with gr.Column():
                transcript = gr.Textbox(label="Transcript", lines=8, buttons=["copy"], interactive=False,
                                        elem_id="transcript")
                subtitles = gr.File(label="Subtitles (.srt)", interactive=False, elem_id="subtitles")
                timing = gr.Markdown(elem_id="timing")

        def transcribe(value):
            return _transcribe(value, spec, config, transcriber, srt_folder=Path(subtitles.GRADIO_CACHE))

        triggers = [button.click] + ([source.submit] if isinstance(source, gr.Textbox) else [])  # Enter in a link
        gr.on(triggers, transcribe, inputs=source, outputs=[transcript, subtitles, timing], api_name=API_NAME)
    app.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    return app


def load_transcriber(config: AppConfig):
    """The engine an app serves: the config's model and decoding, one decoding slot per
    concurrent request."""
    from .transcribe import Transcriber

    return Transcriber(options=subset(ModelOptions, config, num_workers=config.concurrency),
                       decoding=subset(DecodingOptions, config))


def launch(kind: str, config: AppConfig) -> None:
    """`whisper-gl app KIND` (and app_KIND.py): build the app and serve it until SIGINT or SIGTERM,
    then leave no file behind."""
    with shutdown.serving():
        # Gradio's cache (uploads, .srt files) in a folder of this process only, removed whole
        # at exit, with the half-written uploads Gradio itself never deletes.
        cache = shutdown.kept_folder("whisper-gl-app-", root=os.environ.get("GRADIO_TEMP_DIR"))
        os.environ["GRADIO_TEMP_DIR"] = str(cache)
        app = build_app(kind, config=config)
        app.launch(**launch_options(config.limits, cache))


def launch_options(limits: MediaLimits, cache: Path) -> dict:
    """The keyword arguments of gr.Blocks.launch that bound uploads into `cache` (Gradio's
    folder): Gradio refuses a file over the size cap before it reaches the disk, UploadGuard
    the rest (one file's worth per request, count and total size on disk)."""
    from starlette.middleware import Middleware

    from .uploads import UploadGuard

    return dict(max_file_size=limits.max_bytes,
                app_kwargs={"middleware": [Middleware(UploadGuard, folder=cache, limits=limits)]})


def _transcribe(value, spec: AppKind, config: AppConfig, transcriber, srt_folder: Path):
    """The shared event handler: audio in, (transcript, .srt path, timing line) out."""
    from .audio import read_audio

    try:
        with spec.open_audio(value, config) as path:
            audio = read_audio(path, max_seconds=config.limits.max_seconds)
        result = transcriber.transcribe(audio.waveform)
        if not result.text.strip():
            raise WhisperGLError(NO_SPEECH)
        subtitles = _write_srt(result, srt_folder, _stem(value))
    except WhisperGLError as error:
        raise gr.Error(html.escape(str(error)), print_exception=False) from None
    except Exception:
        logger.exception("transcription failed")  # the details stay in the server log
        raise gr.Error(GENERIC_FAILURE, print_exception=False) from None
    timing = _timing_line(result) + (f" · **{audio.partial_note}**" if audio.partial_note else "")
    return result.text, subtitles, timing


def _write_srt(result, folder: Path, stem: str) -> str:
    # Written straight into Gradio's cache: served from there without another copy and
    # deleted with the app's other temporary files (delete_cache).
    if shutdown.stopping.is_set():  # the cache is being removed: write nothing more into it
        raise WhisperGLError("the server is shutting down: try again in a minute")
    path = folder / "srt" / uuid.uuid4().hex / f"{stem}.srt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.to_srt(), encoding="utf-8")
    return str(path)


def _stem(value) -> str:
    name = Path(str(value)).stem if isinstance(value, str) and value and "://" not in value else ""
    return "".join(c for c in name if c.isalnum() or c in "-_")[:60] or "transcript"


def _timing_line(result) -> str:
    return (
        f"Audio {_clock(result.duration)} · processed in {result.elapsed:.1f} s "
        f"({result.real_time_factor:.2f}× real time) · backend {result.backend} · "
        f"language {result.language or '?'}"
    )


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)} min {seconds:04.1f} s" if minutes else f"{seconds:.1f} s"


def _model_line(transcriber) -> str:
    return f"Model: **{transcriber.model}** · backend **{transcriber.backend}** · language **{transcriber.language or 'auto'}**"


# --- where the audio comes from -------------------------------------------------------

def _media_file_input() -> gr.File:
    picker = gr.File(label="Audio or video file", file_types=["audio", "video"], type="filepath", elem_id="source")
    # Gradio 6.31's File.preprocess(type="filepath") leaves an empty NamedTemporaryFile in
    # its cache on every call (one stray file per request); the upload's own path is all we
    # need. (A gr.File subclass would do too, but Gradio writes a .pyi next to any module
    # that defines a component class.)
    picker.preprocess = lambda payload: payload.path if payload is not None else None
    return picker


@contextlib.contextmanager
def _local_file(value, config: AppConfig, missing: str) -> Iterator[Path]:
    """An uploaded or recorded file, checked against the size cap (the duration cap is
    enforced as it is decoded)."""
    if not value:
        raise WhisperGLError(missing)
    path = Path(value)
    if path.is_file() and path.stat().st_size > config.limits.max_bytes:
        raise WhisperGLError(config.limits.too_big(path.stat().st_size))
    yield path


def _uploaded(value, config: AppConfig) -> ContextManager[Path]:
    return _local_file(value, config, missing="upload an audio or video file first")


def _recorded(value, config: AppConfig) -> ContextManager[Path]:
    return _local_file(value, config, missing="record something first (allow the microphone)")


def _linked(value, config: AppConfig) -> ContextManager[Path]:
    from .download import downloaded_audio

    return downloaded_audio(str(value or ""), config.limits)


def _resource_examples() -> list[str]:
    """Bundled clips that exist (they are generated at setup): the long-form and short
    examples, then two sentences of the sample corpus's test split."""
    files = [RESOURCES / "examples" / "short.mp3", RESOURCES / "examples" / "long.mp3"]
    files += sorted((RESOURCES / "cv-corpus-sample" / "gl" / "clips").glob("*.mp3"))[:2]
    return [str(f) for f in files if f.is_file()]


KINDS: dict[str, AppKind] = {
    "microphone": AppKind(
        heading="microphone",
        instructions="Record yourself speaking Galician, then press **Transcribe**.",
        make_input=lambda: gr.Audio(sources=["microphone"], type="filepath", label="Recording", elem_id="source"),
        open_audio=_recorded,
        examples=_resource_examples,
    ),
    "file": AppKind(
        heading="audio or video file",
        instructions="Upload an audio or video file (any format ffmpeg reads), then press **Transcribe**.",
        make_input=_media_file_input,
        open_audio=_uploaded,
        examples=_resource_examples,
    ),
    "youtube": AppKind(
        heading="YouTube or media link",
        instructions="Paste the link of one YouTube video (or of any audio/video file on the web), "
                     "then press **Transcribe**. Only the audio is downloaded.",
        make_input=lambda: gr.Textbox(label="Link", placeholder="https://www.youtube.com/watch?v=...", elem_id="source"),
        open_audio=_linked,
        examples=lambda: [],  # links, not clips: there is nothing in Resources/ to offer
    ),
}
