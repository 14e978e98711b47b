"""A transcript, and the file formats it is written in.

`Transcription` is what the engine returns for a recording: its text, timed `Segment`s (with
their `Word`s when words were timed) and how it was made. The formats it can be written in
are registered here by name, like openai-whisper's writers:

    result.render("srt")                     # any name in FORMATS: txt, srt, vtt, json, tsv
    result.render("vtt", highlight_words=True)

The batch command (`--format`), the single-file command, the apps' downloads and the API's
`response_format` all read FORMATS: a format added below with `@output_format` is offered by
every one of them.
"""

from __future__ import annotations

import dataclasses
import html
import json
from dataclasses import dataclass
from typing import Callable, Iterable

from . import WhisperGLError


@dataclass(frozen=True)
class Word:
    """One word and the seconds it is spoken (from the model's alignment heads)."""

    start: float
    end: float
    text: str  # as the model wrote it: a leading space before most words, punctuation attached
    probability: float | None  # the model's confidence (None where the backend does not give it)


@dataclass(frozen=True)
class Segment:
    """A piece of transcript and the seconds of audio it covers; its words when they were timed.

    The rest is what the decoder said of the window or chunk the segment came from (shared by the
    segments of one decode, as in openai-whisper): None where a backend cannot tell, never a
    made-up number."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    tokens: tuple[int, ...] | None = None  # the segment's text tokens (timestamp tokens left out)
    temperature: float | None = None  # of the attempt that was kept (the fallback's)
    avg_logprob: float | None = None  # mean log-probability of the attempt's tokens
    compression_ratio: float | None = None  # zlib ratio of the attempt's text (high: a loop)
    no_speech_prob: float | None = None  # the model's probability of <|nospeech|> at the window's start


@dataclass
class Transcription:
    """Text and timed segments of one recording, with what produced them and how fast."""

    text: str
    segments: list[Segment]
    language: str
    duration: float  # seconds of audio
    elapsed: float  # seconds spent, audio decoding included
    backend: str
    model: str

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio time (below 1: faster than real time)."""
        return self.elapsed / self.duration if self.duration else 0.0

    def to_dict(self) -> dict:
        """Everything but the timing of the run, in plain types (the JSON output)."""
        return {"text": self.text, "language": self.language, "duration": self.duration, "model": self.model,
                "backend": self.backend, "segments": [dataclasses.asdict(segment) for segment in self.segments]}

    def render(self, format: str, *, highlight_words: bool = False) -> str:
        """The transcript as a file of a registered format (FORMATS)."""
        return output_format(format).render(self, RenderOptions(highlight_words=highlight_words))


# --- the formats -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderOptions:
    """What a caller may ask of a format beyond the transcript itself."""

    highlight_words: bool = False  # vtt: one cue per timed word, that word underlined


@dataclass(frozen=True)
class OutputFormat:
    """A file format a transcript is written in: its name is the --format / response_format value
    and the file's suffix."""

    name: str
    media_type: str  # what an HTTP server answers it as
    summary: str  # one line for --help and the docs
    render: Callable[[Transcription, RenderOptions], str]


FORMATS: dict[str, OutputFormat] = {}


def register_format(name: str, media_type: str, summary: str):
    """Decorator: make `render(transcription, options) -> str` the format `name` everywhere."""

    def register(render: Callable[[Transcription, RenderOptions], str]):
        FORMATS[name] = OutputFormat(name, media_type, summary, render)
        return render

    return register


def output_format(name: str) -> OutputFormat:
    """The registered format `name`, or a one-line error naming those there are."""
    if name not in FORMATS:
        raise WhisperGLError(f"unknown format '{name}': choose one of {', '.join(FORMATS)}")
    return FORMATS[name]


@register_format("txt", "text/plain; charset=utf-8", "the text, on one line")
def _text(transcription: Transcription, options: RenderOptions) -> str:
    return transcription.text + "\n" if transcription.text else ""


@register_format("srt", "application/x-subrip", "SubRip subtitles, a cue per segment")
def _srt(transcription: Transcription, options: RenderOptions) -> str:
    return to_srt(transcription.segments)


@register_format("vtt", "text/vtt; charset=utf-8", "WebVTT subtitles (a cue per word with --highlight-words)")
def _vtt(transcription: Transcription, options: RenderOptions) -> str:
    return to_vtt(transcription.segments, options.highlight_words)


@register_format("json", "application/json", "text, language, duration and the segments (and their words)")
def _json(transcription: Transcription, options: RenderOptions) -> str:
    return json.dumps(transcription.to_dict(), ensure_ascii=False, indent=1) + "\n"


@register_format("tsv", "text/tab-separated-values; charset=utf-8",
                 "a row per segment: start and end in milliseconds, then the text")
def _tsv(transcription: Transcription, options: RenderOptions) -> str:
    # openai-whisper's layout (integer milliseconds), so spreadsheets and its tools read it.
    rows = [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{_one_line(s.text)}"
            for s in transcription.segments if s.text.strip()]
    return "\n".join(["start\tend\ttext", *rows]) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


# --- subtitle timing -----------------------------------------------------------------------------

def format_timestamp(seconds: float, decimal_marker: str = ",") -> str:
    """`HH:MM:SS,mmm` (SRT) or, with `decimal_marker="."`, `HH:MM:SS.mmm` (WebVTT)."""
    milliseconds = max(0, round(seconds * 1000))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def _cue(start: float, end: float, text: str, decimal_marker: str) -> str:
    return f"{format_timestamp(start, decimal_marker)} --> {format_timestamp(end, decimal_marker)}\n{text}\n"


def _cues(segments: Iterable[Segment], decimal_marker: str) -> list[str]:
    # an empty cue is invalid in both formats
    return [_cue(s.start, s.end, s.text.strip(), decimal_marker) for s in segments if s.text.strip()]


def _highlighted_cues(segment: Segment) -> list[str]:
    """One cue per word, each showing the whole segment with that word underlined (as
    openai-whisper's --highlight_words); a segment without timed words stays one cue."""
    words = [html.escape(word.text.strip(), quote=False) for word in segment.words]  # cue text is HTML-like
    if not any(words):
        return _cues([segment], ".")
    return [_cue(word.start, word.end, " ".join(f"<u>{text}</u>" if i == index else text
                                               for i, text in enumerate(words) if text), ".")
            for index, (word, text) in enumerate(zip(segment.words, words)) if text]


def to_srt(segments: Iterable[Segment]) -> str:
    """SubRip: numbered cues, comma before the milliseconds."""
    return "\n".join(f"{number}\n{cue}" for number, cue in enumerate(_cues(segments, ","), start=1))


def to_vtt(segments: Iterable[Segment], highlight_words: bool = False) -> str:
    """WebVTT: a `WEBVTT` header, then cues with a dot before the milliseconds; with
    `highlight_words`, one cue per timed word with that word underlined."""
    if not highlight_words:
        return "\n".join(["WEBVTT\n", *_cues(segments, ".")])
    return "\n".join(["WEBVTT\n", *(cue for segment in segments for cue in _highlighted_cues(segment))])
