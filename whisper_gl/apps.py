"""The three Gradio apps (microphone, file, YouTube), all made by one builder.

They differ only in where the audio comes from: a recording, an upload, or a link that
yt-dlp downloads. Everything else is shared: the title naming the loaded model (and how long it
took to load and warm up), the transcript, a downloadable .srt, the timing line (the decoding
alone), examples from the sample corpus's test split, the queue that makes a busy app answer
later instead of falling over, and the error policy: a short human message, never a stack
trace, shown on the page next to the input until the next action (the API endpoint
`/transcribe` raises it as gr.Error).

They are built to face strangers on a public Space (the caps are config.MediaLimits):
audio is decoded under the duration cap whatever the file claims (audio.read_audio),
links are fetched by the guarded downloader (download.py), uploads are bounded on disk
(uploads.UploadGuard), every client is bounded in time and SIGTERM shuts the app down
within its deadline leaving no file (webserver.py, shutdown.py).

    whisper-gl app file --port 7870   # or python app_file.py; app microphone / app youtube
    build_app("file")                 # the gr.Blocks, for tests or mounting elsewhere
"""

from __future__ import annotations

import contextlib
import html
import itertools
import logging
import os
import threading
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import gradio as gr
import numpy as np

from . import GENERIC_FAILURE, WhisperGLError, shutdown
from .config import AppConfig, DecodingOptions, MediaLimits, ModelOptions, ServerOptions, subset
from .streaming import LiveUpdate, live_transcript

logger = logging.getLogger(__name__)

API_NAME = "transcribe"  # every app answers gradio_client's predict(..., api_name="/transcribe")
NO_SPEECH = "no speech was heard in this audio"
RESOURCES = Path(__file__).resolve().parents[1] / "Resources"
SAMPLE_CORPUS = RESOURCES / "cv-corpus-sample" / "gl"
# The error of the last action, next to its input until the next one (its own scoped style).
ERROR_CSS = (".error-message { color: var(--error-text-color); background: var(--error-background-fill); "
             "border: 1px solid var(--error-border-color); border-radius: var(--radius-md); padding: 8px 12px; }")
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
    live: bool = False  # a streaming microphone with live captions beside the request input


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
                if spec.live:
                    with gr.Tab("Live", elem_id="live-tab"):
                        microphone = gr.Audio(sources=["microphone"], streaming=True, type="filepath",
                                              label="Microphone: captions appear as you speak", elem_id="microphone")
                        live_error = _error_box("live-error")
                    with gr.Tab("Upload a recording", elem_id="upload-tab"):
                        source, button, error = _request_input(spec)
                else:
                    source, button, error = _request_input(spec)
            with gr.Column():
                if spec.live:
                    captions = gr.HTML(label="Live captions", show_label=True, container=True, padding=True,
                                       min_height=60, elem_id="live", css_template=LIVE_CSS, js_on_load=None)
                transcript = gr.Textbox(label="Transcript", lines=8, buttons=["copy"], interactive=False,
                                        elem_id="transcript")
                subtitles = gr.File(label="Subtitles (.srt)", interactive=False, elem_id="subtitles")
                timing = gr.Markdown(elem_id="timing")

        srt_folder = Path(subtitles.GRADIO_CACHE)
        outputs = [transcript, subtitles, timing]

        def transcribe(value):
            return _transcribe(value, spec, config, transcriber, srt_folder=srt_folder)

        _wire_request(source, button, error, transcribe, outputs)
        if spec.live:
            LiveCaptions(transcriber, config, srt_folder).wire(microphone, captions, outputs, live_error)
    app.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    return app


def _request_input(spec: AppKind) -> tuple[gr.Component, gr.Button, gr.HTML]:
    """The input of one request (a file, a recording, a link), its button, the place of its
    errors and its examples."""
    source = spec.make_input()
    button = gr.Button("Transcribe", variant="primary", elem_id="transcribe")
    error = _error_box("error")
    examples = spec.examples()
    if examples:
        gr.Examples(examples=[[e] for e in examples], inputs=[source], cache_examples=False)
    return source, button, error


