"""Preemption: on SIGUSR1 or SIGTERM, finish the current optimizer step, checkpoint, and exit for requeue.

SLURM sends the signal ahead of the time limit (``#SBATCH --signal=USR1@120``) or on preemption. The handler
only sets a flag; the trainer checks it after every step (all ranks agree through one all-reduce), saves a
checkpoint, and calls :meth:`PreemptionHandler.exit_for_requeue`: under SLURM rank 0 requeues the job with
``scontrol requeue`` (unless ``RTRAIN_REQUEUE=0``), and every rank exits with code 75 (EX_TEMPFAIL). The
requeued job runs the same command with the same ``RTRAIN_RUN_DIR``, and ``trainer.resume=auto`` continues.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from types import FrameType

import torch

from rtrain.distributed import DistInfo, all_reduce_sum

EXIT_REQUEUE = 75


class PreemptionHandler:
    def __init__(self, dist: DistInfo, signals: tuple[int, ...] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
        self.dist = dist
        self.flag = False
        self.signal_name = ""
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.flag = True
        self.signal_name = signal.Signals(signum).name

    def requested(self) -> bool:
        """True on every rank once any rank got the signal."""
        if self.dist.world_size == 1:
            return self.flag
        t = torch.tensor([1.0 if self.flag else 0.0], device=self.dist.device)
        return bool(all_reduce_sum(t).item() > 0)

    def exit_for_requeue(self, step: int) -> None:
        if self.dist.is_main:
            print(f"preempted ({self.signal_name or 'signal'}): checkpoint at step {step} written", flush=True)
            job = os.environ.get("SLURM_JOB_ID")
            if job and os.environ.get("RTRAIN_REQUEUE", "1") != "0":
                result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
                print(f"scontrol requeue {job}: {result.returncode} {result.stderr.strip()}", flush=True)
        sys.stdout.flush()
        os._exit(EXIT_REQUEUE)
