"""An OpenAI-compatible transcription API (and the Gradio apps) on one server, one model in memory.

    whisper-gl serve --model artifacts/model --apps microphone,file,youtube

    POST /v1/audio/transcriptions   multipart, as OpenAI documents it: file, model, language,
                                    prompt, response_format (json, text, verbose_json, and every
                                    output format of whisper_gl.transcript: srt, vtt, tsv, ...),
                                    temperature, timestamp_granularities[] (word, segment),
                                    stream (true: server-sent events transcript.text.delta/done)
    POST /v1/audio/translations     the same, into English (Whisper's translate task)
    GET  /v1/models                 the served model
    GET  /health                    no key needed
    /microphone /file /youtube      the Gradio apps, with --apps

Any tool that speaks OpenAI's audio API (the `openai` clients, Open WebUI, editors with a
"Whisper API" setting) works with base_url http://HOST:PORT/v1. Errors have OpenAI's shape,
{"error": {"message", "type", "param", "code"}}, with its status codes; a fault of ours is a
500 "server_error" whose details go to the server log only. A request takes its place in the
queue (--concurrency transcribing, --queue-size waiting, a request still uploading included;
past that 429) before a byte of its body is read; a declared body over --max-mb is refused
(413) unread, and the body is counted while it arrives, whatever it claims. The upload waits
in its spooled temporary file until a slot is free; the duration cap applies to the decoded
audio. With WHISPER_GL_API_KEY set every /v1 request needs `Authorization: Bearer <key>`, and
the mounted apps Gradio's login with the key as password (compared in constant time, never
logged). The API and the apps share one engine, one bound of --concurrency transcriptions at
once (SharedEngine) and one UploadGuard. There is no transcription logic here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import (  # FastAPI reads the routes' annotations: they must resolve here
    FastAPI,
    Request,
)
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from . import GENERIC_FAILURE, WhisperGLError
from .config import APP_KINDS, LiveOptions, ServeConfig, check_language
from .streaming import live_transcript
from .transcript import FORMATS
from .uploads import FORM_OVERHEAD, BodyTooLarge, content_length, counting_receive
from .window import SAMPLING_RATE

logger = logging.getLogger(__name__)

API_KEY_ENV = "WHISPER_GL_API_KEY"
# OpenAI's own response formats; every other output format registered in whisper_gl.transcript
# (srt, vtt, tsv, ...) is served under its name too.
OPENAI_FORMATS = ("json", "text", "verbose_json")
STREAM_PUSH_SECONDS = 1.0  # of an upload fed at a time to a stream=true request's live transcript
# An upload is all there: decode every second of it (not paced by the clock), so the same file
# always streams the same events.
STREAM_LIVE_OPTIONS = LiveOptions(step_seconds=1.0, paced=False)
AUDIO_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/translations")


@dataclass
class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class BodyLimit:
    """ASGI middleware: an audio request's body is counted as it arrives and cut off past the
    cap plus the form's few bytes (Content-Length is a claim; chunked bodies have none)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.allowance = app, max_bytes + FORM_OVERHEAD

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in AUDIO_ROUTES:
            return await self.app(scope, receive, send)
        return await self.app(scope, counting_receive(receive, self.allowance), send)


def served_model_id(config: ServeConfig, model: str) -> str:
    """The id clients name in `model`: --served-model-name, else the model's folder name or Hub id."""
    if config.served_model_name:
        return config.served_model_name
    path = Path(model)
    return path.name if path.exists() else model


def create_api(transcriber, config: ServeConfig):
    """The FastAPI app: the OpenAI routes over `transcriber` (a whisper_gl.transcribe.Transcriber)."""
    api = FastAPI(title="whisper-gl", description="OpenAI-compatible speech to text", docs_url=None, redoc_url=None)
    service = TranscriptionService(transcriber, config, served_model_id(config, transcriber.model))
    api.state.service = service
    api.add_middleware(BodyLimit, max_bytes=config.limits.max_bytes)

    @api.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse(error.body(), status_code=error.status)

    @api.get("/health")
    async def health():
        return {"status": "ok", "model": service.model_id, "backend": transcriber.backend}

    @api.get("/v1/models")
    async def models(request: Request):
        service.authorize(request)
        return {"object": "list", "data": [service.model_card()]}

    @api.get("/v1/models/{model:path}")
    async def model(model: str, request: Request):
        service.authorize(request)
        service.check_model(model)
        return service.model_card()

    @api.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await service.handle(request, task="transcribe")

    @api.post("/v1/audio/translations")
    async def translations(request: Request):
        return await service.handle(request, task="translate")

    return api


