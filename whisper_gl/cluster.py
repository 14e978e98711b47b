"""`whisper-gl transcribe PATH... --output-dir OUT --ray ADDRESS`: the batch command on a Ray cluster.

    whisper-gl transcribe /shared/archive --output-dir /shared/transcripts --ray auto --format txt,srt

The run is the local command's (whisper_gl.batch), spread over machines: this process (the
driver) plans it with the same `plan` (jobs, output names), fingerprint and ledger, leaves out
what the ledger says is done, and hands the rest to Ray Data: `map_batches`, one file per
batch, through a pool of actors (ActorPoolStrategy), each holding one Transcriber loaded once.
An actor transcribes a file, writes its outputs into the shared output folder (each
atomically, as locally) and reports back; only the driver appends to the ledger, as reports
arrive, so the ledger has one writer and lists only files whose outputs are complete.

A node lost mid-run: Ray restarts its actors where there is room and retries the files they
held (Ray Data's actor pool: unlimited restarts and task retries); an output written twice is
replaced atomically and reported once. When the run itself stops (Ctrl-C, SIGTERM, Ray Data's
no-progress timeout when no node can host an actor), the files not done are named, and the
same command run again does exactly those.

Sizing: each actor reserves --cpus-per-actor CPUs (and --gpus-per-actor GPUs) and decodes with
that many threads, so actors never oversubscribe a node; by default the pool holds as many
actors as the cluster's nodes fit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePath

from . import WhisperGLError, error_line
from .paths import require_extra
from .jobs import (Job, Ledger, Summary, failure_reason, load_engine, output_paths, pending_record,
                   plural, settings_fingerprint, terminate_as_exit, write_outputs)
from .config import ClusterOptions, TranscribeConfig, subset

DEFAULT_CPUS_PER_ACTOR = 4  # CTranslate2 int8 gains little from more threads on one stream


def require_ray() -> None:
    """One line saying what to install when --ray is given to an install without Ray."""
    require_extra("whisper-gl transcribe --ray", "cluster")


@dataclass(frozen=True)
class Sizing:
    """How many actors, and what each one reserves; `room`: how many the cluster holds now."""

    actors: int
    cpus: float
    gpus: float
    room: int

    @property
    def threads(self) -> int:
        """The engine's threads: its whole CPUs, at least one (as Ray sets OMP_NUM_THREADS)."""
        return max(1, math.floor(self.cpus))

    def describe(self) -> str:
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        waiting = f"; {self.actors - self.room} wait for nodes to join" if self.actors > self.room else ""
        return f"{plural(self.actors, 'actor')} of {self.cpus:g} CPU{gpus} ({plural(self.threads, 'thread')} each){waiting}"


def size_pool(options: ClusterOptions, device: str, nodes: list[dict[str, float]]) -> Sizing:
    """The pool for `options` on a cluster whose alive nodes hold `nodes` (Ray resources: CPU, GPU)."""
    gpus = _gpus_per_actor(options, device)
    cpus = options.cpus_per_actor or _default_cpus_per_actor(nodes, gpus)
    room = sum(min(math.floor(node.get("CPU", 0) / cpus), math.floor(node.get("GPU", 0) / gpus) if gpus else math.inf)
               for node in nodes)
    if room < 1:
        raise WhisperGLError(f"no node of the Ray cluster has {cpus:g} CPU(s){f' and {gpus:g} GPU(s)' if gpus else ''} "
                             "for one actor: lower --cpus-per-actor / --gpus-per-actor, or add nodes")
    return Sizing(options.actors or room, cpus, gpus, room)


def _gpus_per_actor(options: ClusterOptions, device: str) -> float:
    """--gpus-per-actor (default: 1 on CUDA, else 0), the flags checked."""
    gpus = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if device == "cuda" else 0.0)
    if gpus < 0 or (options.cpus_per_actor is not None and options.cpus_per_actor <= 0):
        raise WhisperGLError("--cpus-per-actor must be above 0 and --gpus-per-actor at least 0")
    if (device == "cuda") != (gpus > 0):
        raise WhisperGLError("--gpus-per-actor above 0 goes with --device cuda, and --device cuda needs it")
    if options.actors is not None and options.actors < 1:
        raise WhisperGLError("--actors must be at least 1")
    return gpus


