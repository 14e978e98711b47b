"""Timed transcript pieces and their subtitle formats (SRT, WebVTT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Segment:
    """A piece of transcript and the seconds of audio it covers."""

    start: float
    end: float
    text: str


def format_timestamp(seconds: float, decimal_marker: str = ",") -> str:
    """`HH:MM:SS,mmm` (SRT) or, with `decimal_marker="."`, `HH:MM:SS.mmm` (WebVTT)."""
    milliseconds = max(0, round(seconds * 1000))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def _cues(segments: Iterable[Segment], decimal_marker: str) -> list[str]:
    cues = []
    for segment in segments:
        text = segment.text.strip()
        if text:  # an empty cue is invalid in both formats
            timing = f"{format_timestamp(segment.start, decimal_marker)} --> {format_timestamp(segment.end, decimal_marker)}"
            cues.append(f"{timing}\n{text}\n")
    return cues


def to_srt(segments: Iterable[Segment]) -> str:
    """SubRip: numbered cues, comma before the milliseconds."""
    return "\n".join(f"{number}\n{cue}" for number, cue in enumerate(_cues(segments, ","), start=1))


def to_vtt(segments: Iterable[Segment]) -> str:
    """WebVTT: a `WEBVTT` header, then cues with a dot before the milliseconds."""
    return "\n".join(["WEBVTT\n", *_cues(segments, ".")])
