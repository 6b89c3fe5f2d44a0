#!/usr/bin/env bash
# A throw-away single-node SLURM on this machine, for tests/cluster/run.sh (needs root, Debian).
#   tests/cluster/slurm.sh up     install (first time), write slurm.conf, start munged/slurmctld/slurmd
#   tests/cluster/slurm.sh down   stop the daemons that `up` started (by pid), nothing else
# State (logs, pids, spool) lives in $SDSQ_SLURM_DIR (default /tmp/sdsq-slurm). The config goes to
# /etc/slurm/slurm.conf, where every client finds it: inside a job the jobstep plugin calls
# srun without SLURM_CONF (it keeps only the job's identity variables), so srun needs the
# default path. An existing slurm.conf that this script did not write is never overwritten.
# Settings found to work with Debian 12's slurm 22.05 without an accounting daemon
# (see docs/cluster.md).
set -euo pipefail
DIR=${SDSQ_SLURM_DIR:-/tmp/sdsq-slurm}
NODE=sdsqnode
CONF=/etc/slurm/slurm.conf
MARKER="# written by sd-squeeze tests/cluster/slurm.sh"

log() { echo "[slurm.sh] $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    log "installing slurmctld slurmd slurm-client munge (Debian packages)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    mkdir -p "$DIR/ctld" "$DIR/spool"
    local cpus mem_mb
    cpus=$(nproc)
    # RealMemory a little under MemTotal, or slurmd registers the node as having less than promised.
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        log "$CONF exists and was not written by this script: refusing to replace it"
        return 1
    fi
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF" <<CONF
$MARKER
ClusterName=sdsq
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MinJobAge=300
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
}

start_bg() {  # start_bg NAME CMD...: run a daemon in the foreground mode, in the background; remember its pid
    local name=$1
    shift
    "$@" >>"$DIR/$name.out" 2>&1 &
    echo $! >"$DIR/$name.started-pid"
    log "started $name (pid $!)"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
    local secs=$1 what=$2
    shift 2
    for _ in $(seq "$secs"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    log "timed out waiting for $what"
    return 1
}

node_idle() { sinfo -h -n "$NODE" -o %T | grep -qE '^(idle|mixed|allocated)'; }

up() {
    install_packages
    write_conf
    if ! munge_works; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        start_bg munged runuser -u munge -- /usr/sbin/munged --foreground
        wait_for 20 munged munge_works
    else
        log "munged already answering; not starting another"
    fi
    if ! scontrol ping 2>/dev/null | grep -q UP; then
        start_bg slurmctld slurmctld -D
        wait_for 30 slurmctld bash -c 'scontrol ping | grep -q UP'
    fi
    if ! node_idle; then
        start_bg slurmd slurmd -D -N "$NODE"
        wait_for 60 "node $NODE" node_idle || { tail -20 "$DIR"/slurm*.log >&2; return 1; }
    fi
    sinfo >&2
}

down() {
    local name pid
    for name in slurmd slurmctld munged; do
        [ -f "$DIR/$name.started-pid" ] || continue
        pid=$(cat "$DIR/$name.started-pid")
        if kill "$pid" 2>/dev/null; then
            log "stopping $name (pid $pid)"
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        fi
        rm -f "$DIR/$name.started-pid"
    done
}

case "${1:-}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
