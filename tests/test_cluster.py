"""`whisper-gl transcribe --ray`: the batch command on a Ray cluster (whisper_gl.cluster).

The slow test runs a two-node Ray test cluster (tests/cluster_harness.py, ray.cluster_utils.Cluster)
inside a loopback-only network namespace (`unshare -rn`): Ray binds the machine's address by
default, and tests may only talk to 127.0.0.1.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_batch import wav_header_without_data
from whisper_gl import WhisperGLError
from whisper_gl.jobs import plural
from whisper_gl.jobs import LEDGER_NAME, Job, Summary
from whisper_gl.cli import invoke
from whisper_gl.cluster import Sizing, _remove_temporaries, size_pool
from whisper_gl.config import ClusterOptions, TranscribeConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("txt", "srt", "json")


def test_the_pool_fills_the_nodes_without_oversubscribing_them():
    cpu_nodes = [{"CPU": 8.0}, {"CPU": 6.0}]
    assert size_pool(ClusterOptions(), "cpu", cpu_nodes) == Sizing(actors=3, cpus=4.0, gpus=0.0, room=3)  # 2 + 1
    assert size_pool(ClusterOptions(cpus_per_actor=2), "cpu", cpu_nodes) == Sizing(7, 2.0, 0.0, 7)
    assert size_pool(ClusterOptions(), "cpu", [{"CPU": 2.0}]) == Sizing(1, 2.0, 0.0, 1)  # at most the largest node
    more = size_pool(ClusterOptions(actors=30, cpus_per_actor=0.5), "cpu", cpu_nodes)
    assert more == Sizing(30, 0.5, 0.0, 28) and more.describe().endswith("; 2 wait for nodes to join")
    assert Sizing(1, 0.5, 0, 1).threads == 1 and Sizing(1, 2.5, 0, 1).threads == 2
    gpu_nodes = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 8.0}]  # a CPU-only head beside a GPU node
    assert size_pool(ClusterOptions(), "cuda", gpu_nodes) == Sizing(4, 4.0, 1.0, 4)
    assert size_pool(ClusterOptions(gpus_per_actor=0.5), "cuda", gpu_nodes) == Sizing(8, 2.0, 0.5, 8)
    for options, device, nodes, message in (
            (ClusterOptions(), "cuda", cpu_nodes, "no node of the Ray cluster has 1 CPU"),
            (ClusterOptions(cpus_per_actor=12), "cpu", cpu_nodes, "no node of the Ray cluster has 12 CPU"),
            (ClusterOptions(gpus_per_actor=1), "cpu", gpu_nodes, "goes with --device cuda"),
            (ClusterOptions(cpus_per_actor=0), "cpu", cpu_nodes, "--cpus-per-actor must be above 0"),
            (ClusterOptions(actors=0), "cpu", cpu_nodes, "--actors must be at least 1")):
        with pytest.raises(WhisperGLError, match=message):
            size_pool(options, device, nodes)


def test_ray_needs_an_output_folder_and_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    with pytest.raises(WhisperGLError, match="--ray needs --output-dir"):
        invoke(["transcribe", "a.mp3", "--ray", "auto"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    from whisper_gl.paths import install_command

    with pytest.raises(WhisperGLError) as caught:
        invoke(["transcribe", str(tmp_path), "--output-dir", str(tmp_path / "out"), "--ray", "auto"])
    assert str(caught.value) == (f"whisper-gl transcribe --ray needs the cluster extra (missing: ray): "
                                 f"{install_command('cluster')}")


def test_a_stopped_run_names_what_it_did_not_do():
    summary = Summary(transcribed=1, failures=[("bad.wav", "not an audio file")],
                      not_done=[f"clip{i}.mp3" for i in range(23)])
    lines = summary.lines()
    assert lines[1] == "  failed: bad.wav: not an audio file"
    assert lines[2].startswith("23 not done") and "the same command again does exactly these" in lines[2]
    assert lines[3:23] == [f"  not done: clip{i}.mp3" for i in range(20)] and lines[23] == "  ... and 3 more"
    assert str(summary.error(24)) == "1 of 24 inputs failed, 23 not done (listed above)"
    assert str(Summary(failures=[("a", "b")]).error(5)) == "1 of 5 inputs failed (listed above)"
    assert Summary(transcribed=3).error(3) is None


def test_half_written_outputs_of_a_killed_actor_are_removed_and_nothing_else(tmp_path):
    from pathlib import PurePath

    config = TranscribeConfig(paths=("in",), output_dir=str(tmp_path), format=("txt", "srt"))
    (tmp_path / "sub").mkdir()
    left = [tmp_path / ".talk.txt.k3j_x9q2.tmp", tmp_path / "sub/.memo.srt.a1b2c3d4.tmp"]
    kept = [tmp_path / "talk.txt", tmp_path / ".other.txt.a1b2c3d4.tmp", tmp_path / "sub/.memo.json.a1b2c3d4.tmp"]
    for path in left + kept:
        path.write_text("x")
    _remove_temporaries([Job(Path("talk.mp3"), PurePath("talk")), Job(Path("memo.m4a"), PurePath("sub/memo"))],
                        config)
    assert not any(path.exists() for path in left) and all(path.exists() for path in kept)


# --- on a two-node test cluster ---------------------------------------------------------------

def namespace_command() -> tuple[list[str], str]:
    """(`unshare` and its flags for a loopback-only network namespace here, or [] with why not)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return [], "needs unshare (util-linux) and ip (iproute2)"
    errors = []
    # A user namespace needs no privilege where they are allowed; root can do without one.
    for flags in (["-rn"], ["-n"]):
        probe = subprocess.run(["unshare", *flags, "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["unshare", *flags], ""
        errors.append(probe.stderr.strip()[:100])
    return [], f"`unshare -rn` and `unshare -n` are refused here ({'; '.join(errors)})"


def run_on_test_cluster(steps: list[dict], tmp_path: Path, unshare: list[str]) -> list[dict]:
    """Run tests/cluster_harness.py with `steps` inside a loopback-only network namespace."""
    steps_file, results_file = tmp_path / "steps.json", tmp_path / "results.json"
    steps_file.write_text(json.dumps(steps))
    command = (f"ip link set lo up && exec {sys.executable} {REPO_ROOT / 'tests/cluster_harness.py'} "
               f"{steps_file} {results_file}")
    harness = subprocess.Popen([*unshare, "sh", "-c", command], cwd=REPO_ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = harness.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(harness.pid, signal.SIGKILL)
        output, _ = harness.communicate()
    assert harness.returncode == 0, output[-4000:]
    return json.loads(results_file.read_text())


def ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / LEDGER_NAME).read_text().splitlines()]


def outputs(out: Path) -> dict[str, str]:
    return {str(path.relative_to(out)): path.read_text() for path in sorted(out.rglob("*")) if path.is_file()
            and path.name != LEDGER_NAME}


def assert_complete(out: Path, stems: list[str]) -> None:
    """Every output of every input once, whole; one ledger line per input; nothing half-written."""
    assert sorted(entry["output"] for entry in ledger(out)) == sorted(stems)
    assert set(outputs(out)) == {f"{stem}.{suffix}" for stem in stems for suffix in FORMATS}
    assert not [path for path in out.rglob("*") if path.name.endswith(".tmp")]
    for stem in stems:
        json.loads((out / f"{stem}.json").read_text())  # whole: it parses


@pytest.fixture(scope="module")
def archive(sample_corpus_dir, tmp_path_factory) -> Path:
    """8 clips of the sample corpus, 2 of them in a subfolder, and a WAV that does not decode."""
    folder = tmp_path_factory.mktemp("archive")
    clips = sorted((sample_corpus_dir / "clips").glob("*.mp3"))[:8]
    (folder / "sub").mkdir()
    for number, clip in enumerate(clips):
        shutil.copy(clip, folder / ("sub" if number >= 6 else "") / clip.name)
    (folder / "broken.wav").write_bytes(wav_header_without_data())
    return folder


@pytest.mark.slow
def test_a_two_node_cluster_writes_the_local_outputs_and_nothing_is_lost_with_a_node(
        archive, base_model_dir, tmp_path):
    unshare, reason = namespace_command()
    if not unshare:
        pytest.skip(f"Ray's test cluster runs in a loopback-only network namespace: {reason}")
    pytest.importorskip("ray", reason="needs the cluster extra: pip install 'whisper-gl[cluster]'")
    # Greedy at temperature 0 only: deterministic, so the engine gives the same text wherever it runs.
    options = ["--model", str(base_model_dir), "--beam-size", "1", "--temperatures", "0",
               "--format", ",".join(FORMATS)]
    pool = ["--actors", "2", "--cpus-per-actor", "0.5"]  # fractions of the 4 logical CPUs per node
    local = subprocess.run([sys.executable, "-m", "whisper_gl", "transcribe", str(archive), "--output-dir",
                            str(tmp_path / "local"), *options], capture_output=True, text=True, timeout=600)
    assert local.returncode == 2 and "transcribed 8 files" in local.stderr, local.stderr

    def step(out: str, inputs: str = str(archive / "**/*.mp3"), **disturbance) -> dict:
        """The folder with its broken file, or its clips only (the same output names: the glob's root is the
        folder), so that a rerun with nothing left to do starts no actor."""
        return {"args": [inputs, "--output-dir", str(tmp_path / out), *options, *pool], **disturbance}

    same, lost, rerun, stopped, resumed = run_on_test_cluster(
        [step("same", str(archive)), step("lost", remove_worker_after=1), step("lost"),
         step("stopped", terminate_after=2, add_worker=True), step("stopped")], tmp_path, unshare)
    stems = sorted(str(Path(path).with_suffix("")) for path in outputs(tmp_path / "local") if path.endswith(".txt"))
    assert len(stems) == 8

    # The same outputs as the local command, byte for byte; the broken file named, as locally.
    assert same["returncode"] == 2, same["stderr"]
    assert f"failed: {archive / 'broken.wav'}: broken.wav: not an audio file" in same["stderr"]
    assert "on 2 nodes" in same["stderr"] and "transcribed 8 files" in same["stderr"]
    assert same["stderr"].strip().splitlines()[-1] == "error: 1 of 9 inputs failed (listed above)"
    assert outputs(tmp_path / "same") == outputs(tmp_path / "local")
    assert_complete(tmp_path / "same", stems)

    # The worker node killed mid-run, with an actor on it: the actor restarts on the head, the
    # files it held are retried, every output is there once and the ledger lists each input
    # once; a rerun has nothing left to do.
    assert 1 <= lost["disturbed_at"] < 8, lost
    assert lost["returncode"] == 0 and "transcribed 8 files" in lost["stderr"], lost["stderr"]
    assert "not done" not in lost["stderr"]
    assert outputs(tmp_path / "lost") == outputs(tmp_path / "local")
    assert_complete(tmp_path / "lost", stems)
    assert rerun["returncode"] == 0 and "transcribed 0 files" in rerun["stderr"], rerun["stderr"]
    assert "skipped 8 already done" in rerun["stderr"] and "on Ray" not in rerun["stderr"]
    assert len(ledger(tmp_path / "lost")) == 8

    # The run stopped (SIGTERM) mid-way: what it did not report is named, the ledger holds only
    # what is complete, and the same command again does exactly the rest.
    done = [json.loads(line) for line in stopped["ledger"]]
    assert stopped["returncode"] == 143 and 2 <= len(done) < 8, stopped
    named = [line.split("not done: ", 1)[1] for line in stopped["stderr"].splitlines() if "  not done: " in line]
    assert len(named) == 8 - len(done) and not {str(Path(entry["source"]).name) for entry in done} \
        & {Path(path).name for path in named}
    for entry in done:
        assert (tmp_path / "stopped" / f"{entry['output']}.txt").read_text() == \
            (tmp_path / "local" / f"{entry['output']}.txt").read_text()
    assert resumed["returncode"] == 0, resumed["stderr"]
    assert f"transcribed {plural(len(named), 'file')}" in resumed["stderr"]
    assert f"skipped {len(done)} already done" in resumed["stderr"]
    assert outputs(tmp_path / "stopped") == outputs(tmp_path / "local")
    assert_complete(tmp_path / "stopped", stems)
