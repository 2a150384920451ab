"""Atomic, resumable checkpoints in ``<run dir>/checkpoints/step_<step, 8 digits>/``.

A checkpoint holds the engine's state (model and optimizer; sharded per rank under ZeRO-3), the trainer state
(step, tokens seen, data position, dataset hash) and every rank's RNG states. It is written into a hidden
``.tmp_step_*`` directory and renamed into place only when every rank has finished, with ``trainer_state.json``
written last, so a crash mid-save never leaves a checkpoint that looks complete and never touches the previous
one. The newest ``keep_last`` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtrain.distributed import DistInfo, barrier

STATE_FILE = "trainer_state.json"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    def __init__(self, run_dir: Path, keep_last: int, dist: DistInfo) -> None:
        self.root = run_dir / "checkpoints"
        self.keep_last = max(1, keep_last)
        self.dist = dist

    def latest(self) -> Path | None:
        """The newest complete checkpoint (one with its trainer state written), if any."""
        if not self.root.is_dir():
            return None
        done = sorted(p for p in self.root.glob("step_*") if (p / STATE_FILE).is_file())
        return done[-1] if done else None

    def save(self, step: int, trainer_state: dict[str, Any], save_engine: Callable[[Path], None]) -> float:
        """Write checkpoint ``step``; all ranks call this. Returns the seconds it took."""
        start = time.perf_counter()
        name = f"step_{step:08d}"
        tmp, final = self.root / f".tmp_{name}", self.root / name
        if self.dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        save_engine(tmp)
        torch.save(rng_state(), tmp / f"rng_rank{self.dist.rank}.pt")
        barrier()
        if self.dist.is_main:
            state_tmp = tmp / (STATE_FILE + ".part")
            state_tmp.write_text(json.dumps({**trainer_state, "world_size": self.dist.world_size}, indent=2))
            os.replace(state_tmp, tmp / STATE_FILE)
            _fsync_dir(tmp)
            if final.exists():  # the same step saved again (e.g. after a resume): keep it until the new one is in
                old = self.root / f".old_{name}"
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
                tmp.rename(final)
                shutil.rmtree(old)
            else:
                tmp.rename(final)
            _fsync_dir(self.root)
            self._prune()
        barrier()
        return time.perf_counter() - start

    def _prune(self) -> None:
        done = sorted(p for p in self.root.glob("step_*") if (p / STATE_FILE).is_file())
        for old in done[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".tmp_step_*"):  # left by a crash mid-save
            shutil.rmtree(stale, ignore_errors=True)

    def load_state(self, path: Path) -> dict[str, Any]:
        """Trainer state of a checkpoint; restores this rank's RNG if the world size is unchanged."""
        state = json.loads((path / STATE_FILE).read_text())
        rng_file = path / f"rng_rank{self.dist.rank}.pt"
        if state.get("world_size") == self.dist.world_size and rng_file.exists():
            set_rng_state(torch.load(rng_file, weights_only=False))
        return state
