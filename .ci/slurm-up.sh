#!/usr/bin/env bash
# Start a single-node SLURM (munged, slurmctld, slurmd from Debian) for the tests marked
# `slurm`. Installs the packages when missing, writes /etc/slurm/slurm.conf, starts the
# daemons that are not already running and records their pids in STATE (default
# .slurm-state in the repository) so that .ci/slurm-down.sh stops only those.
# Where this cannot be done (not root, no apt-get) it writes the reason to STATE and
# exits 0: the tests then skip with that reason (and fail under CI=true).
set -uo pipefail
cd "$(dirname "$0")/.."
STATE=${SLURM_STATE:-$PWD/.slurm-state}
CONF=/etc/slurm/slurm.conf
MARK="# written by radiolab .ci/slurm-up.sh"
LOGDIR=/var/log/slurm
: > "$STATE"

give_up() {
    echo "skip: $*" >> "$STATE"  # after the pids of daemons already started
    echo "slurm-up: $* (the SLURM tests will skip)" >&2
    exit 0
}

wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

node_ready() { sinfo -h -n "$HOST" -o %T | grep -Eq '^(idle|mixed|allocated)'; }

[[ $(id -u) == 0 ]] || give_up "not root: a single-node SLURM needs root"
if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null || ! command -v munged > /dev/null \
        || ! command -v sbatch > /dev/null; then
    command -v apt-get > /dev/null || give_up "SLURM is not installed and there is no apt-get"
    echo "slurm-up: installing slurmctld, slurmd, slurm-client, munge" >&2
    install() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends \
            slurmctld slurmd slurm-client munge > /dev/null
    }
    # A fresh image may have no package lists yet: update them once, then try again.
    install || { apt-get update -q > /dev/null && install; } \
        || give_up "apt-get install slurmctld slurmd slurm-client munge failed"
fi

HOST=$(hostname -s)
CPUS=$(nproc)
MEMORY=$(( $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) - 2000 ))
if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    give_up "$CONF exists and was not written by this script; not touching it"
fi
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGDIR" /run/slurm
# Slurm 22.05 rejects CgroupPlugin=disabled: no cgroup.conf at all, hence these plugins.
cat > "$CONF.tmp" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.tmp" "$CONF"

# munged, as user munge, with the key the package generated (or a new one).
if ! munge -n < /dev/null 2> /dev/null | unmunge > /dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged || give_up "munged did not start (see /var/log/munge/munged.log)"
    wait_for 20 test -s /run/munge/munged.pid || give_up "munged wrote no pid file"
    echo "munged $(cat /run/munge/munged.pid)" >> "$STATE"
fi

if ! scontrol ping 2> /dev/null | grep -q UP; then
    rm -f /run/slurm/slurmctld.pid
    # -c: start with an empty queue, whatever an earlier run left in the state folder.
    /usr/sbin/slurmctld -c || give_up "slurmctld did not start (see $LOGDIR/slurmctld.log)"
    wait_for 30 test -s /run/slurm/slurmctld.pid || give_up "slurmctld wrote no pid file"
    echo "slurmctld $(cat /run/slurm/slurmctld.pid)" >> "$STATE"
    wait_for 30 sh -c 'scontrol ping | grep -q UP' || give_up "slurmctld does not answer (see $LOGDIR/slurmctld.log)"
fi

if ! node_ready; then
    if ! { [[ -s /run/slurm/slurmd.pid ]] && kill -0 "$(cat /run/slurm/slurmd.pid)" 2> /dev/null; }; then
        rm -f /run/slurm/slurmd.pid
        /usr/sbin/slurmd || give_up "slurmd did not start (see $LOGDIR/slurmd.log)"
        wait_for 30 test -s /run/slurm/slurmd.pid || give_up "slurmd wrote no pid file"
        echo "slurmd $(cat /run/slurm/slurmd.pid)" >> "$STATE"
    fi
    wait_for 60 node_ready || give_up "node $HOST did not come up (see $LOGDIR/slurmd.log)"
fi
echo "slurm-up: node $HOST ($CPUS CPUs, $MEMORY MB) is up; started here: $(cut -d' ' -f1 "$STATE" | xargs)" >&2
