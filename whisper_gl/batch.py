"""`whisper-gl transcribe PATH...`: files, folders and globs through one loaded engine.

    whisper-gl transcribe talks/ extra.mp3 'archive/**/*.mp4' --output-dir transcripts --format txt,srt,json

Inputs: named files are always attempted (one that does not decode is a failure); folders are
searched recursively and globs expanded, and there audio and video are told from other files
by content (FFmpeg finds an audio stream: `audio.has_audio_stream`). A file found there that
claims to be audio or video (its extension or its first bytes: `audio.claims_media`) and has no
audio stream is a failure too: a broken recording is never lost silently. The rest is skipped,
and named: in the summary and in OUT/.whisper-gl-skipped.tsv. Every name printed is escaped
(`printable`), so a newline in a file name cannot forge a line of the report.
Outputs: OUT/<path under its folder or glob root>/<stem>.<format>, names made safe,
each written atomically. A ledger (OUT/.whisper-gl-done.jsonl) records every finished input
with its fingerprint (the source's size and mtime, the model's files, the options), so a
rerun after a crash skips what is done (`--overwrite` redoes it). Failures are reported as
they happen, the run goes on, and a summary ends it (exit code 2 when any input failed).
One input without --output-dir prints its transcript instead (and --srt / --vtt).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Iterator

from . import WhisperGLError, error_line
from .audio import EMPTY_FILE, NOT_AUDIO, claims_media, has_audio_stream
from .config import DecodingOptions, ModelOptions, TranscribeConfig, subset

LEDGER_NAME = ".whisper-gl-done.jsonl"
SKIPPED_NAME = ".whisper-gl-skipped.tsv"  # beside the ledger: every file skipped as not audio or video
SKIPPED_SHOWN = 10  # of them named in the summary
NOT_MEDIA = "not audio or video"
GLOB_CHARACTERS = "*?["
# Characters no file system or shell handles well in a name, and control characters.
_UNSAFE_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
MAX_NAME_BYTES = 200  # below every file system's 255, with room for "-2.json"


@dataclass(frozen=True)
class Job:
    """One input to transcribe and where its outputs go under the output folder (no suffix)."""

    source: Path
    output: PurePath


@dataclass
class Plan:
    """What the paths on the command line amount to."""

    jobs: list[Job] = field(default_factory=list)
    # (path, reason): named but unusable, or found claiming to be media and not decodable
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): found, not audio or video

    @property
    def not_media(self) -> int:
        return len(self.skipped)


@dataclass
class Summary:
    """How a run went: what `whisper-gl transcribe` prints at the end."""

    transcribed: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not audio or video
    failures: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    decoding_seconds: float = 0.0

    @property
    def not_media(self) -> int:
        return len(self.skipped)

    @property
    def real_time_factor(self) -> float:
        return self.decoding_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def lines(self, skipped_list: Path | None = None) -> list[str]:
        """The report: the counts, every failure, the first skipped files (all of them in `skipped_list`)."""
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
        return lines


def printable(text: str) -> str:
    """`text` with every character a terminal or a log would act on (control characters such as a
    newline or an escape, line separators, bidirectional overrides) written as its escape: a file
    name cannot forge a line of the report or restyle the terminal."""
    return "".join(character if character.isprintable() else ascii(character)[1:-1] for character in text)


def failure_line(path: str | Path, reason: str, indent: str = "") -> str:
    return f"{indent}failed: {printable(str(path))}: {printable(reason)}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def safe_name(name: str) -> str:
    """A file or folder name that is safe to create anywhere: no separators, control or reserved
    characters, no leading dot (hidden) or trailing dot or space, at most MAX_NAME_BYTES."""
    name = _UNSAFE_CHARACTERS.sub("_", name).strip(" .")
    name = name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", errors="ignore")
    return name or "_"


def _output_path(relative: PurePath) -> PurePath:
    """Where the outputs of the input at `relative` (under its folder or glob root) go, without suffix."""
    return PurePath(*(safe_name(part) for part in relative.parent.parts), safe_name(relative.stem))


def _glob_root(pattern: str) -> Path:
    """The folder a glob is anchored in: its leading components without wildcards."""
    parts = []
    for part in Path(pattern).parts:
        if any(character in part for character in GLOB_CHARACTERS):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _folder_files(folder: Path, skip: Path | None) -> Iterator[Path]:
    """Every file under `folder`, in a stable order, leaving out the output folder."""
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if skip is None or (Path(root) / name).resolve() != skip)
        yield from (Path(root) / name for name in sorted(files))


def plan(paths: tuple[str, ...], output_dir: Path | None = None) -> Plan:
    """Jobs for files, folders and globs; a path that is missing or matches nothing is a failure."""
    found, skip = Plan(), output_dir.resolve() if output_dir else None
    taken: set[str] = set()

    def add(source: Path, relative: PurePath) -> None:
        output, number = _output_path(relative), 1
        while str(output).casefold() in taken:  # same name from two inputs: number the later ones
            number += 1
            output = output.with_name(f"{_output_path(relative).name}-{number}")
        taken.add(str(output).casefold())
        found.jobs.append(Job(source, output))

    def add_found(source: Path, root: Path) -> None:
        unusable = _unusable(source)
        if unusable is None:
            add(source, source.relative_to(root))
        elif claims_media(source):  # a broken recording: a failure, never silently skipped
            found.failures.append((str(source), unusable))
        else:
            found.skipped.append((str(source), NOT_MEDIA))

    for path in paths:
        location = Path(path)
        if location.is_dir():
            for source in _folder_files(location, skip):
                add_found(source, location)
        elif location.is_file():
            add(location, PurePath(location.name))
        elif _is_glob(path):
            matches = sorted(Path(match) for match in glob.glob(path, recursive=True))
            files = [match for match in matches if match.is_file()]
            if not files:
                found.failures.append((path, "no file matches"))
            for source in files:
                add_found(source, _glob_root(path))
        else:
            found.failures.append((path, "missing file"))
    return found


def _unusable(source: Path) -> str | None:
    """Why a file found in a folder or glob cannot be transcribed, or None. Only regular files are
    opened (a device or a pipe, even behind a link, could block the run for ever)."""
    if not source.exists():
        return "missing file (a link to nothing)"
    if not source.is_file():
        return "not a regular file"
    if source.stat().st_size == 0:
        return EMPTY_FILE
    return None if has_audio_stream(source) else NOT_AUDIO


# --- what is done -----------------------------------------------------------------------------

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


# --- the command --------------------------------------------------------------------------------

def run(config: TranscribeConfig):
    """`whisper-gl transcribe`: one input printed, or many into --output-dir."""
    if not config.paths:
        raise WhisperGLError("give at least one file, folder or glob to transcribe")
    if config.output_dir is not None:
        if config.srt or config.vtt:
            raise WhisperGLError("--srt and --vtt are for one input without --output-dir: use --format srt,vtt")
        return transcribe_many(config)
    (path,) = config.paths[:1]
    if len(config.paths) > 1 or Path(path).is_dir() or (not Path(path).exists() and _is_glob(path)):
        raise WhisperGLError("several inputs, a folder or a glob need --output-dir")
    return transcribe_one(config)  # a missing or unreadable file fails there, with its reason


def _is_glob(path: str) -> bool:
    return any(character in path for character in GLOB_CHARACTERS)


def load_engine(config: TranscribeConfig):
    from .transcribe import Transcriber

    return Transcriber(options=subset(ModelOptions, config), decoding=subset(DecodingOptions, config))


def transcribe_one(config: TranscribeConfig):
    """The transcript on stdout (the text, or the one format asked for), the subtitles asked for,
    the speed on stderr."""
    from .store import atomic_write_text

    if len(config.formats) > 1:
        raise WhisperGLError("one input without --output-dir prints one format: give one --format, or "
                             "--output-dir for several")
    began = time.perf_counter()
    engine = load_engine(config)
    loaded = time.perf_counter() - began
    result = engine.transcribe(config.paths[0])
    sys.stdout.write(result.render(config.formats[0], highlight_words=config.highlight_words) or "\n")
    for path, name in ((config.srt, "srt"), (config.vtt, "vtt")):
        if path:
            atomic_write_text(path, result.render(name, highlight_words=config.highlight_words))
    print(printable(
        f"[{result.model} | {result.backend} | language {result.language or '?'} | model loaded in "
        f"{loaded:.1f} s | {result.duration:.1f} s of audio transcribed in {result.elapsed:.1f} s, RTF "
        f"{result.real_time_factor:.2f} (the first file of a run includes the engine's warm-up) | "
        f"{plural(len(result.segments), 'segment')}]"),
        file=sys.stderr,
    )
    return result


def transcribe_many(config: TranscribeConfig) -> Summary:
    from tqdm import tqdm

    output_dir = Path(config.output_dir)
    found = plan(config.paths, output_dir)
    summary = Summary(skipped=list(found.skipped), failures=list(found.failures))
    for path, reason in found.failures:
        print(failure_line(path, reason), file=sys.stderr)
    if found.jobs:
        transcriber = load_engine(config)  # once for the whole run
        fingerprint, ledger = settings_fingerprint(transcriber, config), Ledger(output_dir)
        with _terminate_as_exit(), tqdm(total=len(found.jobs), unit="file", desc="transcribing") as progress:
            for job in found.jobs:
                _transcribe_job(job, transcriber, config, fingerprint, ledger, summary, progress)
                progress.update()
                progress.set_postfix_str(f"{summary.audio_seconds / 3600:.2f} h audio, "
                                         f"{len(summary.failures)} failed", refresh=False)
    for line in summary.lines(write_skipped(output_dir, summary.skipped)):
        print(line, file=sys.stderr)
    if summary.failures:
        total = len(found.jobs) + len(found.failures)
        raise WhisperGLError(f"{len(summary.failures)} of {plural(total, 'input')} failed (listed above)")
    return summary


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


def _transcribe_job(job: Job, transcriber, config: TranscribeConfig, fingerprint: str, ledger: Ledger,
                    summary: Summary, progress) -> None:
    from .store import atomic_write_text

    outputs = {name: Path(config.output_dir) / job.output.parent / f"{job.output.name}.{name}"
               for name in config.formats}
    try:
        record = {**source_identity(job.source), "settings": fingerprint}
        if not config.overwrite and ledger.is_done(job, record, list(outputs.values())):
            summary.already_done += 1
            return
        result = transcriber.transcribe(job.source)
    except Exception as error:  # noqa: BLE001 - one bad input must not end the run; its reason is reported
        reason = str(error) if isinstance(error, WhisperGLError) else error_line(error)
        summary.failures.append((str(job.source), reason))
        progress.write(failure_line(job.source, reason), file=sys.stderr)
        return
    for name, path in outputs.items():
        atomic_write_text(path, result.render(name, highlight_words=config.highlight_words))
    ledger.add(job, record)
    summary.transcribed += 1
    summary.audio_seconds += result.duration
    summary.decoding_seconds += result.elapsed


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
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
