"""Timing Trainer steps for the benchmarks (bench_window.py, bench_training.py).

Samples/s counts whole optimizer steps, batches (loading and collating) included, from the end of
the first step, an untimed warm-up, to the end of the last one; the evaluation and checkpoint that
the Trainer schedules are cancelled so only training is measured.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback


class StepClock(TrainerCallback):
    """The time at the end of each optimizer step (after the GPU has finished it)."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        control.should_evaluate = control.should_save = False


def timed_steps(trainer, batch_size: int) -> tuple[float, float]:
    """One train() call: (samples/s, s/step) over the steps after the first."""
    clock = StepClock()
    trainer.add_callback(clock)
    try:
        trainer.train()
    finally:
        trainer.remove_callback(clock)
    seconds = clock.ends[-1] - clock.ends[0]
    steps = len(clock.ends) - 1
    return steps * batch_size / seconds, seconds / steps
