"""Throughput of `whisper-gl transcribe --ray` with 1 and 2 CPU actors, and the memory of each actor.

    .venv/bin/python bench/bench_cluster.py [--model DIR] [--clips 40] [--pools 1x1 2x1 1x2] [--rounds 1]
                                            [--json bench/results/cluster.json]

A Ray node on this machine (ray.cluster_utils.Cluster, with the machine's CPUs), inside a
loopback-only network namespace (the bench runs itself again under `unshare -rn`: Ray would
bind the machine's address). The same clips of the sample corpus go through the real command
(`whisper-gl transcribe CLIPS --output-dir OUT --ray ADDRESS --actors K --cpus-per-actor C`, the
default decoding options) once per pool, in one run. The default pools (--pools ACTORSxCPUS ...)
suit a 2-core machine:

  1x1      one actor, one thread: the reference
  2x1      two actors, one thread each: the machine's two cores
  1x2      one actor with two threads: the other way to spend them

Watched from outside: the ledger's lines as the driver appends them (every 50 ms) give the
files per second from the first file reported to the last (the start-up, actors loading the
model, is its own column), the JSON outputs give each file's audio length, and psutil polls every
actor process: its peak resident memory, and the CPU time of all of them (audio hours per CPU
hour: what one core does, which other jobs on a shared machine change far less than the wall
clock). The load average before and after each pool is recorded; --rounds N runs every pool N
times, the order turned each round, and keeps each pool's fastest run.

The docs' table is rendered from the JSON by `python scripts/tables.py` (table `cluster`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.machine import cpu_name, default_decoding  # noqa: E402

LEDGER = ".whisper-gl-done.jsonl"
POOLS = ("1x1", "2x1", "1x2")  # ACTORSxCPUS: the default pools, for a 2-core machine
NAMESPACE_ENV = "WHISPER_GL_BENCH_IN_NAMESPACE"


def in_loopback_namespace(argv: list[str]) -> None:
    """Run this bench again inside `unshare -rn` (loopback only), unless already there."""
    if os.environ.get(NAMESPACE_ENV):
        return
    command = f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} " + " ".join(
        f"'{argument}'" for argument in argv)
    result = subprocess.run(["unshare", "-rn", "sh", "-c", command], env={**os.environ, NAMESPACE_ENV: "1"})
    raise SystemExit(result.returncode)


class Watch:
    """What the engine actors of a node (children of its raylet) use: peak resident memory per
    actor, and CPU time all together (an ended actor keeps its last reading)."""

    def __init__(self, raylet_pid: int):
        self.raylet_pid, self.peaks, self.cpu = raylet_pid, {}, {}

    def poll(self) -> None:
        import psutil

        for child in psutil.Process(self.raylet_pid).children(recursive=True):
            try:
                if "TranscribeActor" in " ".join(child.cmdline()):
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), child.memory_info().rss)
                    times = child.cpu_times()
                    self.cpu[child.pid] = times.user + times.system
            except psutil.Error:
                continue

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


def measure(pool: tuple[int, float], clips: Path, model: str, address: str, raylet_pid: int, work: Path) -> dict:
    actors, cpus = pool
    out = work / f"out-{actors}x{cpus:g}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "whisper_gl", "transcribe", str(clips), "--output-dir", str(out), "--ray",
               address, "--actors", str(actors), "--cpus-per-actor", str(cpus), "--model", model, "--format", "json"]
    load_before, reported, cpu_at, watch = os.getloadavg()[0], [], [], Watch(raylet_pid)
    began = time.monotonic()
    with open(work / f"{out.name}.log", "w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=log, cwd=REPO_ROOT)
        while driver.poll() is None:
            watch.poll()
            lines = (out / LEDGER).read_text().count("\n") if (out / LEDGER).is_file() else 0
            reported += [time.monotonic() - began] * (lines - len(reported))
            cpu_at += [watch.cpu_seconds] * (lines - len(cpu_at))
            time.sleep(0.05)
    if driver.returncode != 0:
        raise SystemExit(f"the run failed ({driver.returncode}): see {work / (out.name + '.log')}")
    order = [json.loads(line)["output"] for line in (out / LEDGER).read_text().splitlines()]
    seconds = [json.loads((out / f"{name}.json").read_text())["duration"] for name in order]
    # From the first file reported to the last: the pool at work, its start-up left out.
    steady, steady_audio_hours = reported[-1] - reported[0], sum(seconds[1:]) / 3600
    row = dict(actors=actors, cpus_per_actor=cpus, files=len(order), audio_seconds=sum(seconds),
               wall_seconds=time.monotonic() - began, first_file_seconds=reported[0],
               files_per_second=(len(order) - 1) / steady, audio_hours_per_hour=steady_audio_hours / (steady / 3600),
               audio_hours_per_cpu_hour=steady_audio_hours / ((cpu_at[-1] - cpu_at[0]) / 3600),
               actor_peak_mb=sorted(peak / 2**20 for peak in watch.peaks.values()),
               load_before=load_before, load_after=os.getloadavg()[0])
    print(f"  {actors} x {cpus:g} CPU: {row['files_per_second']:.2f} files/s, {row['audio_hours_per_hour']:.2f} audio "
          f"h per hour, {row['audio_hours_per_cpu_hour']:.2f} per CPU hour, first file after "
          f"{row['first_file_seconds']:.0f} s, peak {max(row['actor_peak_mb'], default=0):.0f} MB per actor, "
          f"load {load_before:.1f} -> {row['load_after']:.1f}", flush=True)
    return row


def pool_of(text: str) -> tuple[int, float]:
    """"2x1" -> (2 actors, 1.0 CPU each)."""
    actors, cpus = text.lower().split("x")
    return int(actors), float(cpus)


def best_rows(rounds: list[list[dict]]) -> list[dict]:
    """Per pool, its fastest round: the one other jobs on a shared machine slowed least (every
    number of a row from that one run)."""
    return [max(runs, key=lambda row: row["files_per_second"]) for runs in zip(*rounds)]


def run(args: argparse.Namespace) -> dict:
    from ray.cluster_utils import Cluster

    from whisper_gl.sample_corpus import build_corpus

    corpus = build_corpus(REPO_ROOT / "Resources/cv-corpus-sample/gl", REPO_ROOT / "Resources/sentences.tsv")
    with tempfile.TemporaryDirectory() as scratch:
        work, clips = Path(scratch), Path(scratch) / "clips"
        clips.mkdir()
        for clip in sorted((corpus / "clips").glob("*.mp3"))[: args.clips]:
            shutil.copy(clip, clips / clip.name)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": os.cpu_count()})
        try:
            raylet = cluster.head_node.all_processes["raylet"][0].process.pid
            print(f"model {args.model}, {args.clips} clips, {os.cpu_count()} CPUs ({cpu_name()})", flush=True)
            pools, rounds = [pool_of(text) for text in args.pools], []
            for index in range(args.rounds):  # the order turns each round: load changes fall on every pool
                order = pools[index % len(pools):] + pools[:index % len(pools)]
                measured = {pool: measure(pool, clips, str(Path(args.model).resolve()), cluster.address, raylet,
                                          work) for pool in order}
                rounds.append([measured[pool] for pool in pools])
        finally:
            cluster.shutdown()
    import ray

    return dict(model=args.model, clips=args.clips, cpus=os.cpu_count(), cpu=cpu_name(), ray=ray.__version__,
                decoding=default_decoding(), rounds=args.rounds,
                date=datetime.date.today().isoformat(), rows=best_rows(rounds), all_rounds=rounds)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="artifacts/model", help="the demo model (default: %(default)s)")
    parser.add_argument("--clips", type=int, default=40, help="clips of the sample corpus (default: %(default)s)")
    parser.add_argument("--pools", nargs="+", default=list(POOLS), metavar="ACTORSxCPUS",
                        help="pools to measure, the first the reference (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every pool; the fastest is kept "
                                                                 "(default: %(default)s)")
    parser.add_argument("--json", default="bench/results/cluster.json", help="where to write the results")
    args = parser.parse_args(argv)
    in_loopback_namespace(argv)
    results = run(args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from tables import TABLES  # the docs' table, rendered as `python scripts/tables.py` writes it

    print()
    print(TABLES["cluster"].render(results))


if __name__ == "__main__":
    main()
