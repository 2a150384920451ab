#!/usr/bin/env bash
# One node through the deepspeed launcher (sets RANK/WORLD_SIZE/LOCAL_RANK; --no_local_rank keeps its
# --local_rank argument away from Hydra). Use with a ZeRO-3 hardware config:
#   launch/deepspeed.sh +experiment=sky_t1
#   HOSTFILE=hostfile launch/deepspeed.sh hardware=multinode hardware.num_nodes=2 ...   # several nodes over ssh/pdsh
set -euo pipefail
NPROC=${NPROC:-$(nvidia-smi -L 2>/dev/null | wc -l)}
if [ -n "${HOSTFILE:-}" ]; then
  exec deepspeed --hostfile "${HOSTFILE}" --no_local_rank --module rtrain "$@"
fi
exec deepspeed --num_gpus "${NPROC}" --no_local_rank --module rtrain "$@"
