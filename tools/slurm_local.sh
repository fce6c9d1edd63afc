#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, from Debian's packages, for
# tests and trials of profiles/slurm/ (no systemd: the daemons are started
# directly and everything they write lives in one state folder).
#
#   tools/slurm_local.sh install          # apt-get install slurmctld slurmd munge slurm-client (idempotent)
#   tools/slurm_local.sh start  [DIR]     # configure for localhost, start munged, slurmctld, slurmd; wait until the node is idle
#   tools/slurm_local.sh stop   [DIR]     # stop the daemons this script started (by their pid files)
#   tools/slurm_local.sh env    [DIR]     # print `export SLURM_CONF=...` for the shell
#
# DIR defaults to $SLURM_LOCAL_DIR or /tmp/chunkindex-slurm. Commands (sbatch,
# squeue, sacct, snakemake --executor slurm) reach this cluster through
# SLURM_CONF=DIR/slurm.conf; /etc/slurm is not touched.
#
# Resource enforcement. With cgroup v1 controllers mounted and writable (a VM,
# or a privileged container), jobs run in Slurm's cgroups: memory.limit is the
# job's --mem (the kernel OOM-kills above it) and cpusets its --cpus-per-task.
# Without them (most containers) Slurm runs cgroup-free: proctrack/linuxproc,
# CPU binding with sched_setaffinity (task/affinity) and memory enforced by
# jobacct_gather polling RSS every second (OverMemoryKill). Either way the
# controller enforces --time, and `sacct` answers from slurmctld (no slurmdbd)
# for jobs finished within MinJobAge (1 hour here). SLURM_LOCAL_CGROUP=no
# forces the cgroup-free mode.
set -euo pipefail

cmd=${1:-}
DIR=${2:-${SLURM_LOCAL_DIR:-/tmp/chunkindex-slurm}}
PACKAGES=(slurmctld slurmd munge slurm-client)

log() { echo "[slurm_local] $*" >&2; }
die() { echo "[slurm_local] ERROR: $*" >&2; exit 1; }

have_binaries() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null
}

