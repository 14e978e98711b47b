import re

from whisper_gl.subtitles import Segment, format_timestamp, to_srt, to_vtt

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
