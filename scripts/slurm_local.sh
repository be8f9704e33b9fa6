#!/usr/bin/env bash
# A real single-node Slurm cluster on localhost, for testing the workflow's Slurm profile.
#
#   scripts/slurm_local.sh start    install the Debian packages if missing, start munge, MariaDB,
#                                   slurmdbd, slurmctld and slurmd (idempotent)
#   scripts/slurm_local.sh stop     stop every daemon started here (by the PIDs in their pid files)
#   scripts/slurm_local.sh status   exit 0 when the cluster answers and its node is usable
#
# Needs root and apt-get (Debian 12, no systemd). Facts behind the steps: docs/cluster notes in
# README (munged must run as the munge user; the cluster must exist in accounting before slurmctld
# starts; RealMemory must not exceed what slurmd detects).
set -euo pipefail

CLUSTER=${DYCE_SLURM_CLUSTER:-dycelocal}
PARTITION=${DYCE_SLURM_PARTITION:-main}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
DB_PASS=dyce-local-slurmdbd
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

log() { echo "slurm_local: $*" >&2; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq 1 $((limit * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    log "timed out after ${limit}s waiting for $what"
    return 1
}

node_usable() {
    scontrol ping 2>/dev/null | grep -q UP &&
        sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'
}

# The whole chain answers: the node takes jobs and accounting (sacct, which the profile reads
# job states from) reaches its database. A cluster whose database died is not healthy: the
# Slurm executor would poll a failing sacct forever.
cluster_healthy() {
    node_usable && sacct -n -X >/dev/null 2>&1
}

pid_alive() {  # pid_alive PIDFILE
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        # "rc" (removed, config files left) is not installed: ask for the full status.
        [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] \
            || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munge sh -c 'munge -n | unmunge'
}

start_mariadb() {
    if mariadb-admin ping >/dev/null 2>&1; then return 0; fi
    install -d -o mysql -g mysql /run/mysqld
    (mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
        >/var/log/dyce-mariadb.log 2>&1 &)
    wait_for 30 mariadb mariadb-admin ping
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

write_configs() {
    install -d "$CONF_DIR"
    install -d -o slurm -g slurm "$LOG_DIR" "$STATE_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
EOF
    chown slurm:slurm "$CONF_DIR/slurmdbd.conf" && chmod 600 "$CONF_DIR/slurmdbd.conf"
    cat >"$CONF_DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_slurmdbd() {
    if ! sacctmgr -n list cluster >/dev/null 2>&1; then
        # A running slurmdbd reconnects by itself once its database is back.
        pid_alive /run/slurmdbd.pid || slurmdbd
        wait_for 30 slurmdbd sacctmgr -n list cluster
    fi
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurm() {
    if ! scontrol ping 2>/dev/null | grep -q UP; then
        slurmctld
        wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
    fi
    if [ ! -s /run/slurmd.pid ] || ! kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; then
        slurmd -N localhost
    fi
    if ! wait_for 20 "an idle node" node_usable; then
        scontrol update nodename=localhost state=resume || true
        wait_for 20 "an idle node" node_usable
    fi
}

stop_pidfile() {  # stop_pidfile FILE NAME
    local file=$1 name=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name ($pid)"
        kill "$pid"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$file"
}

case "${1:-}" in
start)
    [ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 3; }
    if command -v scontrol >/dev/null && cluster_healthy; then log "already running"; exit 0; fi
    command -v apt-get >/dev/null || { log "apt-get not found"; exit 3; }
    install_packages
    start_munge
    start_mariadb
    write_configs
    start_slurmdbd
    start_slurm
    log "cluster '$CLUSTER' up: partition '$PARTITION', account 'root'"
    ;;
stop)
    stop_pidfile /run/slurmd.pid slurmd
    stop_pidfile /run/slurmctld.pid slurmctld
    stop_pidfile /run/slurmdbd.pid slurmdbd
    stop_pidfile /run/mysqld/mysqld.pid mariadbd
    stop_pidfile /run/munge/munged.pid munged
    ;;
status)
    command -v scontrol >/dev/null && cluster_healthy && { sinfo; exit 0; }
    log "not running"
    exit 1
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 64
    ;;
esac
