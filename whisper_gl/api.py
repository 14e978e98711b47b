"""An OpenAI-compatible transcription API (and the Gradio apps) on one server, one model in memory.

    whisper-gl serve --model artifacts/model --apps microphone,file,youtube

    POST /v1/audio/transcriptions   multipart, as OpenAI documents it: file, model, language,
                                    prompt, response_format (json, text, verbose_json, and every
                                    output format of whisper_gl.transcript: srt, vtt, tsv, ...),
                                    temperature, timestamp_granularities[] (word, segment),
                                    stream (true: server-sent events transcript.text.delta/done)
    POST /v1/audio/translations     the same, into English (Whisper's translate task), where the
                                    model can translate: a fine-tune trained to transcribe only
                                    is refused (400); /v1/models says which tasks it does
    GET  /v1/models                 the served model, its tasks and the names it answers to
    GET  /health                    no key needed
    /microphone /file /youtube      the Gradio apps, with --apps

Any tool that speaks OpenAI's audio API (the `openai` clients, Open WebUI, editors with a
"Whisper API" setting) works with base_url http://HOST:PORT/v1, and OpenAI's own model names
(whisper-1, gpt-4o-transcribe, gpt-4o-mini-transcribe; --model-aliases) are taken as the
served model's. Errors have OpenAI's shape, {"error": {"message", "type", "param", "code"}},
with its status codes; a missing or malformed field is a 400 naming it; a fault of ours is a
500 "server_error" whose details go to the server log only.

Every client is bounded in count and time. A request takes its place in the queue
(--concurrency transcribing, --queue-size waiting, a request still uploading included, at most
--places-per-client per client address; past that 429) before a byte of its body is read; a
declared body over --max-mb is refused (413) unread, and the body is counted while it
arrives, whatever it claims, under a deadline and a minimum rate (408: a client that trickles
its upload gives its place back). The upload is decoded from its spooled temporary file, which
ffmpeg can seek in (an MP4 with its index at the end), under the duration cap. On SIGTERM
nothing new is admitted, what fits in --shutdown-timeout is finished and the rest answered
503 (whisper_gl.webserver). With WHISPER_GL_API_KEY set every /v1 request needs
`Authorization: Bearer <key>`, and the mounted apps Gradio's login with the key as password
(compared in constant time, never logged). The API and the apps share one engine, one bound
of --concurrency transcriptions at once (SharedEngine) and one UploadGuard. There is no
transcription logic here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import (  # FastAPI reads the routes' annotations: they must resolve here
    FastAPI,
    Request,
)
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from . import GENERIC_FAILURE, WhisperGLError
from .config import APP_KINDS, TASKS, MediaLimits, ServeConfig, check_language
from .transcript import FORMATS
from .uploads import FORM_OVERHEAD, BodyTooLarge, BodyTooSlow, bounded_receive, content_length
from .window import SAMPLING_RATE

logger = logging.getLogger(__name__)

API_KEY_ENV = "WHISPER_GL_API_KEY"
# OpenAI's own response formats; every other output format registered in whisper_gl.transcript
# (srt, vtt, tsv, ...) is served under its name too.
OPENAI_FORMATS = ("json", "text", "verbose_json")
AUDIO_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/translations")


@dataclass
class ApiError(Exception):
    """An error answered in OpenAI's shape. `close`: the connection is closed after the answer
    (given before the request's body was read, which is then never read)."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    close: bool = False

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Connection": "close"} if self.close else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


class BodyBounds:
    """ASGI middleware: an audio request's body is counted as it arrives and cut off past the
    cap plus the form's few bytes (Content-Length is a claim; chunked bodies have none), and
    must arrive within the upload deadline at the minimum rate (uploads.bounded_receive)."""

    def __init__(self, app, limits: MediaLimits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in AUDIO_ROUTES:
            return await self.app(scope, receive, send)
        return await self.app(scope, bounded_receive(receive, self.limits.max_bytes + FORM_OVERHEAD, self.limits), send)


def served_model_id(config: ServeConfig, model: str) -> str:
    """The id clients name in `model`: --served-model-name, else the model's folder name or Hub id."""
    if config.served_model_name:
        return config.served_model_name
    path = Path(model)
    return path.name if path.exists() else model


def model_tasks(folder: Path) -> tuple[str, ...]:
    """What a Whisper checkpoint can be asked to do, from what training wrote into it: a fine-tune
    made here says its task in results.json, any fine-tune done with transformers' recipe sets it in
    generation_config.json; an untuned checkpoint does what its generation config offers (a
    multilingual one transcribes and translates, an English-only one transcribes)."""
    folder = Path(folder)
    folders = [folder, folder.parent] if folder.name == "ctranslate2" else [folder]  # an export inside its model
    for place in folders:
        trained = _json(place / "results.json").get("task") or _json(place / "generation_config.json").get("task")
        if trained in TASKS:
            return (trained,)
        generation = _json(place / "generation_config.json")
        if generation:
            offered = generation.get("task_to_id", {}) if generation.get("is_multilingual", True) else {}
            return tuple(task for task in TASKS if task in offered) or ("transcribe",)
    return TASKS  # nothing to go by (a bare CTranslate2 export): let the client try


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def create_api(transcriber, config: ServeConfig):
    """The FastAPI app: the OpenAI routes over `transcriber` (a whisper_gl.transcribe.Transcriber)."""
    api = FastAPI(title="whisper-gl", description="OpenAI-compatible speech to text", docs_url=None, redoc_url=None)
    service = TranscriptionService(transcriber, config, served_model_id(config, transcriber.model))
    api.state.service = service
    api.add_middleware(BodyBounds, limits=config.limits)

    @api.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return error.response()

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
    """What the routes share: the key, the caps, the queue, the shutdown, and the engine."""

    def __init__(self, transcriber, config: ServeConfig, model_id: str):
        self.transcriber, self.config, self.model_id = transcriber, config, model_id
        self.names = (model_id, *(alias for alias in config.aliases if alias != model_id))
        folder = getattr(transcriber, "folder", None)
        self.tasks = model_tasks(folder) if folder is not None else TASKS
        self._key = os.environ.get(API_KEY_ENV, "").encode()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._admitted = 0  # requests past the key check: receiving their body, waiting or transcribing
        self._by_client: dict[str, int] = {}
        self._closing = asyncio.Event()  # set when the server starts to stop
        self._answer_by = math.inf  # then: when what is still in progress is answered 503 (time.monotonic())

    def model_card(self) -> dict:
        """OpenAI's model object, with what this one does: the tasks it was trained for (a
        fine-tune that only transcribes cannot translate) and the other names it answers to."""
        return {"id": self.model_id, "object": "model", "created": 0, "owned_by": "whisper-gl",
                "tasks": list(self.tasks), "aliases": list(self.names[1:]),
                "language": self.transcriber.language or "auto"}

    def authorize(self, request) -> None:
        if not self._key:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'.", code="invalid_api_key",
                           close=True)
        if not hmac.compare_digest(given.strip().encode(), self._key):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key", close=True)

    def check_model(self, model: str | None) -> None:
        if not model:
            raise ApiError(400, "Name the model in the multipart field 'model' (e.g. "
                                f"'{self.model_id}' or 'whisper-1').", param="model")
        if model not in self.names:
            also = f" (also accepted: {', '.join(self.names[1:])})" if len(self.names) > 1 else ""
            raise ApiError(404, f"The model '{model}' does not exist; this server serves '{self.model_id}'{also}.",
                           param="model", code="model_not_found")

    def check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise ApiError(400, f"The model '{self.model_id}' was trained to {' and '.join(self.tasks)} only: it "
                                f"cannot {task}. Use /v1/audio/transcriptions (GET /v1/models lists what it does).",
                           param="model", code="unsupported_task", close=True)

    def begin_shutdown(self, answer_by: float) -> None:
        """The server is stopping (whisper_gl.webserver): admit nothing more, and answer what is
        still waiting or transcribing at `answer_by` (time.monotonic()) with a 503."""
        self._answer_by = answer_by
        self._closing.set()

    async def handle(self, request, *, task: str):
        """One audio request: the key and the task, then a place in the queue, before a byte of the
        body is read; the upload stays in its spooled temporary file until a transcription slot is
        free. A stream (stream=true) keeps its place and its slot until its last event."""
        self.authorize(request)
        self.check_task(task)
        declared = content_length(request.scope)
        if declared is not None and declared > self.config.limits.max_bytes + FORM_OVERHEAD:
            raise self._too_large()
        async with contextlib.AsyncExitStack() as held:
            await held.enter_async_context(self._admission(_client_address(request.scope)))
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
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "Send the audio as the multipart field 'file' (a file part, with a filename).",
                           param="file")
        self.check_model(form.get("model"))
        options = self._options(form, task)
        response_format = form.get("response_format") or "json"
        if response_format not in response_formats():
            raise ApiError(400, f"response_format must be one of {', '.join(response_formats())}",
                           param="response_format")
        if _is_true(form.get("stream")):
            if response_format not in ("json", "text") or options.get("word_timestamps"):
                raise ApiError(400, "stream=true sends text events: response_format json or text, no word timestamps",
                               param="stream")
            await self._until_closing(self._slots.acquire())  # held by the stream until its last event
            held.callback(self._slots.release)
            waveform = await self._waveform(upload)
            await upload.close()  # decoded: its spooled file need not last as long as the stream
            return EventStream(self._events(waveform, options))
        result = await self._until_closing(self._transcribe(upload, options))
        return render(result, response_format, task=task, words=options.get("word_timestamps", False))

    async def _transcribe(self, upload, options: dict):
        async with self._slots:
            waveform = await self._waveform(upload)
            return await self._run(self.transcriber.transcribe, waveform, **options)

    async def _form(self, request):
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiError(400, "Send the request as multipart/form-data, the audio in the field 'file' "
                                f"(got {content_type[:60] or 'no Content-Type'}).", param="file", close=True)
        try:
            form = await request.form(max_files=1, max_fields=16)
        except BodyTooLarge:
            raise self._too_large() from None
        except BodyTooSlow as error:
            logger.info("an upload was refused: %s", error)
            raise ApiError(408, f"{str(error).capitalize()}: send the file at a steady pace.", param="file",
                           code="upload_too_slow", close=True) from None
        except Exception as error:  # noqa: BLE001 - malformed multipart
            raise ApiError(400, f"Could not read the multipart form ({error}): send the audio in the field "
                                "'file'.", param="file", close=True) from None
        for name, value in form.multi_items():
            if name != "file" and not isinstance(value, str):
                await form.close()
                raise ApiError(400, f"'{name}' must be a text field, not a file.", param=name)
        return form

    def _too_large(self) -> ApiError:
        return ApiError(413, f"The request is larger than the {self.config.limits.max_bytes / 1e6:g} MB limit.",
                        param="file", code="file_too_large", close=True)

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
        """The upload's audio, decoded from its spooled temporary file only now (inside a slot),
        under the duration cap."""
        return await self._run(self._decode, upload.file)

    async def _run(self, function, *args, **kwargs):
        """`function` in a worker thread, its WhisperGLError answered as OpenAI's 400 or 413. A
        request abandoned at the shutdown deadline does not wait for it (abandon_on_cancel)."""
        from anyio import to_thread

        try:
            return await to_thread.run_sync(lambda: function(*args, **kwargs), abandon_on_cancel=True)
        except WhisperGLError as error:
            raise ApiError(_status_of(error), str(error), param="file") from None

    async def _until_closing(self, awaitable):
        """`awaitable`'s result, or a 503 when the server is stopping and its deadline comes first
        (the work is cancelled: a slot it held is given back)."""
        work = asyncio.ensure_future(awaitable)
        deadline = asyncio.ensure_future(self._shutdown_deadline())
        try:
            done, _ = await asyncio.wait({work, deadline}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            raise
        finally:
            deadline.cancel()
        if work in done:
            return work.result()
        work.cancel()
        raise self._shutting_down()

    async def _shutdown_deadline(self) -> None:
        await self._closing.wait()
        await asyncio.sleep(max(0.0, self._answer_by - time.monotonic()))

    def _shutting_down(self) -> ApiError:
        return ApiError(503, "The server is shutting down: try again in a moment.", type="server_error",
                        code="server_shutting_down", close=True)

    async def _events(self, waveform, options: dict):
        """The stream's server-sent events, as OpenAI sends them: a `transcript.text.delta` for each
        segment as the engine decodes it (Transcriber.transcribe_segments: the very decode of the
        plain request, so the same text at the same cost), then `transcript.text.done` with the
        whole text. A failure midway (or the shutdown deadline) is an `error` event (the status line
        has gone out)."""
        segments = None
        try:
            segments = self.transcriber.transcribe_segments(waveform, **options)
            texts = []
            while (segment := await self._until_closing(self._run(next, segments, None))) is not None:
                yield _event({"type": "transcript.text.delta", "delta": (" " if texts else "") + segment.text})
                texts.append(segment.text)
            yield _event({"type": "transcript.text.done", "text": " ".join(texts),
                          "usage": {"type": "duration", "seconds": round(len(waveform) / SAMPLING_RATE, 3)}})
        except ApiError as error:
            yield _event(error.body())
        except Exception:  # noqa: BLE001 - a fault of ours, mid-stream
            logger.exception("streamed transcription failed")
            yield _event(ApiError(500, GENERIC_FAILURE, type="server_error").body())
        finally:
            # A client gone: no decode after this one. (Cancelled while a worker thread still decodes,
            # the generator is running and cannot be closed here: it ends with that step, unreferenced.)
            if segments is not None:
                with contextlib.suppress(ValueError):
                    segments.close()

    def _decode(self, audio):
        """Decoded under the duration cap, whatever the file claims (the apps' rule)."""
        from .audio import read_audio

        return read_audio(audio, max_seconds=self.config.limits.max_seconds).waveform

    @contextlib.asynccontextmanager
    async def _admission(self, client: str):
        """A place among the --concurrency requests transcribing and the --queue-size waiting, and
        among the --places-per-client of this client, taken before the body is read (a request
        still uploading counts): past that, 429 at once; 503 once the server is stopping."""
        if self._closing.is_set():
            raise self._shutting_down()
        if self._admitted >= self.config.concurrency + self.config.queue_size:
            raise ApiError(429, "The server is busy: try again in a moment.", type="rate_limit_error",
                           code="server_busy", close=True)
        cap = self.config.places_per_client
        if cap and self._by_client.get(client, 0) >= cap:
            raise ApiError(429, f"Too many requests from this address at once (at most {cap}): wait for one to "
                                "finish.", type="rate_limit_error", code="rate_limit_exceeded", close=True)
        self._admitted += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1
        try:
            yield
        finally:
            self._admitted -= 1
            self._by_client[client] -= 1
            if not self._by_client[client]:
                del self._by_client[client]


def _client_address(scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


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
    segments = [verbose_segment(index, segment) for index, segment in enumerate(result.segments)]
    verbose = {"task": task, "language": LANGUAGES.get(result.language, result.language),
               "duration": result.duration, "text": result.text, "segments": segments, "usage": usage}
    if words:
        verbose["words"] = [{"word": word.text.strip(), "start": word.start, "end": word.end}
                            for segment in result.segments for word in segment.words if word.text.strip()]
    return verbose


def verbose_segment(index: int, segment) -> dict:
    """A segment as OpenAI's verbose_json has it: the decoder's own statistics of the window it came
    from, null where the backend could not give one (never a made-up 0.0); times as in every format."""
    tokens = list(segment.tokens) if segment.tokens is not None else None
    return {"id": index, "seek": round(segment.start * 100), "start": segment.start, "end": segment.end,
            "text": segment.text, "tokens": tokens, "temperature": segment.temperature,
            "avg_logprob": segment.avg_logprob, "compression_ratio": segment.compression_ratio,
            "no_speech_prob": segment.no_speech_prob}


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

    def transcribe_segments(self, *args, **kwargs):
        """A stream=true request's segments, each decode step in a slot (as a live transcript's)."""
        stream = self._transcriber.transcribe_segments(*args, **kwargs)

        def bounded():
            try:
                while True:
                    with self._slots:
                        segment = next(stream, None)
                    if segment is None:
                        return
                    yield segment
            finally:
                stream.close()

        return bounded()

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
    """`whisper-gl serve`: the API (and apps) until SIGTERM or Ctrl-C, then a shutdown within
    --shutdown-timeout that leaves no file."""
    from . import shutdown, webserver

    host, note = listen_address(config)
    with shutdown.serving():  # SIGTERM like SIGINT; the apps' upload folder removed at exit
        cache = shutdown.kept_folder("whisper-gl-serve-", root=os.environ.get("GRADIO_TEMP_DIR"))
        os.environ["GRADIO_TEMP_DIR"] = str(cache)
        from .apps import ending_heartbeats, ready_engine  # Gradio reads GRADIO_TEMP_DIR as it is imported

        transcriber = ready_engine(config)
        server = build_server(config, transcriber, cache=cache)
        service = server.state.service
        print(f"serving '{service.model_id}' at http://{host}:{config.port}/v1 ({note})", flush=True)
        tasks = " and ".join(task + "s" for task in service.tasks)
        print(f"  model {transcriber.model} {transcriber.startup}; it {tasks}", flush=True)
        login = " (sign in with any user name and the API key as password)" if os.environ.get(API_KEY_ENV) else ""
        for kind in app_kinds(config.apps):
            print(f"  {kind} app: http://{host}:{config.port}/{kind}{login}", flush=True)
        webserver.run(server, host, config.port, config,
                      on_shutdown=[service.begin_shutdown, ending_heartbeats(server)])