def _error_box(elem_id: str) -> gr.HTML:
    return gr.HTML("", elem_id=elem_id, container=False, css_template=ERROR_CSS)


def _wire_request(source: gr.Component, button: gr.Button, error: gr.HTML, transcribe: Callable,
                  outputs: list[gr.Component]) -> None:
    """The page's events: the button (and Enter in a link) clears the last error, then transcribes,
    an error going next to the input, where it stays until the next action (a new file or link
    clears it too). The API endpoint /transcribe is the same handler on a hidden button, its
    errors raised for the client; one concurrency group holds both."""
    triggers = [button.click] + ([source.submit] if isinstance(source, gr.Textbox) else [])  # Enter in a link
    private = dict(api_visibility="private", concurrency_id=API_NAME)
    gr.on(triggers, _no_error, outputs=error, queue=False, show_progress="hidden", api_visibility="private") \
        .then(_shown_on_page(transcribe, len(outputs)), inputs=source, outputs=[*outputs, error], **private)
    source.change(_no_error, outputs=error, queue=False, show_progress="hidden", api_visibility="private")
    gr.Button(visible=False).click(transcribe, inputs=source, outputs=outputs, api_name=API_NAME,
                                   concurrency_id=API_NAME)


def _no_error() -> str:
    return ""


def _shown_on_page(handler: Callable, outputs: int) -> Callable:
    """`handler` for the page: its answer plus an empty error box, or empty outputs and the
    error (gr.Error) written next to the input, instead of a toast that vanishes."""

    def shown(*args):
        try:
            return (*handler(*args), "")
        except gr.Error as error:
            return (*[None] * outputs, _error_html(error.message))

    return shown


def _error_html(message: str) -> str:
    # gr.Error messages are HTML (escaped in _short_errors): back to text, then escaped for gr.HTML.
    return f'<div class="error-message" role="alert">{_escaped(html.unescape(message))}</div>'


def load_transcriber(config: AppConfig):
    """The engine an app serves: the config's model and decoding, one decoding slot per
    concurrent request."""
    from .transcribe import Transcriber

    return Transcriber(options=subset(ModelOptions, config, num_workers=config.concurrency),
                       decoding=subset(DecodingOptions, config))


def ready_engine(config: AppConfig):
    """The engine loaded and warmed up, what that took in its `startup` (shown on the page)."""
    began = time.perf_counter()
    transcriber = load_transcriber(config)
    loaded = time.perf_counter()
    warm_up(transcriber)
    transcriber.startup = f"loaded in {loaded - began:.1f} s, warmed up in {time.perf_counter() - loaded:.1f} s"
    return transcriber


def warm_up(transcriber) -> None:
    """Make the first request cost what the others do: the voice-activity detector loaded and one
    short decode run (a stranger's first upload then times its own decoding, not the start-up)."""
    noise = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    transcriber.transcribe(noise)  # the VAD, which hears no speech here
    transcriber.transcribe(noise, require_speech=False, temperatures=(0.0,), beam_size=1)


def launch(kind: str, config: ServerOptions) -> None:
    """`whisper-gl app KIND` (and app_KIND.py): load and warm up the engine, build the app and
    serve it on --host/--port until SIGINT or SIGTERM, then leave no file behind."""
    from . import webserver

    with shutdown.serving():
        # Gradio's cache (uploads, .srt files) in a folder of this process only, removed whole
        # at exit, with the half-written uploads Gradio itself never deletes.
        cache = shutdown.kept_folder("whisper-gl-app-", root=os.environ.get("GRADIO_TEMP_DIR"))
        os.environ["GRADIO_TEMP_DIR"] = str(cache)
        transcriber = ready_engine(config)
        host, port = config.listen_on()
        server = app_server(build_app(kind, transcriber, config), config.limits, cache)
        print(f"serving the {kind} app at http://{host}:{port} (model {transcriber.model}, "
              f"{transcriber.startup}); Ctrl-C stops it", flush=True)
        webserver.run(server, host, port, config, on_shutdown=[ending_heartbeats(server)])


