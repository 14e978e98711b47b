"""The parts of a batch run (`whisper-gl transcribe ... --output-dir`), shared by the two ways it
runs: one input after the other in this process (whisper_gl.batch) and on a Ray cluster's actors
(whisper_gl.cluster).

A `Job` is one input and where its outputs go; the `Ledger` (OUT/.whisper-gl-done.jsonl)
records every finished input with its fingerprint (the source's size and mtime, the model's
files, the options), so a rerun skips what is done; the steps of one job (is it pending, write
its outputs atomically, why it failed) and the `Summary` printed at the end live here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Iterator

from . import WhisperGLError, error_line
from .config import DecodingOptions, ModelOptions, TranscribeConfig, subset

LEDGER_NAME = ".whisper-gl-done.jsonl"
SKIPPED_NAME = ".whisper-gl-skipped.tsv"  # beside the ledger: every file skipped as not audio or video
SKIPPED_SHOWN = 10  # of them named in the summary
NOT_MEDIA = "not audio or video"
NAMED_NOT_DONE = 20  # a stopped run names this many of the inputs it did not reach, then counts the rest


@dataclass(frozen=True)
class Job:
    """One input to transcribe and where its outputs go under the output folder (no suffix)."""

    source: Path
    output: PurePath


@dataclass
class Summary:
    """How a run went: what `whisper-gl transcribe` prints at the end."""

    transcribed: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not audio or video
    failures: list[tuple[str, str]] = field(default_factory=list)
    not_done: list[str] = field(default_factory=list)  # inputs a stopped run did not reach (whisper_gl.cluster)
    audio_seconds: float = 0.0
    decoding_seconds: float = 0.0

    @property
    def not_media(self) -> int:
        return len(self.skipped)

    @property
    def real_time_factor(self) -> float:
        return self.decoding_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def add_transcribed(self, audio_seconds: float, decoding_seconds: float) -> None:
        self.transcribed += 1
        self.audio_seconds += audio_seconds
        self.decoding_seconds += decoding_seconds

    def lines(self, skipped_list: Path | None = None) -> list[str]:
        """The report: the counts, every failure, the first skipped files (all of them in
        `skipped_list`), and what a stopped run did not reach. Every name escaped."""
        lines = [f"transcribed {plural(self.transcribed, 'file')}, {self.audio_seconds / 3600:.2f} h of audio in "
                 f"{self.decoding_seconds:.1f} s (RTF {self.real_time_factor:.3f}); skipped {self.already_done} "
                 f"already done and {self.not_media} {NOT_MEDIA}; {len(self.failures)} failed"]
        lines += [failure_line(path, reason, indent="  ") for path, reason in self.failures]
        shown = self.skipped[:SKIPPED_SHOWN]
        lines += [f"  skipped, {NOT_MEDIA}: {printable(path)}" for path, _ in shown]
        listed = f"listed in {printable(str(skipped_list))}" if skipped_list else ""
        if len(self.skipped) > len(shown):
            lines.append(f"  ... and {len(self.skipped) - len(shown)} more" + (f", all {listed}" if listed else ""))
        elif shown and listed:
            lines.append(f"  ({listed})")
        if self.not_done:
            lines.append(f"{len(self.not_done)} not done (the run stopped first; the same command again does "
                         "exactly these):")
            lines += [f"  not done: {printable(path)}" for path in self.not_done[:NAMED_NOT_DONE]]
            if len(self.not_done) > NAMED_NOT_DONE:
                lines.append(f"  ... and {len(self.not_done) - NAMED_NOT_DONE} more")
        return lines

    def error(self, inputs: int) -> WhisperGLError | None:
        """What ends a run in which inputs failed or were not done (None: all went well)."""
        problems = [f"{len(self.failures)} of {plural(inputs, 'input')} failed"] if self.failures else []
        problems += [f"{len(self.not_done)} not done"] if self.not_done else []
        return WhisperGLError(f"{', '.join(problems)} (listed above)") if problems else None


def printable(text: str) -> str:
    """`text` with every character a terminal or a log would act on (control characters such as a
    newline or an escape, line separators, bidirectional overrides) written as its escape: a file
    name cannot forge a line of the report or restyle the terminal."""
    return "".join(character if character.isprintable() else ascii(character)[1:-1] for character in text)


def failure_line(path: str | Path, reason: str, indent: str = "") -> str:
    return f"{indent}failed: {printable(str(path))}: {printable(reason)}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def write_skipped(output_dir: Path, skipped: list[tuple[str, str]]) -> Path | None:
    """OUT/.whisper-gl-skipped.tsv: every file of this run skipped as not audio or video (path and
    reason, escaped); none skipped: no such file (an earlier run's is removed)."""
    from .store import atomic_write_text

    path = output_dir / SKIPPED_NAME
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    rows = ["path\treason"] + [f"{printable(source)}\t{printable(reason)}" for source, reason in skipped]
    text = "\n".join(rows) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # a rerun rewrites nothing it has
        atomic_write_text(path, text)
    return path


def settings_fingerprint(transcriber, config: TranscribeConfig) -> str:
    """Changes with the model's files, the backend and weight type, the decoding options and
    the outputs asked for: what makes an earlier output stale."""
    model_files = [path for path in (*transcriber.folder.glob("*"), *transcriber.folder.glob("ctranslate2/*"))
                   if path.is_file()]
    settings = {
        "model": sorted((str(path.relative_to(transcriber.folder)), path.stat().st_size, path.stat().st_mtime_ns)
                        for path in model_files),
        "backend": transcriber.backend, "compute_type": transcriber.options.compute_type,
        "decoding": dataclasses.asdict(transcriber.decoding),
        "outputs": {"format": config.formats, "highlight_words": config.highlight_words},
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def source_identity(path: Path) -> dict:
    status = path.stat()
    return {"source": str(path.resolve()), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


class Ledger:
    """OUT/.whisper-gl-done.jsonl: one line per finished input, appended after its outputs are
    in place; a line cut by a crash is ignored."""

    def __init__(self, output_dir: Path):
        self.path = output_dir / LEDGER_NAME
        self.done: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    entry = json.loads(line)
                    self.done[entry["output"]] = entry

    def is_done(self, job: Job, record: dict, outputs: list[Path]) -> bool:
        """Finished from the same source with the same settings, and every output still there."""
        entry = self.done.get(str(job.output), {})
        return all(entry.get(key) == value for key, value in record.items()) and all(path.is_file() for path in outputs)

    def add(self, job: Job, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as ledger:  # one short write: appended whole
            ledger.write(json.dumps({**record, "output": str(job.output)}, ensure_ascii=False) + "\n")


def load_engine(config: TranscribeConfig):
    from .transcribe import Transcriber

    return Transcriber(options=subset(ModelOptions, config), decoding=subset(DecodingOptions, config))


# --- one input: the steps a run on several machines (whisper_gl.cluster) splits between them ---

def output_paths(job: Job, config: TranscribeConfig) -> dict[str, Path]:
    """Where each format asked for of `job` goes."""
    return {name: Path(config.output_dir) / job.output.parent / f"{job.output.name}.{name}" for name in config.formats}


def pending_record(job: Job, config: TranscribeConfig, fingerprint: str, ledger: Ledger) -> dict | None:
    """The ledger record `job` gets once done; None when the ledger says it is done already
    (same source, same settings, every output there) and --overwrite is off."""
    record = {**source_identity(job.source), "settings": fingerprint}
    if not config.overwrite and ledger.is_done(job, record, list(output_paths(job, config).values())):
        return None
    return record


def write_outputs(job: Job, result, config: TranscribeConfig) -> None:
    """Every format asked for, each written atomically (temporary file, then rename)."""
    from .store import atomic_write_text

    for name, path in output_paths(job, config).items():
        atomic_write_text(path, result.render(name, highlight_words=config.highlight_words))


def failure_reason(error: Exception) -> str:
    """Why an input failed, in one line."""
    return str(error) if isinstance(error, WhisperGLError) else error_line(error)


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C: through the atomic writes' clean-up, so no temporary
    file is left behind (only in the main thread, where Python delivers signals)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
