"""whisper_gl.stats: the audio-length analysis (numbers, json, histogram, table)."""

import json
import math

import numpy as np
import pytest

from whisper_gl.stats import format_length_table, length_stats, write_length_report


def test_length_stats_numbers():
    durations = [1.0, 2.0, 3.0, 4.0, 40.0, math.nan]  # NaN: an undecodable clip, not counted
    stats = length_stats(durations, window_seconds=30)
    values = np.array(durations[:-1])
    assert stats["count"] == 5
    assert stats["mean"] == pytest.approx(values.mean())
    assert stats["std"] == pytest.approx(values.std())
    assert (stats["min"], stats["median"], stats["max"]) == (1.0, 3.0, 40.0)
    assert (stats["q1"], stats["q3"]) == (2.0, 4.0)
    assert stats["p95"] == pytest.approx(np.percentile(values, 95))
    assert stats["share_over_window"] == pytest.approx(0.2)
    assert length_stats([], 30) == {"count": 0}


def test_report_files_and_table(tmp_path):
    report = write_length_report({"train": [2.0, 3.0, 35.0], "test": [4.0]}, 30, tmp_path)
    saved = json.loads((tmp_path / "audio_lengths.json").read_text())
    assert saved == report
    assert saved["window_seconds"] == 30
    assert saved["all"]["count"] == 4 and saved["train"]["count"] == 3 and saved["test"]["count"] == 1
    assert saved["all"]["share_over_window"] == pytest.approx(0.25)
    png = (tmp_path / "audio_lengths.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000

    table = format_length_table(report).splitlines()
    assert "window 30 s" in table[0]
    assert table[1].split() == ["split", "count", "mean", "std", "min", "q1", "median", "q3", "p95", "max", ">", "window"]
    assert table[3].split()[:2] == ["train", "3"] and table[3].split()[-1] == "33.3%"


def test_table_with_an_empty_split(tmp_path):
    report = write_length_report({"train": [3.0], "test": []}, 10, tmp_path)
    assert format_length_table(report).splitlines()[-1].split()[:2] == ["test", "0"]
