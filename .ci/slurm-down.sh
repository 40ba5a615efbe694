#!/usr/bin/env bash
# Stop the daemons that .ci/slurm-up.sh started (the pids it recorded in STATE), in the
# reverse order of their start; daemons it found running are left alone.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE=${SLURM_STATE:-$PWD/.slurm-state}
[[ -f $STATE ]] || exit 0
mapfile -t started < <(grep -E '^(munged|slurmctld|slurmd) [0-9]+$' "$STATE" | tac)
for entry in "${started[@]}"; do
    read -r name pid <<< "$entry"
    # Only a process that is still that daemon: a pid may have been reused since.
    [[ $(cat "/proc/$pid/comm" 2> /dev/null) == "$name" ]] || continue
    kill -TERM "$pid"
    for _ in $(seq 40); do kill -0 "$pid" 2> /dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2> /dev/null && kill -KILL "$pid"
    echo "slurm-down: stopped $name ($pid)" >&2
done
rm -f "$STATE"
