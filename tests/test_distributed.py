"""whisper_gl.distributed and train.py under torchrun / accelerate launch, on CPU processes (gloo).

Several CPU processes with gloo behave like several GPUs with nccl for everything checked here:
sharding, the global batch, one writer, evaluation of every clip once, resume, several nodes.
The runs use the tiny random Whisper (conftest.py) on features of the bundled sample corpus.
"""

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from support import free_port, kill_once_exists
from whisper_gl import WhisperGLError
from whisper_gl.distributed import (SHARED_MARK, agreed_start, batch_text, check_launcher, check_world_size,
                                    describe_layout, is_main_process, launcher_precision)

REPO = Path(__file__).resolve().parents[1]
TABLE_TITLE = "WER/CER (%) on"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]


# --- what a launcher tells each process -------------------------------------------------------

ACCELERATE_ONE_PROCESS = {"ACCELERATE_USE_CPU": "False", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("environ, refused", [
    ({}, False),  # plain python train.py
    ({"ACCELERATE_USE_CPU": "False"}, False),  # accelerate launch --num_processes 1
    (ACCELERATE_ONE_PROCESS, True),  # accelerate launch --num_processes 2 with fewer than two GPUs
    ({**ACCELERATE_ONE_PROCESS, "WORLD_SIZE": "2", "RANK": "1"}, False),  # accelerate launch --multi_gpu
    ({**ACCELERATE_ONE_PROCESS, "PMI_SIZE": "2"}, False),  # the same under mpirun
])
def test_accelerate_starting_one_process_of_several_is_refused(environ, refused):
    if refused:
        with pytest.raises(WhisperGLError, match="add --multi_gpu"):
            check_launcher(environ)
    else:
        check_launcher(environ)


@pytest.mark.parametrize("choice, asked, used", [
    ("auto", None, "auto"), ("fp32", "no", "fp32"), ("auto", "bf16", "bf16"), ("fp16", "fp16", "fp16"),
    ("fp32", "fp16", None), ("auto", "fp8", None),
])
def test_accelerate_mixed_precision_is_taken_or_refused_never_applied_behind_the_flag(choice, asked, used):
    environ = {} if asked is None else {"ACCELERATE_MIXED_PRECISION": asked}
    if used is None:
        with pytest.raises(WhisperGLError, match=f"asks for --mixed_precision {asked} but --precision is {choice}"):
            launcher_precision(choice, environ)
    else:
        assert launcher_precision(choice, environ) == used


def test_more_processes_than_training_clips_are_refused():
    check_world_size(12, 12)
    with pytest.raises(WhisperGLError, match="13 processes for 12 training clips"):
        check_world_size(13, 12)


def test_only_global_rank_0_is_the_main_process():
    assert is_main_process({}) and is_main_process({"RANK": "0", "LOCAL_RANK": "0"})
    assert not is_main_process({"RANK": "2", "LOCAL_RANK": "0"})  # the first process of the second node


def test_the_start_line_says_where_and_how_big_a_step_is():
    layout = {"world_size": 4, "nodes": 2, "backend": "nccl", "device": "cuda", "per_device_batch": 8,
              "grad_accum": 2, "global_batch": 64, "steps_per_epoch": 16}
    assert describe_layout(layout) == ("training on 4 processes (2 nodes x 2, cuda, nccl): global batch 64 = 8 per "
                                       "process x 4 processes x 2 accumulation steps; 16 steps per epoch")
    one = {**layout, "world_size": 1, "nodes": 1, "backend": None, "device": "cpu", "grad_accum": 1,
           "global_batch": 8}
    assert batch_text(one) == "global batch 8 = 8 per process x 1 process x 1 accumulation step"
    assert describe_layout(one).startswith("training on 1 process (cpu): ")


# --- agreeing on the start, in a real two-process gloo group -------------------------------------

def _agree(rank: int, port: int, work_dirs: list[str], answers) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    chosen_here = []

    def choose():
        chosen_here.append(rank)
        return f"checkpoint chosen by rank {rank}"

    try:
        answers.put((rank, agreed_start(Path(work_dirs[rank]), SimpleNamespace(world_size=2, process_index=rank),
                                        choose), chosen_here))
    except WhisperGLError as error:
        answers.put((rank, f"error: {error}", chosen_here))
    finally:
        dist.destroy_process_group()


def agree(work_dirs: list[Path]) -> dict[int, tuple]:
    """agreed_start in two gloo processes, each with its own working folder path."""
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    port = free_port()
    processes = [context.Process(target=_agree, args=(rank, port, [str(d) for d in work_dirs], answers))
                 for rank in range(2)]
    for process in processes:
        process.start()
    results = {rank: (answer, chosen) for rank, answer, chosen in (answers.get(timeout=120) for _ in processes)}
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return results


def test_every_process_starts_from_the_checkpoint_rank_0_chose(tmp_path):
    results = agree([tmp_path / "work", tmp_path / "work"])
    assert results == {0: ("checkpoint chosen by rank 0", [0]), 1: ("checkpoint chosen by rank 0", [])}
    assert list((tmp_path / "work").iterdir()) == []  # the shared mark is gone again


def test_a_working_folder_some_process_cannot_see_is_refused_by_all(tmp_path):
    """Two paths stand for two machines' own disks: rank 1 cannot see what rank 0 writes."""
    results = agree([tmp_path / "node0.work", tmp_path / "node1.work"])
    for rank in (0, 1):
        answer, _ = results[rank]
        assert answer.startswith("error: the working folder") and "rank 1 on " in answer
        assert "rank 0 on" not in answer and "filesystem every node mounts" in answer
    assert not (tmp_path / "node0.work" / SHARED_MARK).exists()


# --- train.py under the launchers (slow: each run starts two Pythons with torch) --------------------

@pytest.fixture(scope="module")
def corpus_features(tmp_path_factory, sample_corpus_dir, base_model_dir) -> Path:
    """Features of the bundled sample corpus: 9 train, 8 validation and 9 test clips (9 test clips on 2
    processes with evaluation batches of 4: the last round is padded, which must not count any clip twice)."""
    from whisper_gl.config import FeatureConfig
    from whisper_gl.features import extract_features

    folder = tmp_path_factory.mktemp("corpus") / "features"
    extract_features(FeatureConfig(dataset=str(sample_corpus_dir), model=str(base_model_dir),
                                   output_dir=str(folder), max_samples=9))
    return folder


def train_flags(features: Path, model: Path, output: Path, *extra: str) -> list[str]:
    return ["train.py", "--preset", "smoke", "--features", str(features), "--model", str(model),
            "--output-dir", str(output), "--batch-size", "2", "--eval-batch-size", "4", "--generation-max-length", "8",
            "--learning-rate", "1e-3", "--warmup-steps", "0", "--max-steps", "2", "--eval-steps", "2", *extra]


def launch(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400, **kwargs)


def split_size(features: Path, split: str) -> int:
    from datasets import load_from_disk

    return len(load_from_disk(str(features))[split])


def accelerate_launch() -> list[str]:
    """accelerate launch for 2 processes; without GPUs only --multi_gpu starts several (torchrun underneath)."""
    return [*ACCELERATE, "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(free_port())]


def two_process_results(run: subprocess.CompletedProcess, output: Path, features: Path) -> dict:
    """What every launch of 2 processes x batch 2 must show; its results.json."""
    assert run.returncode == 0, run.stderr[-3000:]
    # One voice: the start line, the table and the closing lines once; the Trainer really distributed.
    assert run.stdout.count("training on 2 processes (1 node x 2, cpu, gloo): global batch 4 = 2 per process x "
                            "2 processes x 1 accumulation step") == 1
    assert run.stdout.count(TABLE_TITLE) == 1 and run.stdout.count("model and reports in") == 1
    assert "ParallelMode.DISTRIBUTED" not in run.stderr
    assert sorted(path.name for path in output.parent.iterdir()) == ["model", "model.work"]  # one final folder

    # Each process took its share: 2 steps of 4 clips are 2/3 of an epoch of 9 clips (one process: 2/5).
    results = json.loads((output / "results.json").read_text())
    processes = results["processes"]
    assert (processes["world_size"], processes["nodes"], processes["global_batch"]) == (2, 1, 4)
    assert processes["samples_seen"] == 8 and processes["epochs"] == pytest.approx(2 / 3)
    # Evaluation scored each clip once: validation at every evaluation, test before and after
    # (9 clips in rounds of 2 x 4: the padding was dropped).
    validation, test = split_size(features, "validation"), split_size(features, "test")
    assert [row["clips"] for row in results["evaluations"]] == [validation, validation]
    assert results["test_clips"] == results["before"]["clips"] == results["after"]["clips"] == test == 9
    return results


@pytest.mark.slow
@pytest.mark.train
def test_torchrun_two_processes_train_as_one_with_a_global_batch(tmp_path, corpus_features, tiny_whisper_dir,
                                                                 examples_dir):
    from whisper_gl import training
    from whisper_gl.config import TrainConfig
    from whisper_gl.transcribe import Transcriber

    output = tmp_path / "model"
    run = launch([*TORCHRUN, "--standalone", "--nproc-per-node", "2",
                  *train_flags(corpus_features, tiny_whisper_dir, output)])
    results = two_process_results(run, output, corpus_features)

    # The WER of the gathered evaluation is the WER of one process scoring the saved model.
    alone = training.evaluate_only(TrainConfig(evaluate_only=True, preset="smoke", model=str(output),
                                               features=str(corpus_features), eval_batch_size=4,
                                               generation_max_length=8))
    for name in ("wer", "cer", "wer_ortho", "cer_ortho"):
        assert alone[name] == pytest.approx(results["after"][name]), name
    # The final folder serves: the engine loads it and transcribes a recording.
    engine = Transcriber(output, backend="transformers", beam_size=1, temperatures=(0.0,), timestamps="vad")
    assert isinstance(engine.transcribe(str(examples_dir / "short.mp3")).text, str)


@pytest.mark.slow
@pytest.mark.train
def test_accelerate_launch_trains_the_same_way(tmp_path, corpus_features, tiny_whisper_dir):
    output = tmp_path / "model"
    run = launch([*accelerate_launch(), *train_flags(corpus_features, tiny_whisper_dir, output)])
    two_process_results(run, output, corpus_features)


@pytest.mark.slow
@pytest.mark.train
def test_torchrun_resumes_every_process_from_the_checkpoint_of_the_killed_run(tmp_path, corpus_features,
                                                                            tiny_whisper_dir):
    output = tmp_path / "model"
    flags = train_flags(corpus_features, tiny_whisper_dir, output, "--max-steps", "6")
    command = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", *flags]
    kill_once_exists(command, REPO, Path(f"{output}.work") / "checkpoint-2" / "trainer_state.json")
    assert not output.exists()

    resumed = launch([*command, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "starting from step 0" not in resumed.stdout and resumed.stdout.count(TABLE_TITLE) == 1
    results = json.loads((output / "results.json").read_text())
    assert [row["step"] for row in results["evaluations"]] == [0, 2, 4, 6]  # step 0 and 2 from the killed run
    assert results["timing"]["steps"] == 6 and results["timing"]["steps_timed"] < 6  # continued, not redone
    assert results["processes"]["samples_seen"] == 6 * 4 and results["processes"]["epochs"] == pytest.approx(2)


@pytest.mark.slow
@pytest.mark.train
def test_two_nodes_on_one_machine(tmp_path, corpus_features, tiny_whisper_dir):
    """Two torchrun node agents (--nnodes 2 --nproc-per-node 1) meeting at a rendezvous on 127.0.0.1."""
    output = tmp_path / "model"
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [subprocess.Popen([*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                               "--rdzv-endpoint", endpoint, *train_flags(corpus_features, tiny_whisper_dir, output)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    (out0, err0), (out1, err1) = [node.communicate(timeout=400) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], (err0[-2000:], err1[-2000:])
    assert "training on 2 processes (2 nodes x 1, cpu, gloo)" in out0 and out0.count(TABLE_TITLE) == 1
    assert TABLE_TITLE not in out1 and "training on" not in out1  # the second node's process is not the main one
    processes = json.loads((output / "results.json").read_text())["processes"]
    assert (processes["world_size"], processes["nodes"], processes["global_batch"]) == (2, 2, 4)


def test_accelerate_without_multi_gpu_on_cpu_is_one_clear_line_before_anything_loads(tmp_path):
    run = launch([*ACCELERATE, "--num_processes", "2", "--main_process_port", str(free_port()),
                  *train_flags(tmp_path / "no-features", tmp_path / "no-model", tmp_path / "model")])
    assert run.returncode != 0
    [line] = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert "add --multi_gpu" in line
    assert not (tmp_path / "model").exists()
