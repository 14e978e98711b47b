"""whisper-gl evaluate: models x test sets through the engine, four consistent reports, clear refusals."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest

from whisper_gl.cli import parse_config
from whisper_gl.config import EvaluateConfig
from whisper_gl.evaluate import evaluate
from whisper_gl.metrics import normalize

REPO = Path(__file__).resolve().parents[1]
GREEDY = ["--beam-size", "1", "--temperatures", "0"]


@pytest.fixture(scope="module")
def test_sets(tmp_path_factory, sample_corpus_dir):
    """A Common Voice folder (3 test clips, one undecodable) and an audiofolder (2 clips)."""
    import shutil

    from whisper_gl.sample_corpus import read_tsv

    root = tmp_path_factory.mktemp("sets")
    rows = read_tsv(sample_corpus_dir / "test.tsv")[:4]
    cv = root / "cv" / "gl"
    (cv / "clips").mkdir(parents=True)
    header = "client_id\tpath\tsentence\n"
    lines = [f"x\t{row['path']}\t{row['sentence']}" for row in rows[:2]] + ["x\tbroken.mp3\tNon se oe."]
    (cv / "test.tsv").write_text(header + "\n".join(lines) + "\n")
    for row in rows[:2]:
        shutil.copy(sample_corpus_dir / "clips" / row["path"], cv / "clips")
    (cv / "clips" / "broken.mp3").write_bytes(b"not audio at all" * 10)
    folder = root / "audiofolder"
    (folder / "test").mkdir(parents=True)  # datasets' audiofolder: split folders, metadata in each
    for row in rows[2:]:
        shutil.copy(sample_corpus_dir / "clips" / row["path"], folder / "test")
    (folder / "test" / "metadata.csv").write_text("file_name,transcription\n" + "".join(
        f"{row['path']},{row['sentence']}\n" for row in rows[2:]))
    return cv, folder


@pytest.fixture(scope="module")
def report(test_sets, base_model_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("evaluation") / "out"
    cv, folder = test_sets
    argv = ["--model", str(base_model_dir), "--model", str(base_model_dir / "ctranslate2"),
            "--dataset", str(cv), "--dataset", str(folder), "--split", "test", "--output-dir", str(output), *GREEDY]
    summaries = evaluate(parse_config(EvaluateConfig, "evaluate", argv))
    return output, summaries


@pytest.mark.slow
def test_two_models_on_two_datasets_write_four_consistent_reports(report, test_sets, base_model_dir):
    output, summaries = report
    assert sorted(p.name for p in output.iterdir()) == ["errors.csv", "metrics.json", "report.md", "wer.png"]
    assert len(summaries) == 4 and (output / "wer.png").stat().st_size > 5000
    with open(output / "errors.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["decoding"]["beam_size"] == 1 and metrics["bootstrap"]["resamples"] == 1000
    report_text = (output / "report.md").read_text()
    for result in metrics["results"]:
        mine = [r for r in rows if r["model"] == result["model"] and r["dataset"] == result["dataset"]
                and not r["error"]]
        assert len(mine) == result["clips"] == 2
        refs = [normalize(r["reference"]) for r in mine]
        hyps = [normalize(r["hypothesis"]) for r in mine]
        assert result["wer"] == pytest.approx(100 * jiwer.wer(refs, hyps))  # report = jiwer on the rows
        assert result["wer_low"] <= result["wer"] <= result["wer_high"]
        line = next(l for l in report_text.splitlines() if l.startswith(f"| {result['model']} | {result['dataset']} |"))
        assert f"{result['wer']:.1f} ({result['wer_low']:.1f}–{result['wer_high']:.1f})" in line
    failed = [r for r in rows if r["error"]]
    assert [(r["path"], r["dataset"]) for r in failed] == [("clips/broken.mp3", str(test_sets[0]))] * 2
    assert "could not decode" in failed[0]["error"] and "broken.mp3" in report_text  # listed, not fatal
    scored = [float(r["wer"]) for r in rows if not r["error"]]
    assert all(a >= b for a, b in zip(scored, scored[1:]))  # worst first
    assert "## Most frequent word confusions" in report_text


@pytest.mark.slow
def test_a_long_recording_is_scored_whole(examples_dir, base_model_dir, tmp_path):
    summaries = evaluate(parse_config(EvaluateConfig, "e", [
        "--model", str(base_model_dir), "--dataset", str(examples_dir / "short.mp3"), "--output-dir",
        str(tmp_path / "out"), *GREEDY]))
    assert summaries[0]["clips"] == 1 and summaries[0]["audio_hours"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--model", "no/such-model-here"], "not a local folder"),
    (["--dataset", "{empty}"], "has no clips in its test split"),
    (["--dataset", "{no_column}"], "no text column"),
    (["--dataset", "{no_column}", "--split", "dev"], "none of the splits dev .* choose them with --split"),
    (["--dataset", "{lonely}"], "needs its transcript beside it, /.*/lonely.txt$"),
    (["--dataset", "{gone}"], "/.*/gone.mp3: missing file$"),
])
def test_bad_input_is_one_clear_line(argv, message, tmp_path, sample_corpus_dir, base_model_dir):
    empty = tmp_path / "empty" / "gl"
    (empty / "clips").mkdir(parents=True)
    (empty / "test.tsv").write_text("client_id\tpath\tsentence\n")
    no_column = tmp_path / "nocolumn"
    no_column.mkdir()
    (no_column / "a.mp3").write_bytes(b"x")
    (no_column / "metadata.csv").write_text("file_name,speaker\na.mp3,x\n")
    (tmp_path / "lonely.mp3").write_bytes(b"x")
    names = {"empty": empty, "no_column": no_column, "lonely": tmp_path / "lonely.mp3", "gone": tmp_path / "gone.mp3"}
    if "{no_column}" in argv and "--split" not in argv:
        argv = [*argv, "--split", "train"]  # an audiofolder without split folders has one split: train
    argv = [part.format(**names) for part in argv]
    defaults = ["--model", str(base_model_dir), "--dataset", str(sample_corpus_dir), "--max-samples", "1"]
    run = subprocess.run([sys.executable, "-m", "whisper_gl", "evaluate", *defaults, "--split", "test", *argv,
                          "--output-dir", str(tmp_path / "out"), *GREEDY],
                         capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(message, last), run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


def test_the_report_says_why_figures_move_and_with_which_seeds(tmp_path):
    from whisper_gl.evaluate import reproducibility

    trained, untrained = tmp_path / "trained", tmp_path / "base"
    trained.mkdir()
    (trained / "results.json").write_text(json.dumps({"hyperparameters": {"seed": 1234}}))
    text = reproducibility([str(trained), str(untrained)], {"temperatures": [0.0, 0.2, 0.4]})
    assert "temperature 0.2, 0.4" in text and "without a fixed seed" in text
    assert f"`{trained}`: seed 1234" in text and f"`{untrained}`: not trained" in text
    assert "not bit-identical" in text and "seed 0" in text  # training drift; the bootstrap's seed
    assert "deterministic here" in reproducibility([str(untrained)], {"temperatures": [0.0]})


@pytest.mark.slow
def test_the_core_install_evaluates_folders_and_a_recording_without_datasets_or_matplotlib(
        test_sets, examples_dir, base_model_dir, tmp_path):
    """`datasets` and matplotlib made unimportable (the core install lacks them), run from another
    folder: a Common Voice folder, an audiofolder and one recording are scored; the report says
    why there is no plot, and the single recording has no interval."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nfor name in ('datasets', 'matplotlib', 'pandas', 'accelerate', 'peft'):\n"
        "    sys.modules[name] = None\n")
    cv, folder = test_sets
    output = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "whisper_gl", "evaluate", "--model", str(base_model_dir),
                          "--dataset", str(cv), "--dataset", str(folder), "--dataset", str(examples_dir / "short.mp3"),
                          "--output-dir", str(output), *GREEDY],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(blocker), "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "note: no wer.png: the plot needs matplotlib" in run.stdout
    assert sorted(p.name for p in output.iterdir()) == ["errors.csv", "metrics.json", "report.md"]
    results = {Path(r["dataset"]).name: r for r in json.loads((output / "metrics.json").read_text())["results"]}
    assert {name: r["clips"] for name, r in results.items()} == {"gl": 2, "audiofolder": 2, "short.mp3": 1}
    assert all("wer_low" in results[name] for name in ("gl", "audiofolder"))
    assert "wer_low" not in results["short.mp3"] and "cer_high" not in results["short.mp3"]
    report = (output / "report.md").read_text()
    line = next(l for l in report.splitlines() if "short.mp3 |" in l)
    assert f"| {results['short.mp3']['wer']:.1f} |" in line and "–" not in line  # no interval, not even x–x
    assert "no wer.png: the plot needs matplotlib" in report and "![WER]" not in report
