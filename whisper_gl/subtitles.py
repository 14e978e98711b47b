"""Timed transcript pieces and their subtitle formats (SRT, WebVTT)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Word:
    """One word and the seconds it is spoken (from the model's alignment heads)."""

    start: float
    end: float
    text: str  # as the model wrote it: a leading space before most words, punctuation attached
    probability: float | None  # the model's confidence (None where the backend does not give it)


@dataclass(frozen=True)
class Segment:
    """A piece of transcript and the seconds of audio it covers; its words when they were timed."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


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
