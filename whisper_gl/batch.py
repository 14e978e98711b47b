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
With --ray ADDRESS the same run (plan, fingerprint, ledger, outputs, summary) is spread over a
Ray cluster's actors: whisper_gl.cluster, docs/cluster.md.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Iterator

from . import WhisperGLError
from .audio import EMPTY_FILE, NOT_AUDIO, claims_media, has_audio_stream
from .config import TranscribeConfig
from .jobs import (NOT_MEDIA, Job, Ledger, Summary, failure_line, failure_reason, load_engine, pending_record, plural,
                   printable, settings_fingerprint, terminate_as_exit, write_outputs, write_skipped)
from .paths import missing_file

GLOB_CHARACTERS = "*?["
# Characters no file system or shell handles well in a name, and control characters.
_UNSAFE_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
MAX_NAME_BYTES = 200  # below every file system's 255, with room for "-2.json"


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


# --- the command --------------------------------------------------------------------------------

def run(config: TranscribeConfig):
    """`whisper-gl transcribe`: one input printed, or many into --output-dir."""
    if not config.paths:
        raise WhisperGLError("give at least one file, folder or glob to transcribe")
    if config.ray:
        from .cluster import require_ray

        if config.output_dir is None:
            raise WhisperGLError("--ray needs --output-dir: a cluster writes one output per input there")
        require_ray()
    if config.output_dir is not None:
        if config.srt or config.vtt:
            raise WhisperGLError("--srt and --vtt are for one input without --output-dir: use --format srt,vtt")
        return transcribe_many(config)
    (path,) = config.paths[:1]
    if len(config.paths) > 1 or Path(path).is_dir() or (not Path(path).exists() and _is_glob(path)):
        raise WhisperGLError("several inputs, a folder or a glob need --output-dir")
    if not Path(path).exists():  # said before the model loads, with the full path
        raise WhisperGLError(missing_file(path))
    return transcribe_one(config)  # an unreadable file fails there, with its reason


def _is_glob(path: str) -> bool:
    return any(character in path for character in GLOB_CHARACTERS)


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
    output_dir = Path(config.output_dir)
    found = plan(config.paths, output_dir)
    summary = Summary(skipped=list(found.skipped), failures=list(found.failures))
    for path, reason in found.failures:
        print(failure_line(path, reason), file=sys.stderr)
    if found.jobs and config.ray:
        from .cluster import transcribe_jobs

        transcribe_jobs(found.jobs, config, summary)
    elif found.jobs:
        _transcribe_here(found.jobs, config, summary)
    for line in summary.lines(write_skipped(output_dir, summary.skipped)):
        print(line, file=sys.stderr)
    error = summary.error(len(found.jobs) + len(found.failures))
    if error:
        raise error
    return summary


def _transcribe_here(jobs: list[Job], config: TranscribeConfig, summary: Summary) -> None:
    """In this process, one input after the other, through one engine."""
    from tqdm import tqdm

    transcriber = load_engine(config)  # once for the whole run
    fingerprint, ledger = settings_fingerprint(transcriber, config), Ledger(Path(config.output_dir))
    with terminate_as_exit(), tqdm(total=len(jobs), unit="file", desc="transcribing") as progress:
        for job in jobs:
            _transcribe_job(job, transcriber, config, fingerprint, ledger, summary, progress)
            progress.update()
            progress.set_postfix_str(f"{summary.audio_seconds / 3600:.2f} h audio, "
                                     f"{len(summary.failures)} failed", refresh=False)


def _transcribe_job(job: Job, transcriber, config: TranscribeConfig, fingerprint: str, ledger: Ledger,
                    summary: Summary, progress) -> None:
    try:
        record = pending_record(job, config, fingerprint, ledger)
        if record is None:
            summary.already_done += 1
            return
        result = transcriber.transcribe(job.source)
    except Exception as error:  # noqa: BLE001 - one bad input must not end the run; its reason is reported
        summary.failures.append((str(job.source), failure_reason(error)))
        progress.write(failure_line(job.source, failure_reason(error)), file=sys.stderr)
        return
    write_outputs(job, result, config)
    ledger.add(job, record)
    summary.add_transcribed(result.duration, result.elapsed)


