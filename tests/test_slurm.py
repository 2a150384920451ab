"""The SLURM job scripts and launchers, run for real on this machine with stand-ins for srun and scontrol."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, REPO, cli_env, read_metrics

pytestmark = pytest.mark.slow
ARGS = [*FAST, "trainer.max_steps=10", "trainer.global_batch_size=4", "hardware=cpu"]


@pytest.fixture
def fake_slurm(tmp_path: Path) -> dict[str, str]:
    """srun runs its command once; scontrol resolves the node list to localhost and records requeues."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(f"""#!/usr/bin/env bash
echo "$@" >> {log}
if [ "$1 $2" = "show hostnames" ]; then echo localhost; fi
""")
    (bin_dir / "srun").write_text("""#!/usr/bin/env bash
while [[ "$1" == --* ]]; do shift; done
exec "$@"
""")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return cli_env(PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}", SLURM_JOB_ID="4242",
                   SLURM_JOB_NAME="test", SLURM_SUBMIT_DIR=str(REPO), SLURM_JOB_NODELIST="node[1]",
                   SLURM_NNODES="1", NPROC="2", RTRAIN_RUN_DIR=str(tmp_path / "run"), FAKE_LOG=str(log))


def test_node8_script_trains_and_requeues_on_signal(tmp_path: Path, fake_slurm: dict[str, str]) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(["bash", "slurm/node8.sbatch", *ARGS], cwd=REPO, env=fake_slurm,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not any("loss" in r and r["step"] >= 2 for r in (read_metrics(run_dir) if run_dir.exists() else [])):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=B:USR1@120` delivers to the batch shell
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    assert "asking rtrain to checkpoint" in out
    assert "requeue 4242" in Path(fake_slurm["FAKE_LOG"]).read_text()  # rank 0 asked SLURM to requeue the job
    assert len(list((run_dir / "checkpoints").glob("step_*"))) == 1

    # SLURM reruns the same script with the same job id: it resumes in the same run directory.
    again = subprocess.run(["bash", "slurm/node8.sbatch", *ARGS], cwd=REPO, env=fake_slurm, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resumed from" in again.stdout + again.stderr
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 10


def test_multinode_script_rendezvous(tmp_path: Path, fake_slurm: dict[str, str]) -> None:
    out = subprocess.run(["bash", "slurm/multinode.sbatch", *ARGS], cwd=REPO, env=fake_slurm, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 10
    assert "rendezvous localhost:" in out.stdout


def test_torchrun_launcher(tmp_path: Path) -> None:
    out = subprocess.run(["bash", "launch/torchrun.sh", *ARGS, f"hydra.run.dir={tmp_path}"], cwd=REPO,
                         env=cli_env(NPROC="2", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "summary.json").read_text())["world_size"] == 2


def test_ranks_from_slurm_tasks_without_torchrun(tmp_path: Path, fake_slurm: dict[str, str]) -> None:
    """srun (or submitit) starting one task per device: rank and world size come from SLURM's variables."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**fake_slurm, "SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank),
               "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "-m", "rtrain", *ARGS, f"hydra.run.dir={tmp_path / 'run'}"],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["world_size"] == 2
