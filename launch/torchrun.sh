#!/usr/bin/env bash
# One node, all of its GPUs, through torchrun (rank and world size come from torchrun):
#   launch/torchrun.sh +experiment=sky_t1 [overrides...]
#   NPROC=2 launch/torchrun.sh hardware=cpu          # two CPU processes (gloo), e.g. to try the multi-rank path
set -euo pipefail
NPROC=${NPROC:-$(nvidia-smi -L 2>/dev/null | wc -l)}
if [ "${NPROC}" -lt 1 ]; then
  echo "launch/torchrun.sh: no GPU visible; set NPROC (and hardware=cpu for a CPU run)" >&2
  exit 1
fi
exec torchrun --standalone --nproc_per_node="${NPROC}" -m rtrain "$@"