def _default_cpus_per_actor(nodes: list[dict[str, float]], gpus: float) -> float:
    """On CPU, DEFAULT_CPUS_PER_ACTOR at most the largest node's CPUs; on GPU, a GPU node's CPUs
    for each actor's share of its GPUs, at most DEFAULT_CPUS_PER_ACTOR; at least 1."""
    shares = [node.get("CPU", 0) * gpus / node["GPU"] if gpus else node.get("CPU", 0)
              for node in nodes if not gpus or node.get("GPU")]
    return float(max(1, min(DEFAULT_CPUS_PER_ACTOR, math.floor(max(shares, default=1)))))


# --- on the cluster ---------------------------------------------------------------------------

class TranscribeActor:
    """One Ray actor: the model loaded once; transcribes the files it is handed and writes their
    outputs; reports each file's fate (the driver keeps the ledger)."""

    def __init__(self, config: TranscribeConfig):
        import ray

        self.config = config
        self.transcriber = load_engine(config)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict) -> dict:
        reports: dict[str, list] = {name: [] for name in ("index", "reason", "audio_seconds", "decoding_seconds", "node")}
        for index, source, output in zip(batch["index"], batch["source"], batch["output"]):
            job, reason, audio, decoding = Job(Path(source), PurePath(output)), "", 0.0, 0.0
            try:
                result = self.transcriber.transcribe(job.source)
            except Exception as error:  # noqa: BLE001 - one bad input must not end the run; its reason is reported
                reason = failure_reason(error)
            else:
                write_outputs(job, result, self.config)
                audio, decoding = result.duration, result.elapsed
            for name, value in zip(reports, (int(index), reason, audio, decoding, self.node)):
                reports[name].append(value)
        return reports


def _fingerprint(config: TranscribeConfig) -> str:
    """The run's settings fingerprint, from an engine loaded where the actors will run."""
    return settings_fingerprint(load_engine(config), config)


# --- the driver -------------------------------------------------------------------------------

def transcribe_jobs(jobs: list[Job], config: TranscribeConfig, summary: Summary) -> None:
    """Transcribe `jobs` on the Ray cluster at config.ray, counting into `summary`."""
    require_ray()
    import ray

    config = _portable(config)
    _connect(config.ray)
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        sizing = size_pool(subset(ClusterOptions, config), config.device, nodes)
        config = dataclasses.replace(config, cpu_threads=sizing.threads)
        ledger = Ledger(Path(config.output_dir))
        pending = _pending(jobs, config, _remote_fingerprint(config, sizing), ledger, summary)
        if pending:
            _run_pool(pending, config, sizing, ledger, summary)
    finally:
        ray.shutdown()


def _pending(jobs: list[Job], config: TranscribeConfig, fingerprint: str, ledger: Ledger,
             summary: Summary) -> list[tuple[Job, dict]]:
    """The jobs the ledger does not list as done, with the record each gets once done."""
    pending = []
    for job in jobs:
        try:
            record = pending_record(job, config, fingerprint, ledger)
        except OSError as error:  # the source vanished or cannot be read since it was planned
            summary.failures.append((str(job.source), failure_reason(error)))
            print(f"failed: {job.source}: {failure_reason(error)}", file=sys.stderr)
            continue
        if record is None:
            summary.already_done += 1
        else:
            pending.append((job, record))
    return pending


def _portable(config: TranscribeConfig) -> TranscribeConfig:
    """Paths that mean the same on every node: absolute (workers do not share the driver's
    working folder), and the default model named (resolved here, where the user stands)."""
    from .transcribe import default_model

    model = config.model or default_model()
    if Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    return dataclasses.replace(config, model=model, output_dir=str(Path(config.output_dir).resolve()))


def _connect(address: str) -> None:
    """Join the cluster (auto, HOST:PORT, ray://...) or start one here (local); quietly."""
    import logging

    import ray
    from ray.data import DataContext

    try:
        ray.init(address="local" if address == "local" else address, logging_level=logging.WARNING,
                 include_dashboard=False if address == "local" else None)
    except ConnectionError as error:
        raise WhisperGLError(f"cannot reach the Ray cluster at '{address}' ({error_line(error)}): start it with "
                             "`ray start --head` (or give --ray local)") from None
    context = DataContext.get_current()
    context.enable_progress_bars = False  # ours counts files, hours and the real-time factor
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": ours run


