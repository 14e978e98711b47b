import json
import re

import pytest

from whisper_gl import WhisperGLError
from whisper_gl.transcript import (FORMATS, Segment, Transcription, Word, format_timestamp, register_format, to_srt,
                                   to_vtt)

SEGMENTS = [Segment(0.0, 2.5, " Bos días."), Segment(2.5, 3661.0421, "Ata logo!"), Segment(4000, 4001, "  ")]


def test_timestamps_have_hours_minutes_seconds_and_milliseconds():
    assert format_timestamp(0) == "00:00:00,000"
    assert format_timestamp(3661.5) == "01:01:01,500"
    assert format_timestamp(59.9996) == "00:01:00,000"  # rounding carries into the minutes
    assert format_timestamp(7.25, ".") == "00:00:07.250"
    assert format_timestamp(-0.01) == "00:00:00,000"


def test_srt_numbers_cues_and_skips_empty_text():
    srt = to_srt(SEGMENTS)
    assert srt == (
        "1\n00:00:00,000 --> 00:00:02,500\nBos días.\n\n"
        "2\n00:00:02,500 --> 01:01:01,042\nAta logo!\n"
    )


def test_vtt_has_header_and_dot_milliseconds():
    vtt = to_vtt(SEGMENTS)
    assert vtt.startswith("WEBVTT\n\n")
    cues = re.findall(r"^(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})$", vtt, flags=re.M)
    assert cues == [("00:00:00.000", "00:00:02.500"), ("00:00:02.500", "01:01:01.042")]
    assert "," not in "".join(start + end for start, end in cues)


def test_highlighted_vtt_has_one_cue_per_word_with_that_word_underlined():
    words = (Word(0.0, 0.4, " Bos", 0.9), Word(0.5, 1.0, " días<", 0.8))
    vtt = to_vtt([Segment(0.0, 1.0, "Bos días<", words), Segment(1.0, 2.0, "Sen palabras")], highlight_words=True)
    assert vtt == ("WEBVTT\n\n"
                   "00:00:00.000 --> 00:00:00.400\n<u>Bos</u> días&lt;\n\n"
                   "00:00:00.500 --> 00:00:01.000\nBos <u>días&lt;</u>\n\n"
                   "00:00:01.000 --> 00:00:02.000\nSen palabras\n")


def transcription(segments) -> Transcription:
    return Transcription(text=" ".join(s.text.strip() for s in segments if s.text.strip()), segments=list(segments),
                         language="gl", duration=4001.0, elapsed=1.0, backend="stub", model="stub")


def test_tsv_has_a_header_then_start_end_in_milliseconds_and_text_per_segment():
    tsv = transcription(SEGMENTS + [Segment(5.0, 6.25, "Con\ttabulador e\nliña nova")]).render("tsv")
    assert tsv == ("start\tend\ttext\n"
                   "0\t2500\tBos días.\n"
                   "2500\t3661042\tAta logo!\n"
                   "5000\t6250\tCon tabulador e liña nova\n")


def test_every_format_renders_by_name_and_an_unknown_one_is_one_line():
    result = transcription(SEGMENTS)
    assert set(FORMATS) >= {"txt", "srt", "vtt", "json", "tsv"}
    assert result.render("txt") == "Bos días. Ata logo!\n"
    assert result.render("srt") == to_srt(SEGMENTS) and result.render("vtt") == to_vtt(SEGMENTS)
    assert json.loads(result.render("json"))["segments"][1]["text"] == "Ata logo!"
    with pytest.raises(WhisperGLError, match="unknown format 'doc': choose one of txt, srt, vtt, json, tsv"):
        result.render("doc")


def test_the_json_format_carries_the_decoders_statistics_or_null():
    decoded = Segment(0.0, 2.5, "Bos días.", tokens=(3401, 2000), temperature=0.2, avg_logprob=-0.41,
                      compression_ratio=0.9, no_speech_prob=0.01)
    segments = json.loads(transcription([decoded, Segment(2.5, 3.0, "Ata logo!")]).render("json"))["segments"]
    assert {key: segments[0][key] for key in ("tokens", "temperature", "avg_logprob", "compression_ratio",
                                              "no_speech_prob")} == dict(
        tokens=[3401, 2000], temperature=0.2, avg_logprob=-0.41, compression_ratio=0.9, no_speech_prob=0.01)
    assert [segments[1][key] for key in ("tokens", "avg_logprob", "no_speech_prob")] == [None, None, None]


@pytest.fixture
def csv_format():
    """A format registered for the length of a test, as a contributor would add one."""
    @register_format("csv", "text/csv", "comma-separated start, end, text")
    def _csv(transcription, options):
        return "".join(f"{s.start},{s.end},{s.text.strip()}\n" for s in transcription.segments)

    yield "csv"
    del FORMATS["csv"]


def test_a_registered_format_is_offered_by_the_command_line_and_the_api(csv_format):
    from whisper_gl.api import response_formats
    from whisper_gl.cli import build_parser
    from whisper_gl.config import TranscribeConfig

    assert transcription(SEGMENTS[:1]).render("csv") == "0.0,2.5,Bos días.\n"
    assert TranscribeConfig(paths=("a.mp3",), format=("csv",)).formats == ("csv",)
    assert "csv" in response_formats()



def test_the_transcribe_help_lists_every_format_with_its_summary():
    from whisper_gl.cli import build_parser

    verbs = build_parser()._subparsers._group_actions[0].choices
    help_text = next(action.help for action in verbs["transcribe"]._actions if action.dest == "format")
    for output in FORMATS.values():
        assert f"{output.name} ({output.summary})" in help_text