def app_server(app: gr.Blocks, limits: MediaLimits, cache: Path):
    """The ASGI server of one app: the Blocks at the root of a FastAPI app whose uploads into
    `cache` (Gradio's folder) are bounded: Gradio refuses a file over the size cap before it
    reaches the disk, UploadGuard the rest (one file's worth per request, its time, count and
    total size on disk)."""
    from fastapi import FastAPI

    from .uploads import UploadGuard

    server = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    server.add_middleware(UploadGuard, folder=cache, limits=limits)
    return gr.mount_gradio_app(server, app, path="/", max_file_size=limits.max_bytes)


def ending_heartbeats(server) -> Callable[[float], None]:
    """A shutdown hook that ends the heartbeat streams of the Gradio apps mounted in `server` (every
    open page and gradio_client keeps one, for ever): they close at once instead of being cut at
    the deadline. Requests in progress go on."""
    from starlette.routing import Mount

    apps = [route.app for route in server.routes if isinstance(route, Mount) and hasattr(route.app, "stop_event")]

    def end(answer_by: float) -> None:
        for app in apps:
            app.stop_event.set()

    return end


def _transcribe(value, spec: AppKind, config: AppConfig, transcriber, srt_folder: Path):
    """The shared event handler: audio in, (transcript, .srt path, timing line) out."""
    from .audio import read_audio

    with _short_errors():
        with spec.open_audio(value, config) as path:
            began = time.perf_counter()
            audio = read_audio(path, max_seconds=config.limits.max_seconds)
            read = time.perf_counter() - began
        result = transcriber.transcribe(audio.waveform)
    return _outputs(result, srt_folder, _stem(value), audio.partial_note, read_seconds=read)


@contextlib.contextmanager
def _short_errors() -> Iterator[None]:
    """The error policy of every handler: bad input in one line, anything else a generic
    message (the details go to the server log), never a stack trace."""
    try:
        yield
    except gr.Error:
        raise
    except WhisperGLError as error:
        raise gr.Error(html.escape(str(error)), print_exception=False) from None
    except Exception:
        logger.exception("transcription failed")
        raise gr.Error(GENERIC_FAILURE, print_exception=False) from None


def _outputs(result, srt_folder: Path, stem: str, note: str = "", read_seconds: float | None = None) \
        -> tuple[str, str, str]:
    """A transcription as the apps show it: (transcript, .srt path, timing line)."""
    if not result.text.strip():
        raise gr.Error(NO_SPEECH, print_exception=False)
    timing = _timing_line(result, read_seconds) + (f" · **{note}**" if note else "")
    with _short_errors():
        return result.text, _write_srt(result, srt_folder, stem), timing


def _write_srt(result, folder: Path, stem: str) -> str:
    # Written straight into Gradio's cache: served from there without another copy and
    # deleted with the app's other temporary files (delete_cache).
    if shutdown.removing.is_set():  # the cache is being removed: write nothing more into it
        raise WhisperGLError("the server is shutting down: try again in a minute")
    path = folder / "srt" / uuid.uuid4().hex / f"{stem}.srt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.render("srt"), encoding="utf-8")
    return str(path)


def _stem(value) -> str:
    name = Path(str(value)).stem if isinstance(value, str) and value and "://" not in value else ""
    return "".join(c for c in name if c.isalnum() or c in "-_")[:60] or "transcript"


def _timing_line(result, read_seconds: float | None = None) -> str:
    """Audio length, the engine's time on it (the model was loaded and warmed up at start), the
    time reading the file took, backend and language."""
    read = f" · file read in {read_seconds:.1f} s" if read_seconds is not None else ""
    return (
        f"Audio {_clock(result.duration)} · transcribed in {result.elapsed:.1f} s "
        f"({result.real_time_factor:.2f}× real time){read} · backend {result.backend} · "
        f"language {result.language or '?'}"
    )


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)} min {seconds:04.1f} s" if minutes else f"{seconds:.1f} s"