def _remote_fingerprint(config: TranscribeConfig, sizing: Sizing) -> str:
    """Computed by a task with an actor's resources: the model must load there (a bad --model
    fails here, in one line, before any actor starts)."""
    import ray

    task = ray.remote(num_cpus=sizing.cpus, num_gpus=sizing.gpus, max_retries=3)(_fingerprint)
    try:
        return ray.get(task.remote(config))
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, WhisperGLError):
            raise WhisperGLError(str(error.cause)) from None
        raise


def _run_pool(pending: list[tuple[Job, dict]], config: TranscribeConfig, sizing: Sizing, ledger: Ledger,
              summary: Summary) -> None:
    """The pending jobs through the actor pool; the ledger and `summary` follow the reports."""
    from tqdm import tqdm

    sizing = dataclasses.replace(sizing, actors=min(sizing.actors, len(pending)))  # no idle actor loads a model
    reported, nodes, began = set(), set(), time.monotonic()
    print(f"transcribing {plural(len(pending), 'file')} on Ray: {sizing.describe()}", file=sys.stderr)
    with tqdm(total=len(pending), unit="file", desc="transcribing") as progress:
        try:
            with terminate_as_exit():
                for report in _reports(pending, config, sizing):
                    _count(report, *pending[report["index"]], ledger, summary, progress)
                    reported.add(report["index"])
                    nodes.add(report["node"])
                    progress.set_postfix_str(_throughput(summary, time.monotonic() - began), refresh=False)
        except Exception as error:  # noqa: BLE001 - the pool stopped (no progress for too long, a write failed)
            progress.write(f"the Ray run stopped: {error_line(error)}", file=sys.stderr)
        except BaseException:  # Ctrl-C, SIGTERM: what is done stays done; say what is not, then stop
            _finish(pending, reported, config, summary)
            progress.close()
            print("\n".join(summary.lines()), file=sys.stderr)
            raise
    _finish(pending, reported, config, summary)
    print(f"on Ray: {sizing.describe()} on {plural(len(nodes), 'node')}; {_throughput(summary, time.monotonic() - began)}",
          file=sys.stderr)


def _reports(pending: list[tuple[Job, dict]], config: TranscribeConfig, sizing: Sizing):
    """Ray Data: one row per file, one file per batch, through the actor pool; the reports as they come."""
    import ray

    rows = [{"index": index, "source": str(job.source.resolve()), "output": str(job.output)}
            for index, (job, _) in enumerate(pending)]
    return ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        TranscribeActor, fn_constructor_kwargs={"config": config}, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=sizing.actors),
        num_cpus=sizing.cpus, num_gpus=sizing.gpus).iter_rows()


def _count(report: dict, job: Job, record: dict, ledger: Ledger, summary: Summary, progress) -> None:
    """One file's report: into the ledger when its outputs are written, else a failure named."""
    if report["reason"]:
        summary.failures.append((str(job.source), report["reason"]))
        progress.write(f"failed: {job.source}: {report['reason']}", file=sys.stderr)
    else:
        ledger.add(job, record)
        summary.add_transcribed(report["audio_seconds"], report["decoding_seconds"])
    progress.update()


def _throughput(summary: Summary, wall_seconds: float) -> str:
    """Hours of audio done, and the pool's real-time factor: wall time over audio time."""
    hours = summary.audio_seconds / 3600
    rtf = wall_seconds / summary.audio_seconds if summary.audio_seconds else 0.0
    return f"{hours:.2f} h audio, RTF {rtf:.3f} wall ({hours / (wall_seconds / 3600) if wall_seconds else 0:.1f} " \
           f"h of audio per hour), {len(summary.failures)} failed"


def _finish(pending: list[tuple[Job, dict]], reported: set[int], config: TranscribeConfig, summary: Summary) -> None:
    """Name what was not done, and remove what a killed actor may have left half-written."""
    summary.not_done += [str(job.source) for index, (job, _) in enumerate(pending) if index not in reported]
    _remove_temporaries([job for job, _ in pending], config)


def _remove_temporaries(jobs: list[Job], config: TranscribeConfig) -> None:
    """An actor killed while writing (its node lost) leaves `.<output name>.<random>.tmp`
    (whisper_gl.store.atomic_write_text) beside the output: remove those of this run's outputs.
    One listing per folder."""
    names_by_folder: dict[Path, set[str]] = defaultdict(set)
    for job in jobs:
        for path in output_paths(job, config).values():
            names_by_folder[path.parent].add(path.name)
    for folder, names in names_by_folder.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") \
                    and entry.name[1:].rsplit(".", 2)[0] in names:
                Path(entry.path).unlink(missing_ok=True)
