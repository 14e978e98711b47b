"""`whisper-gl transcribe PATH...`: files, folders and globs through one loaded engine.

    whisper-gl transcribe talks/ extra.mp3 'archive/**/*.mp4' --output-dir transcripts --format txt,srt,json

Inputs: named files are always attempted (one that does not decode is a failure); folders are
searched recursively and globs expanded, and there audio and video are told from other files
by content (FFmpeg finds an audio stream: `audio.has_audio_stream`); the rest is skipped and
counted. Outputs: OUT/<path under its folder or glob root>/<stem>.<format>, names made safe,
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
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Iterator

from . import WhisperGLError
from .audio import has_audio_stream
from .config import TranscribeConfig
from .jobs import (Job, Ledger, Summary, failure_reason, load_engine, pending_record, settings_fingerprint,
                   terminate_as_exit, write_outputs)
from .paths import missing_file

GLOB_CHARACTERS = "*?["
# Characters no file system or shell handles well in a name, and control characters.
_UNSAFE_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
MAX_NAME_BYTES = 200  # below every file system's 255, with room for "-2.json"


@dataclass
class Plan:
    """What the paths on the command line amount to."""

    jobs: list[Job] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): named but unusable
    not_media: int = 0  # files inside folders or globs that are not audio or video


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
        if has_audio_stream(source):
            add(source, source.relative_to(root))
        else:
            found.not_media += 1

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
    result = load_engine(config).transcribe(config.paths[0])
    sys.stdout.write(result.render(config.formats[0], highlight_words=config.highlight_words) or "\n")
    for path, name in ((config.srt, "srt"), (config.vtt, "vtt")):
        if path:
            atomic_write_text(path, result.render(name, highlight_words=config.highlight_words))
    print(
        f"[{result.model} | {result.backend} | language {result.language or '?'} | "
        f"{result.duration:.1f} s of audio in {result.elapsed:.1f} s, RTF {result.real_time_factor:.2f} | "
        f"{len(result.segments)} segments]",
        file=sys.stderr,
    )
    return result


def transcribe_many(config: TranscribeConfig) -> Summary:
    output_dir = Path(config.output_dir)
    found = plan(config.paths, output_dir)
    summary = Summary(not_media=found.not_media, failures=list(found.failures))
    for path, reason in found.failures:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    if found.jobs and config.ray:
        from .cluster import transcribe_jobs

        transcribe_jobs(found.jobs, config, summary)
    elif found.jobs:
        _transcribe_here(found.jobs, config, summary)
    for line in summary.lines():
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
        progress.write(f"failed: {job.source}: {failure_reason(error)}", file=sys.stderr)
        return
    write_outputs(job, result, config)
    ledger.add(job, record)
    summary.add_transcribed(result.duration, result.elapsed)


