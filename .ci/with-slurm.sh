#!/usr/bin/env bash
# Run a command (the tests) with the single-node SLURM of .ci/slurm-up.sh, then stop the
# daemons started for it (.ci/slurm-down.sh), also when the command fails or is interrupted.
set -u
here=$(dirname "$0")
trap 'bash "$here/slurm-down.sh"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bash "$here/slurm-up.sh"
"$@"
