import re

from whisper_gl.subtitles import Segment, Word, format_timestamp, to_srt, to_vtt

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
