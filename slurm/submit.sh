#!/usr/bin/env bash
# Submit an rtrain job: slurm/submit.sh <node8|multinode> [sbatch options --] [rtrain overrides...]
#   slurm/submit.sh node8 +experiment=sky_t1
#   slurm/submit.sh multinode --nodes=4 -- +experiment=sky_t1 hardware=multinode
# Reads slurm/local.env (partition, account, environment) and creates logs/ for the job's output.
set -euo pipefail
cd "$(dirname "$0")/.."
script="slurm/${1:?usage: slurm/submit.sh <node8|multinode> [sbatch options --] [overrides...]}.sbatch"
shift
[ -f "${script}" ] || { echo "no such job script: ${script}" >&2; exit 1; }
sbatch_args=()
if [[ " $* " == *" -- "* ]]; then
  while [ "$1" != "--" ]; do sbatch_args+=("$1"); shift; done
  shift
fi
if [ -f slurm/local.env ]; then source slurm/local.env; fi  # SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_QOS, ...
mkdir -p logs
exec sbatch "${sbatch_args[@]}" "${script}" "$@"