class TranscriptionService:
    """What the routes share: the key, the caps, the queue, and the engine."""

    def __init__(self, transcriber, config: ServeConfig, model_id: str):
        self.transcriber, self.config, self.model_id = transcriber, config, model_id
        self._key = os.environ.get(API_KEY_ENV, "").encode()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._admitted = 0  # requests past the key check: receiving their body, waiting or transcribing

    def model_card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": 0, "owned_by": "whisper-gl"}

    def authorize(self, request) -> None:
        if not self._key:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'.", code="invalid_api_key")
        if not hmac.compare_digest(given.strip().encode(), self._key):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def check_model(self, model: str | None) -> None:
        if model != self.model_id:
            raise ApiError(404, f"The model '{model}' does not exist; this server serves '{self.model_id}'.",
                           param="model", code="model_not_found")

    async def handle(self, request, *, task: str):
        """One audio request: the key, then a place in the queue, before a byte of the body is read;
        the upload stays in its spooled temporary file until a transcription slot is free. A
        stream (stream=true) keeps its place and its slot until its last event."""
        self.authorize(request)
        declared = content_length(request.scope)
        if declared is not None and declared > self.config.limits.max_bytes + FORM_OVERHEAD:
            raise self._too_large()
        async with contextlib.AsyncExitStack() as held:
            await held.enter_async_context(self._admission())
            form = await self._form(request)
            held.push_async_callback(form.close)
            try:
                answer = await self._answer(form, task, held)
            except ApiError:
                raise
            except Exception:  # noqa: BLE001 - a fault of ours: OpenAI's shape, the details in the log
                logger.exception("transcription failed")
                raise ApiError(500, GENERIC_FAILURE, type="server_error") from None
            if isinstance(answer, EventStream):
                answer.hold(held.pop_all())
            return answer

    async def _answer(self, form, task: str, held: contextlib.AsyncExitStack):
        self.check_model(form.get("model"))
        options = self._options(form, task)
        response_format = form.get("response_format") or "json"
        if response_format not in response_formats():
            raise ApiError(400, f"response_format must be one of {', '.join(response_formats())}",
                           param="response_format")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "Send the audio as the multipart field 'file'.", param="file")
        if _is_true(form.get("stream")):
            if response_format not in ("json", "text") or options.get("word_timestamps"):
                raise ApiError(400, "stream=true sends text events: response_format json or text, no word timestamps",
                               param="stream")
            await held.enter_async_context(self._slots)  # held by the stream until its last event
            waveform = await self._waveform(upload)
            await upload.close()  # decoded: its spooled file need not last as long as the stream
            return EventStream(self._events(waveform, options))
        async with self._slots:
            waveform = await self._waveform(upload)
            result = await self._run(self.transcriber.transcribe, waveform, **options)
        return render(result, response_format, task=task, words=options.get("word_timestamps", False))

    async def _form(self, request):
        try:
            form = await request.form(max_files=1, max_fields=16)
        except BodyTooLarge:
            raise self._too_large() from None
        except Exception as error:  # noqa: BLE001 - malformed multipart
            raise ApiError(400, f"Could not read the multipart form ({error}).") from None
        for name, value in form.multi_items():
            if name != "file" and not isinstance(value, str):
                await form.close()
                raise ApiError(400, f"'{name}' must be a text field, not a file.", param=name)
        return form

    def _too_large(self) -> ApiError:
        return ApiError(413, f"The request is larger than the {self.config.limits.max_bytes / 1e6:g} MB limit.",
                        param="file", code="file_too_large")

    def _options(self, form, task: str) -> dict:
        options = {"task": task}
        if task == "transcribe" and form.get("language"):
            try:
                if form.get("language") != "auto":
                    check_language(form.get("language"))
            except WhisperGLError as error:
                raise ApiError(400, str(error), param="language") from None
            options["language"] = form.get("language")
        if form.get("prompt"):
            options["initial_prompt"] = form.get("prompt")
        granularities = set(form.getlist("timestamp_granularities[]")) | set(form.getlist("timestamp_granularities"))
        if granularities - {"word", "segment"}:
            raise ApiError(400, "timestamp_granularities[] takes word and segment",
                           param="timestamp_granularities")
        if "word" in granularities:
            if (form.get("response_format") or "json") != "verbose_json":
                raise ApiError(400, "word timestamps need response_format verbose_json",
                               param="timestamp_granularities")
            options["word_timestamps"] = True
        if form.get("temperature"):
            try:
                temperature = float(form.get("temperature"))
            except ValueError:
                raise ApiError(400, "temperature must be a number between 0 and 1", param="temperature") from None
            if not 0 <= temperature <= 1:
                raise ApiError(400, "temperature must be a number between 0 and 1", param="temperature")
            if temperature > 0:  # 0 (OpenAI's default) keeps the engine's fallback from 0 upwards
                options["temperatures"] = (temperature,)
        return options

    async def _waveform(self, upload):
        """The upload's audio, read into memory only now (inside a slot), under the duration cap."""
        return await self._run(self._decode, await upload.read())

    async def _run(self, function, *args, **kwargs):
        """`function` in a worker thread, its WhisperGLError answered as OpenAI's 400 or 413."""
        from starlette.concurrency import run_in_threadpool

        try:
            return await run_in_threadpool(function, *args, **kwargs)
        except WhisperGLError as error:
            raise ApiError(_status_of(error), str(error), param="file") from None

    async def _events(self, waveform, options: dict):
        """The stream's server-sent events, as OpenAI sends them: a `transcript.text.delta` for each
        piece of text the engine's live transcript confirms (whisper_gl.streaming: the audio is fed
        as fast as it decodes), then `transcript.text.done` with the whole text. A failure midway
        is an `error` event (the status line has gone out)."""
        try:
            live = live_transcript(self.transcriber, keep_audio=False, live=STREAM_LIVE_OPTIONS, **options)
            step = round(STREAM_PUSH_SECONDS * SAMPLING_RATE)
            for start in range(0, len(waveform), step):
                update = await self._run(live.push, waveform[start: start + step])
                if update.delta:
                    yield _event({"type": "transcript.text.delta", "delta": update.delta})
            update = await self._run(live.close)
            if update.delta:
                yield _event({"type": "transcript.text.delta", "delta": update.delta})
            yield _event({"type": "transcript.text.done", "text": live.text,
                          "usage": {"type": "duration", "seconds": round(live.seconds, 3)}})
        except ApiError as error:
            yield _event(error.body())
        except Exception:  # noqa: BLE001 - a fault of ours, mid-stream
            logger.exception("streamed transcription failed")
            yield _event(ApiError(500, GENERIC_FAILURE, type="server_error").body())

    def _decode(self, audio: bytes):
        """Decoded under the duration cap, whatever the file claims (the apps' rule)."""
        from .audio import read_audio

        return read_audio(audio, max_seconds=self.config.limits.max_seconds).waveform

    @contextlib.asynccontextmanager
    async def _admission(self):
        """A place among the --concurrency requests transcribing and the --queue-size waiting, taken
        before the body is read (a request still uploading counts): past that, 429 at once."""
        if self._admitted >= self.config.concurrency + self.config.queue_size:
            raise ApiError(429, "The server is busy: try again in a moment.", type="rate_limit_error",
                           code="server_busy")
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1


