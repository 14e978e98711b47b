"""stream=true on an upload against the plain request: same text, same cost?

    .venv/bin/python bench/bench_stream.py [--model DIR] [--audio FILE] [--rounds 2]

`whisper-gl serve`'s API in this process (uvicorn on 127.0.0.1), the recording uploaded as the
`openai` client does it, alternately plain (response_format json) and with stream=true, --rounds
times each (the order alternates, so a shared machine's load falls on both alike). Per request:
wall time to the answer (the last event), time to the first delta, and the text. Printed: median
times, the stream's ratio to the plain request, whether the texts are equal. --output keeps the
rows as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()

import httpx  # noqa: E402

from bench.machine import default_decoding, machine  # noqa: E402
from whisper_gl.api import build_server  # noqa: E402
from whisper_gl.config import ServeConfig  # noqa: E402
from whisper_gl.transcribe import default_model  # noqa: E402


def serve(app) -> tuple[str, object]:
    import uvicorn

    from tests.support import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/v1/audio/transcriptions", server


def request(url: str, model: str, audio: bytes, stream: bool) -> dict:
    data = {"model": model, "language": "gl", **({"stream": "true"} if stream else {})}
    began = time.perf_counter()
    first, text = None, ""
    with httpx.Client(timeout=None) as client, client.stream("POST", url, data=data,
                                                            files={"file": ("audio", audio)}) as answer:
        answer.raise_for_status()
        if not stream:
            text = json.loads(answer.read())["text"]
        for line in answer.iter_lines() if stream else ():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: "):])
            if event["type"] == "transcript.text.delta" and first is None:
                first = time.perf_counter() - began
            if event["type"] == "transcript.text.done":
                text = event["text"]
    return dict(stream=stream, seconds=round(time.perf_counter() - began, 2),
                first_delta=None if first is None else round(first, 2), text=text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=default_model(), help="model (default: %(default)s)")
    parser.add_argument("--audio", default=str(ROOT / "Resources/examples/long.mp3"), help="upload (default: long.mp3)")
    parser.add_argument("--rounds", type=int, default=2, help="requests of each kind (default: %(default)s)")
    parser.add_argument("--long-form", default=None, help="the engine's long-form mode (default: its default)")
    parser.add_argument("--output", default=str(ROOT / "bench/results/stream.json"), help="JSON (default: %(default)s)")
    args = parser.parse_args()

    settings = {"long_form": args.long_form} if args.long_form else {}
    config = ServeConfig(model=args.model, max_minutes=30, max_mb=100, **settings)
    started_on = machine()
    app = build_server(config)
    url, server = serve(app)
    model, audio = app.state.service.model_id, Path(args.audio).read_bytes()
    request(url, model, audio[: len(audio) // 20], stream=False)  # warm-up
    rows = []
    for round_ in range(args.rounds):
        for stream in (False, True) if round_ % 2 == 0 else (True, False):
            rows.append(request(url, model, audio, stream))
            print(("stream" if stream else "plain "), rows[-1]["seconds"], "s", "first delta",
                  rows[-1]["first_delta"], flush=True)
    server.should_exit = True
    plain = statistics.median(row["seconds"] for row in rows if not row["stream"])
    streamed = statistics.median(row["seconds"] for row in rows if row["stream"])
    texts = {row["text"] for row in rows}
    decoding = {**default_decoding(), **settings}
    summary = dict(date=datetime.date.today().isoformat(), machine=started_on, decoding=decoding,
                   audio=Path(args.audio).name, model=model, backend=app.state.service.transcriber.backend,
                   plain_seconds=plain, stream_seconds=streamed, ratio=round(streamed / plain, 3),
                   first_delta=statistics.median(row["first_delta"] for row in rows if row["stream"]),
                   same_text=len(texts) == 1,
                   full_stops={("stream" if row["stream"] else "plain"): row["text"].count(".") for row in rows},
                   rows=rows)
    print(f"plain {plain} s, stream {streamed} s (x{summary['ratio']}), first delta {summary['first_delta']} s, "
          f"same text: {summary['same_text']}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
