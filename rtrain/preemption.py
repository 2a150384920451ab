"""Preemption: on SIGUSR1, SIGUSR2 or SIGTERM, finish the current optimizer step, checkpoint, and exit for requeue.

SLURM sends a signal ahead of the time limit (``#SBATCH --signal=...@120``) or on preemption; submitit's default is
SIGUSR2. Where signals cannot reach the training processes (torchrun agents in between), the batch script touches
``<run dir>/.preempt`` instead (see slurm/). The handler only sets a flag; the trainer checks it after every step
(all ranks agree through one all-reduce), saves a checkpoint, and calls :meth:`PreemptionHandler.exit_for_requeue`:
under SLURM rank 0 requeues the job with ``scontrol requeue`` (unless ``RTRAIN_REQUEUE=0``), and every rank exits
with code 75 (EX_TEMPFAIL). The requeued job runs the same command in the same run directory, and
``trainer.resume=auto`` continues from the checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

import torch

from rtrain.distributed import DistInfo, all_reduce_sum

EXIT_REQUEUE = 75
SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
FLAG_FILE = ".preempt"


class PreemptionHandler:
    def __init__(self, dist: DistInfo, run_dir: Path) -> None:
        self.dist = dist
        self.flag_file = run_dir / FLAG_FILE
        self.flag = False
        self.reason = ""
        if dist.is_main:
            self.flag_file.unlink(missing_ok=True)  # left by the job that was preempted: this run is its resume
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.flag = True
        self.reason = signal.Signals(signum).name

    def requested(self) -> bool:
        """True on every rank once any rank got a signal or the flag file appeared."""
        if not self.flag and self.dist.is_main and self.flag_file.exists():
            self.flag, self.reason = True, str(self.flag_file)
        if self.dist.world_size == 1:
            return self.flag
        t = torch.tensor([1.0 if self.flag else 0.0], device=self.dist.device)
        return bool(all_reduce_sum(t).item() > 0)

    def exit_for_requeue(self, step: int) -> None:
        if self.dist.is_main:
            print(f"preempted ({self.reason or 'signal on another rank'}): checkpoint at step {step} written",
                  flush=True)
            self.flag_file.unlink(missing_ok=True)
            job = os.environ.get("SLURM_JOB_ID")
            if job and os.environ.get("RTRAIN_REQUEUE", "1") != "0":
                result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
                print(f"scontrol requeue {job}: exit {result.returncode} {result.stderr.strip()}", flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_REQUEUE)