install() {
    if have_binaries; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "Slurm is not installed and installing it needs root: apt-get install ${PACKAGES[*]}"
    command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install ${PACKAGES[*]}"
    log "installing ${PACKAGES[*]} with apt-get"
    # Several installers may share a machine: wait for the dpkg lock rather than fail.
    local apt=(apt-get -o DPkg::Lock::Timeout=600)
    # policy-rc.d keeps the packages' init scripts from starting daemons we start ourselves.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${PACKAGES[@]}" >&2; then
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >&2
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${PACKAGES[@]}" >&2
    fi
    [ "$created_policy" = 1 ] && rm -f "$policy"
    have_binaries || die "apt-get installed ${PACKAGES[*]} but slurmctld/slurmd/munged/sbatch are not on PATH"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cgroup_v1_usable() {
    [ "${SLURM_LOCAL_CGROUP:-auto}" != no ] || return 1
    local c
    for c in memory cpuset freezer; do
        [ -d "/sys/fs/cgroup/$c" ] || return 1
        mkdir "/sys/fs/cgroup/$c/chunkindex-probe.$$" 2>/dev/null || return 1
        rmdir "/sys/fs/cgroup/$c/chunkindex-probe.$$"
    done
    # cgroup v2 mounted at the root means the v1 plugin cannot be used.
    [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

# Live processes named $1 (zombies of the daemons' forks left aside).
running() { ps -eo pid=,stat=,comm= | awk -v name="$1" '$3 == name && $2 !~ /^Z/ {print $1}'; }

stop() {
    local name pidfile
    for name in slurmd slurmctld munged; do
        pidfile="$DIR/$name.pid"
        # munged may serve another cluster started later: leave it to the last one.
        if [ "$name" = munged ] && [ -n "$(running slurmd)" ]; then
            continue
        fi
        if pid_alive "$pidfile"; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            for _ in $(seq 50); do pid_alive "$pidfile" || break; sleep 0.1; done
            pid_alive "$pidfile" && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

write_config() {
    local mode=$1 host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    # Leave 1 GB to the operating system (RealMemory may not exceed what slurmd finds).
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
    local ctld_port slurmd_port
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    if [ "$mode" = cgroup ]; then
        local proctrack=proctrack/cgroup task="task/cgroup,task/affinity" gather=jobacct_gather/cgroup gather_params=""
        cat > "$DIR/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
EOF
    else
        local proctrack=proctrack/linuxproc task=task/affinity gather=jobacct_gather/linux gather_params="JobAcctGatherParams=OverMemoryKill"
        # slurmd reads cgroup.conf when present: keep it, but say nothing is constrained.
        printf 'CgroupPlugin=cgroup/v1\nConstrainCores=no\nConstrainRAMSpace=no\n' > "$DIR/cgroup.conf"
    fi
    cat > "$DIR/slurm.conf" <<EOF
# Written by tools/slurm_local.sh ($mode mode) - a single-node cluster on localhost.
ClusterName=chunkindex
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=$proctrack
TaskPlugin=$task
JobAcctGatherType=$gather
JobAcctGatherFrequency=task=1
$gather_params
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
# Finished jobs stay queryable (squeue/sacct from slurmctld) for an hour.
MinJobAge=3600
KillWait=5
InactiveLimit=0
MpiDefault=none
# slurmd fetches this file from slurmctld and links /run/slurm/conf to its copy:
# job steps find it there, as the jobstep executor drops SLURM_CONF for srun.
SlurmctldParameters=enable_configless
LaunchParameters=use_interactive_step
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    have_binaries || die "Slurm is not installed: run tools/slurm_local.sh install (apt-get install ${PACKAGES[*]})"
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    export SLURM_CONF="$DIR/slurm.conf"
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" \
        && sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        log "already running in $DIR"
        return 0
    fi
    stop
    # Job steps find the configuration through /run/slurm/conf, which the
    # running slurmd owns: one local cluster per machine.
    local other
    other="$(running slurmctld) $(running slurmd)"
    other=$(echo $other)
    [ -z "$other" ] || die "another Slurm daemon (pid $other) runs on this machine; one local cluster at a time"
    local mode=linux
    cgroup_v1_usable && mode=cgroup
    write_config "$mode"
    # munge at its default socket: slurmd asks for its configuration before it
    # has read any AuthInfo. A munged already serving it (the system's) is used.
    if munge -n </dev/null >/dev/null 2>&1; then
        log "using the munged already running at /run/munge/munge.socket.2"
    else
        [ -s "$DIR/munge.key" ] || head -c 1024 /dev/urandom > "$DIR/munge.key"
        chmod 400 "$DIR/munge.key"
        mkdir -p /run/munge
        munged --force --key-file="$DIR/munge.key" --socket=/run/munge/munge.socket.2 \
            --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munged.seed" \
            2>>"$DIR/log/munged.log" || die "munged did not start: $(tail -3 "$DIR/log/munged.log")"
    fi
    # -c: a fresh controller state each start (no jobs left from an earlier cluster).
    slurmctld -c -f "$SLURM_CONF" 2>>"$DIR/log/slurmctld.log" \
        || die "slurmctld did not start: $(tail -3 "$DIR/log/slurmctld.log")"
    local port
    port=$(sed -n 's/^SlurmctldPort=//p' "$SLURM_CONF")
    slurmd --conf-server "127.0.0.1:$port" 2>>"$DIR/log/slurmd.log" || {
        if [ "$mode" = cgroup ]; then
            log "slurmd did not start with cgroups ($(tail -1 "$DIR/log/slurmd.log")); retrying cgroup-free"
            stop
            SLURM_LOCAL_CGROUP=no start
            return
        fi
        die "slurmd did not start: $(tail -3 "$DIR/log/slurmd.log")"
    }
    local state=""
    for _ in $(seq 150); do
        state=$(sinfo -h -o %T 2>/dev/null || true)
        case "$state" in
            idle*|mixed*|allocated*) break ;;
        esac
        sleep 0.2
    done
    case "$state" in
        idle*|mixed*|allocated*) ;;
        *)
            stop
            die "the node did not become idle (state '${state:-none}'): $(tail -3 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log")"
            ;;
    esac
    echo "$mode" > "$DIR/mode"
    log "running in $DIR ($mode mode, $(nproc) CPUs); export SLURM_CONF=$SLURM_CONF"
}

case "$cmd" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
    *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
