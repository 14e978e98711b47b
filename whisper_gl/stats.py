"""Audio-length analysis: the numbers the window (--max-audio-seconds) is chosen from.

The seed looked at the length distribution of Common Voice before fixing Whisper's 30 s
window; here it is written next to the features (audio_lengths.json + a histogram with the
window marked) and printed as a small table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

STAT_NAMES = ("count", "mean", "std", "min", "q1", "median", "q3", "p95", "max", "share_over_window")


def length_stats(durations: Sequence[float], window_seconds: float) -> dict:
    """count, mean, std, min, quartiles, p95, max (seconds) and the share longer than the window."""
    values = np.asarray([d for d in durations if d == d], dtype=np.float64)  # drop NaN (undecodable)
    if values.size == 0:
        return {"count": 0}
    q1, median, q3, p95 = np.percentile(values, [25, 50, 75, 95])
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "p95": float(p95),
        "max": float(values.max()),
        "share_over_window": float((values > window_seconds).mean()),
    }


def write_length_report(durations: Mapping[str, Sequence[float]], window_seconds: float,
                        folder: str | Path) -> dict:
    """Write audio_lengths.json and audio_lengths.png for each split and all splits together."""
    folder = Path(folder)
    everything = [d for split in durations.values() for d in split]
    report = {
        "window_seconds": window_seconds,
        "all": length_stats(everything, window_seconds),
        **{split: length_stats(values, window_seconds) for split, values in durations.items()},
    }
    (folder / "audio_lengths.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_lengths(everything, window_seconds, folder / "audio_lengths.png")
    return report


def plot_lengths(durations: Sequence[float], window_seconds: float, path: str | Path) -> None:
    """Histogram of clip lengths with the window drawn as a vertical line."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    values = [d for d in durations if d == d]
    figure, axes = plt.subplots(figsize=(7, 4))
    # Fixed-width bins from 0 to past the window, so the window is always in view.
    upper = max([window_seconds, *values]) * 1.02
    axes.hist(values, bins=np.linspace(0, upper, 61), color="#4c72b0", edgecolor="white")
    axes.axvline(window_seconds, color="#c44e52", linestyle="--", label=f"window: {window_seconds:g} s")
    over = sum(d > window_seconds for d in values)
    axes.set(title=f"Clip lengths ({len(values)} clips, {over} longer than the window)",
             xlabel="seconds", ylabel="clips")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def format_length_table(report: Mapping[str, Mapping]) -> str:
    """The report as a fixed-width table: one row per split, seconds with one decimal."""
    header = ["split", "count", "mean", "std", "min", "q1", "median", "q3", "p95", "max", "> window"]
    rows = [header]
    for split, stats in report.items():
        if split == "window_seconds" or not isinstance(stats, Mapping):
            continue
        if not stats.get("count"):
            rows.append([split, "0"] + ["-"] * (len(header) - 2))
            continue
        rows.append([split, str(stats["count"])]
                    + [f"{stats[name]:.1f}" for name in STAT_NAMES[1:-1]]
                    + [f"{100 * stats['share_over_window']:.1f}%"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    return f"audio lengths in seconds (window {report['window_seconds']:g} s)\n" + "\n".join(lines)
