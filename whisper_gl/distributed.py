"""Training on several processes (`torchrun`, `accelerate launch`): what the Trainer leaves to us.

The Trainer shards every batch, averages gradients (DDP: nccl on GPUs, gloo on CPUs), shards
evaluation and gathers it without the padding samples, and saves checkpoints from the main
process only. This module adds what it does not do: refusing launches that cannot work before
a model is loaded, agreeing on one starting checkpoint, checking that every node sees the
working folder it must share, and saying what the processes add up to (the global batch).

Every process runs the same code; only the main one (global rank 0) prints and writes.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from . import WhisperGLError

# Written by rank 0 into the working folder; every other process must read it back there.
SHARED_MARK = ".whisper-gl-shared"
# What launchers set in each process: torchrun and `accelerate launch --multi_gpu` (RANK,
# WORLD_SIZE), MPI (PMI_SIZE, OMPI_COMM_WORLD_SIZE, ...), read by accelerate.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def is_main_process(environ: Mapping[str, str] = os.environ) -> bool:
    """True in the process that prints and writes: global rank 0, or the only process."""
    return int(environ.get("RANK", "0") or 0) == 0


def say(*values: Any) -> None:
    """print(), from the main process only (the others would repeat every line)."""
    if is_main_process():
        print(*values, flush=True)


def check_launcher(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse `accelerate launch --num_processes N` where it finds fewer than two GPUs: its plain
    launcher then starts a single process (it expects mpirun), which would silently train alone."""
    asked_for_several = "ACCELERATE_USE_CPU" in environ and "MASTER_ADDR" in environ
    if asked_for_several and not any(name in environ for name in WORLD_SIZE_VARIABLES):
        raise WhisperGLError(
            "accelerate launch started one process where several were asked for (it does so with fewer than "
            "two GPUs): add --multi_gpu to start them through torchrun (gloo on CPUs), or use torchrun "
            "--nproc-per-node N")


def launcher_precision(choice: str, environ: Mapping[str, str] = os.environ) -> str:
    """--precision, reconciled with `accelerate launch --mixed_precision` (or its config file),
    which the Trainer would otherwise apply behind --precision's back."""
    asked = environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked in ("", "no") or asked == choice:
        return choice
    if choice == "auto" and asked in ("fp16", "bf16"):
        return asked
    raise WhisperGLError(f"accelerate launch asks for --mixed_precision {asked} but --precision is {choice}: "
                         f"give the precision once (--precision auto follows accelerate's fp16 or bf16)")


def check_world_size(world_size: int, train_clips: int) -> None:
    if world_size > train_clips:
        raise WhisperGLError(f"{world_size} processes for {train_clips} training clips: every process needs at "
                             f"least one clip per step; start at most {train_clips} processes")


def agreed_start(work_dir: Path, args, choose: Callable[[], str | None]) -> str | None:
    """The checkpoint every process starts from (None: step 0), chosen once by the main process.

    Only the main process runs `choose` (which empties the working folder for a fresh run, or
    picks its last complete checkpoint for `--resume`) and tells the others the answer, so no two
    processes ever start from different steps. Checkpoints are written once, by the main process, and read by every process (to
    resume, and to load the best one at the end): on several machines the working folder must be
    one shared folder, which is checked here with a mark only the main process writes.
    """
    if args.world_size == 1:
        return choose()
    import torch.distributed as dist

    chosen: list[Any] = [None]
    if args.process_index == 0:
        checkpoint = choose()
        work_dir.mkdir(parents=True, exist_ok=True)
        mark = uuid.uuid4().hex
        (work_dir / SHARED_MARK).write_text(mark)
        chosen = [(checkpoint, mark)]
    dist.broadcast_object_list(chosen, src=0)
    checkpoint, mark = chosen[0]
    views: list[Any] = [None] * args.world_size
    dist.all_gather_object(views, (socket.gethostname(), _reads(work_dir / SHARED_MARK, mark)))
    if args.process_index == 0:
        (work_dir / SHARED_MARK).unlink()
    blind = [f"rank {rank} on {host}" for rank, (host, sees) in enumerate(views) if not sees]
    if blind:
        raise WhisperGLError(
            f"the working folder {work_dir} is not shared by every process ({', '.join(blind)} cannot see what "
            f"rank 0 wrote there): checkpoints are written once and read by all, so put --output-dir (or "
            f"--work-dir) on a filesystem every node mounts at the same path")
    return checkpoint


def _reads(path: Path, mark: str) -> bool:
    try:
        return path.read_text() == mark
    except OSError:
        return False


def end_processes() -> None:
    """Leave the process group cleanly (each process, once its part is done)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def batch_layout(args, train_clips: int) -> dict[str, Any]:
    """What the processes add up to: the global batch is world size x per-device batch x accumulation."""
    global_batch = args.world_size * args.per_device_train_batch_size * args.gradient_accumulation_steps
    nodes = max(1, args.world_size // int(os.environ.get("LOCAL_WORLD_SIZE", args.world_size) or 1))
    return {
        "world_size": args.world_size,
        "nodes": nodes,
        "backend": args.distributed_state.backend if args.world_size > 1 else None,
        "device": str(args.device.type),
        "per_device_batch": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "global_batch": global_batch,
        "steps_per_epoch": -(-train_clips // global_batch),
    }


def batch_text(layout: dict[str, Any]) -> str:
    """'global batch 8 = 2 per process x 4 processes x 1 accumulation step'."""
    processes, steps = layout["world_size"], layout["grad_accum"]
    return (f"global batch {layout['global_batch']} = {layout['per_device_batch']} per process x {processes} "
            f"process{'es' if processes > 1 else ''} x {steps} accumulation step{'s' if steps > 1 else ''}")


def describe_layout(layout: dict[str, Any]) -> str:
    """One line for the start of a run: where it trains and how big a step is."""
    where = f"1 process ({layout['device']})"
    if layout["world_size"] > 1:
        nodes, per_node = layout["nodes"], layout["world_size"] // layout["nodes"]
        where = (f"{layout['world_size']} processes ({nodes} node{'s' if nodes > 1 else ''} x {per_node}, "
                 f"{layout['device']}, {layout['backend']})")
    return f"training on {where}: {batch_text(layout)}; {layout['steps_per_epoch']} steps per epoch"