def _model_line(transcriber) -> str:
    startup = getattr(transcriber, "startup", "")
    return (f"Model: **{transcriber.model}** · backend **{transcriber.backend}** · language "
            f"**{transcriber.language or 'auto'}**" + (f" · {startup}" if startup else ""))


# --- live captions (the microphone app) --------------------------------------------------

# Confirmed words are plain; the tentative tail (it may still change) is greyed and italic.
LIVE_CSS = ".tentative { color: var(--body-text-color-subdued); font-style: italic; }"
LIVE_IDLE_SECONDS = 60.0  # a live recording that sent nothing for this long was abandoned (tab closed)
CHUNK_NAME = "audio.wav"  # what Gradio's streaming microphone names each piece it uploads
MAX_CHUNK_SECONDS = 10.0  # of one streamed piece (the browser sends stream_every seconds)
# Past the length cap the captions say so; a tab that keeps streaming this much longer has its
# stream refused (each refusal is a toast), so that it does not hold a live slot forever.
CAP_GRACE_SECONDS = 30.0


class LiveSession:
    """One tab's live recording: the engine's LiveTranscript, fed from a queue.

    Gradio hands a stream handler only the latest piece of audio: pieces sent while the handler
    runs replace each other. So the handler only queues the piece and returns the captions as
    they stand, and one task at a time in the app's pool pushes everything queued into the
    transcript (several pieces in one push when decoding fell behind: nothing is dropped).
    """

    def __init__(self, live, pool: ThreadPoolExecutor, max_seconds: float):
        self.live = live  # None once released
        self.update = live.snapshot()
        self.error = ""  # why the recording stopped being captioned (e.g. the length cap)
        self.last_audio = time.monotonic()
        self.received = 0.0  # seconds of audio queued, decoded or not
        self.max_seconds = max_seconds
        self.refused = 0  # pieces that came past the length cap
        self._pool = pool
        self._pending: list[tuple[np.ndarray, int]] = []
        self._pushing = False
        self._lock = threading.Condition()

    @property
    def ended(self) -> bool:
        return self.live is None

    def add(self, samples: np.ndarray, sampling_rate: int) -> None:
        """Queue audio for the transcript, without waiting for it to be decoded."""
        with self._lock:
            if self.ended or self.received > self.max_seconds:
                self.refused += 1
                return
            self._pending.append((samples, sampling_rate))
            self.last_audio = time.monotonic()
            self.received += len(samples) / sampling_rate
            if self.received > self.max_seconds:  # said at once; the transcript keeps what fits
                self.error = MediaLimits(max_seconds=self.max_seconds).too_long()
            if self._pushing:
                return
            self._pushing = True
        self._pool.submit(self._push_pending)

    def _push_pending(self) -> None:
        while True:
            with self._lock:
                live, pending, self._pending = self.live, self._pending, []
                if live is None or not pending:
                    self._pushing = False
                    self._lock.notify_all()
                    return
            for rate, pieces in itertools.groupby(pending, key=lambda piece: piece[1]):
                try:
                    self.update = live.push(np.concatenate([samples for samples, _ in pieces]), sampling_rate=rate)
                except WhisperGLError as error:  # past the length cap, or a rate that changed mid-recording
                    self.error = str(error)
                except Exception:
                    logger.exception("live transcription failed")
                    self.error = GENERIC_FAILURE

    def drained(self, timeout: float | None = None) -> bool:
        """Wait until everything queued has been pushed into the transcript (False: timed out)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pushing, timeout)

    def finish(self):
        """The recording is over: wait for what is queued, then the whole recording decoded again
        (LiveTranscript.finish). The session is released either way."""
        self.drained()
        live = self.live
        try:
            if live is None:
                raise WhisperGLError("this live recording has expired: record again")
            return live.finish()
        finally:
            self.release()

    def release(self) -> None:
        """Drop the transcript and its audio (idempotent); a push in flight finishes on its own."""
        with self._lock:
            self.live, self._pending = None, []


class LiveCaptions:
    """The microphone app's live recordings: the handlers of the streaming microphone, and a pool
    of `config.live_sessions` threads that decodes them.

    Recording starts a LiveSession; each streamed piece grows the captions; stopping decodes the
    whole recording once more and shows it with its subtitles and timing, as an upload would be.
    Gradio keeps a closed tab's state for an hour, so recordings that sent no audio for
    `idle_seconds` are released whenever a new one starts: memory follows the recordings that
    are live, not the tabs that were ever opened.
    """

    def __init__(self, transcriber, config: AppConfig, cache: Path, idle_seconds: float = LIVE_IDLE_SECONDS):
        self.transcriber, self.config, self.cache, self.idle_seconds = transcriber, config, cache, idle_seconds
        self.pool = ThreadPoolExecutor(config.live_sessions, thread_name_prefix="whisper-gl-live")
        self.sessions: weakref.WeakSet[LiveSession] = weakref.WeakSet()

    def wire(self, microphone: gr.Audio, captions: gr.HTML, outputs: list[gr.Component], error: gr.HTML) -> None:
        """Connect the handlers; `outputs`: the app's (transcript, subtitles, timing); `error`: where
        a failed Stop says why (Record clears it)."""
        state = gr.State(delete_callback=self.release)
        ui_only = dict(api_visibility="private")  # the page's own events: the API is /transcribe
        microphone.start_recording(self.start, inputs=state, outputs=[captions, state, error], queue=False,
                                   **ui_only)
        microphone.stream(self.stream, inputs=[microphone, state], outputs=[captions, state],
                          stream_every=self.config.stream_every, concurrency_limit=self.config.live_sessions,
                          concurrency_id="live", show_progress="hidden", **ui_only)
        microphone.stop_recording(_shown_on_page(self.stop, len(outputs) + 2), inputs=state,
                                  outputs=[captions, *outputs, state, error], **ui_only)

    # --- the handlers ----------------------------------------------------------------------

    def start(self, session: LiveSession | None) -> tuple[str, None, str]:
        """Record pressed: whatever the tab recorded before is let go, and the last error."""
        self.release(session)
        return "", None, ""

    def stream(self, piece: str | None, session: LiveSession | None) -> tuple[str, LiveSession]:
        """A piece of the recording arrived: queue it, show the captions as they stand (and, past
        the length cap, that Stop gives the transcript of what came before it)."""
        if session is None or session.ended:
            session = self.new_session()
        with _short_errors():
            audio = _read_piece(piece, self.cache)
        if audio is not None:
            session.add(*audio)
        if session.refused * self.config.stream_every > CAP_GRACE_SECONDS:  # Stop was not pressed: free the slot
            raise gr.Error(html.escape(session.error), print_exception=False)
        return _captions_html(session.update, session.received, session.error), session

    def stop(self, session: LiveSession | None) -> tuple[str, str, str, str, None]:
        """Stop pressed: the whole recording decoded again replaces the live captions."""
        if session is None:
            raise gr.Error("record something first (allow the microphone)", print_exception=False)
        note = html.escape(session.error)  # e.g. the length cap: what came before it is transcribed
        with _short_errors():
            result = session.finish()
        return ("", *_outputs(result, self.cache, "recording", note), None)

    # --- sessions ----------------------------------------------------------------------------

    def new_session(self) -> LiveSession:
        self.release_idle()
        max_seconds = self.config.limits.max_seconds
        session = LiveSession(live_transcript(self.transcriber, max_seconds=max_seconds), self.pool, max_seconds)
        self.sessions.add(session)
        return session

    def release_idle(self) -> None:
        now = time.monotonic()
        for session in list(self.sessions):
            if session.ended or now - session.last_audio > self.idle_seconds:
                session.release()
                self.sessions.discard(session)

    @staticmethod
    def release(session: LiveSession | None) -> None:
        """Also gr.State's delete_callback, when Gradio drops a tab's state."""
        if session is not None:
            session.release()


def _read_piece(path, cache: Path) -> tuple[np.ndarray, int] | None:
    """One piece of a live recording as the browser uploaded it (a short WAV in Gradio's cache):
    its samples and rate, at most MAX_CHUNK_SECONDS of them, and the file deleted (a recording
    is thousands of pieces: none may stay on disk)."""
    import soundfile

    if not path or not Path(path).is_file():  # an identical piece (silence) deleted by another session
        return None
    path = Path(path)
    try:
        with soundfile.SoundFile(path) as wav:
            if not 8_000 <= wav.samplerate <= 192_000 or wav.channels > 8:
                raise WhisperGLError("the microphone's audio is not in a format the app reads")
            return wav.read(frames=round(wav.samplerate * MAX_CHUNK_SECONDS), dtype="float32"), wav.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise WhisperGLError("the microphone's audio could not be read") from error
    finally:
        _discard_piece(path, cache)


def _discard_piece(path: Path, cache: Path) -> None:
    # Only a streamed piece, only in Gradio's cache: a client names the path it sends.
    if path.name == CHUNK_NAME and path.resolve().is_relative_to(cache.resolve()):
        with contextlib.suppress(OSError):
            path.unlink()
            path.parent.rmdir()


def _captions_html(update: LiveUpdate, heard: float = 0.0, error: str = "") -> str:
    """The live captions: the confirmed text plain, the tentative tail greyed, all escaped; why
    captioning stopped, if it did. The words are spaced by the engine (LiveUpdate.text): the
    tentative span holds its own leading space, the page adds none."""
    confirmed = update.confirmed
    tentative = update.text[len(confirmed):]
    text = (f'<p><span class="confirmed">{_escaped(confirmed)}</span><span class="tentative">'
            f'{_escaped(tentative)}</span></p>'
            if confirmed or tentative else f'<p class="listening">Listening… {heard:.0f} s</p>')
    return text + (f'<p class="stopped"><strong>{_escaped(error)}</strong>: press Stop for the transcript of what '
                   f'came before.</p>' if error else "")


def _escaped(text: str) -> str:
    # Also $, { and }: gr.HTML fills its value into a template.
    return html.escape(text).replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;")


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
    return _local_file(value, config, missing="upload a recording first")


def _linked(value, config: AppConfig) -> ContextManager[Path]:
    from .download import downloaded_audio

    return downloaded_audio(str(value or ""), config.limits)


def _resource_examples() -> list[str]:
    """Example clips that exist (they are generated: `make corpus` in the checkout, `whisper-gl
    examples` / `whisper-gl corpus` into the home otherwise): the short and long-form examples,
    then the first two clips of the sample corpus's test split (never heard in training: a clip
    of the training split would flatter the fine-tuned model). The checkout's first, else the home's."""
    from .paths import home

    files = []
    for examples, corpus in ((RESOURCES / "examples", SAMPLE_CORPUS), (home().examples, home().sample_corpus)):
        found = [examples / "short.mp3", examples / "long.mp3"]
        found += [corpus / "clips" / name for name in _split_clips(corpus / "test.tsv")[:2]]
        files += [str(f) for f in found if f.is_file() and f.name not in {Path(known).name for known in files}]
    return files


def _split_clips(tsv: Path) -> list[str]:
    """The clip names (column `path`) of a Common Voice split file; none when it is missing."""
    import csv

    try:
        with tsv.open(encoding="utf-8", newline="") as file:
            return [row["path"] for row in csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
                    if row.get("path")]
    except (OSError, KeyError, csv.Error):
        return []


KINDS: dict[str, AppKind] = {
    "microphone": AppKind(
        heading="microphone",
        instructions="Press **Record** and speak Galician: the captions grow as you speak (grey words may still "
                     "change). Press **Stop** for the final transcript and subtitles. Or upload a recording.",
        make_input=lambda: gr.Audio(sources=["upload"], type="filepath", label="Recording", elem_id="source"),
        open_audio=_recorded,
        examples=_resource_examples,
        live=True,
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