class EventStream(StreamingResponse):
    """A text/event-stream response that holds what its request took (a place in the queue, a
    transcription slot) until the last event is sent or the client goes away."""

    def __init__(self, events):
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._held = contextlib.AsyncExitStack()

    def hold(self, held: contextlib.AsyncExitStack) -> None:
        self._held.push_async_callback(held.aclose)

    async def __call__(self, scope, receive, send):
        async with self._held:
            try:
                await super().__call__(scope, receive, send)
            finally:
                await self.body_iterator.aclose()  # a client gone mid-stream: no decode after this one


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _is_true(value) -> bool:
    return str(value or "").strip().lower() in ("true", "1")


def _status_of(error: WhisperGLError) -> int:
    from .audio import AudioTooLong

    return 413 if isinstance(error, AudioTooLong) else 400


def response_formats() -> tuple[str, ...]:
    """OpenAI's formats, then every other registered output format."""
    return (*OPENAI_FORMATS, *(name for name in FORMATS if name not in OPENAI_FORMATS))


def render(result, response_format: str, *, task: str, words: bool = False):
    """The engine's Transcription in the response format OpenAI's clients expect (json, text,
    verbose_json), or in one of the registered output formats."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format not in ("json", "verbose_json"):
        return Response(result.render(response_format), media_type=FORMATS[response_format].media_type)
    usage = {"type": "duration", "seconds": result.duration}
    if response_format == "json":
        return {"text": result.text, "usage": usage}
    segments = [{"id": index, "seek": round(segment.start * 100), "start": segment.start, "end": segment.end,
                 "text": segment.text, "tokens": [], "temperature": 0.0, "avg_logprob": 0.0,
                 "compression_ratio": 0.0, "no_speech_prob": 0.0}
                for index, segment in enumerate(result.segments)]
    verbose = {"task": task, "language": LANGUAGES.get(result.language, result.language),
               "duration": result.duration, "text": result.text, "segments": segments, "usage": usage}
    if words:
        verbose["words"] = [{"word": word.text.strip(), "start": word.start, "end": word.end}
                            for segment in result.segments for word in segment.words if word.text.strip()]
    return verbose


# --- the server ----------------------------------------------------------------------------------

def app_kinds(spec: str) -> list[str]:
    kinds = [kind.strip() for kind in spec.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in APP_KINDS]
    if unknown:
        raise WhisperGLError(f"unknown app '{unknown[0]}' in --apps: choose from {', '.join(APP_KINDS)}")
    return kinds


def build_server(config: ServeConfig, transcriber=None, cache: Path | None = None):
    """The API with the chosen Gradio apps mounted under /<kind>, all on one engine. `cache`:
    the apps' upload folder (Gradio's cache), bounded as in `whisper-gl app`, by one UploadGuard
    for all of them; with WHISPER_GL_API_KEY set the apps want it too (as a login password)."""
    import gradio as gr

    from .apps import build_app, load_transcriber
    from .uploads import UploadGuard

    kinds = app_kinds(config.apps)
    engine = SharedEngine(transcriber or load_transcriber(config), config.concurrency)
    server = create_api(engine, config)
    if kinds:
        cache = cache or Path(gr.utils.get_upload_folder())
        server.add_middleware(UploadGuard, folder=cache, limits=config.limits)
    for kind in kinds:
        server = gr.mount_gradio_app(server, build_app(kind, engine, config), path=f"/{kind}",
                                     max_file_size=config.limits.max_bytes, **_app_login())
    return server


class SharedEngine:
    """The engine behind the API and every mounted app, with one bound on the transcriptions run at
    once: the API and each app's queue admit their own requests; together they decode at most
    --concurrency at a time."""

    def __init__(self, transcriber, concurrency: int):
        self._transcriber = transcriber
        self._slots = threading.BoundedSemaphore(concurrency)

    def transcribe(self, *args, **kwargs):
        with self._slots:
            return self._transcriber.transcribe(*args, **kwargs)

    def decode_window(self, *args, **kwargs):  # a live transcript's step
        with self._slots:
            return self._transcriber.decode_window(*args, **kwargs)

    def __getattr__(self, name):  # model, backend, language, ...: the engine's own
        if name == "_transcriber":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._transcriber, name)


def _app_login() -> dict:
    """Gradio's login for the mounted apps when a key is set: any user name, the key as password
    (compared in constant time); Gradio then wants its session cookie on every route."""
    key = os.environ.get(API_KEY_ENV, "").encode()
    if not key:
        return {}

    def check(username: str, password: str) -> bool:
        return hmac.compare_digest(password.encode(), key)

    return dict(auth=check, auth_message="Sign in with any user name and this server's API key as the password.")


def listen_address(config: ServeConfig) -> tuple[str, str]:
    """(host, what to tell the user): without a key the API is open, so only this machine by default."""
    keyed = bool(os.environ.get(API_KEY_ENV))
    host = config.host or ("0.0.0.0" if keyed else "127.0.0.1")
    if keyed:
        return host, "API key required"
    if config.host:
        return host, f"no {API_KEY_ENV} set: anyone who reaches {host}:{config.port} can use it"
    return host, f"no {API_KEY_ENV} set, so only this machine can connect (set it, or --host, to change that)"


def serve(config: ServeConfig) -> None:
    """`whisper-gl serve`: the API (and apps) until interrupted."""
    import uvicorn

    from . import shutdown

    host, note = listen_address(config)
    with shutdown.serving():  # SIGTERM like SIGINT; the apps' upload folder removed at exit
        cache = shutdown.kept_folder("whisper-gl-serve-", root=os.environ.get("GRADIO_TEMP_DIR"))
        os.environ["GRADIO_TEMP_DIR"] = str(cache)
        server = build_server(config, cache=cache)
        print(f"serving '{server.state.service.model_id}' at http://{host}:{config.port}/v1 ({note})")
        login = " (sign in with any user name and the API key as password)" if os.environ.get(API_KEY_ENV) else ""
        for kind in app_kinds(config.apps):
            print(f"  {kind} app: http://{host}:{config.port}/{kind}{login}")
        uvicorn.run(server, host=host, port=config.port, log_level="warning")
