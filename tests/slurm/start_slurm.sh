#!/usr/bin/env bash
# Start a single-node Slurm (munged + slurmctld + slurmd) on this machine, as root, for the tests.
# Idempotent: a running cluster is left as it is. Prints the partition to submit to.
# Needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "start_slurm.sh: must run as root" >&2; exit 2; }
command -v slurmctld >/dev/null && command -v munged >/dev/null || { echo "start_slurm.sh: slurm-wlm/munge not installed" >&2; exit 2; }
host=$(hostname -s)
cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it follows OMP_NUM_THREADS
mem=$(awk '/MemTotal/ {print int($2/1024) - 512}' /proc/meminfo)
conf=/etc/slurm/slurm.conf
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
if [ ! -f /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
cat > "$conf.new" <<CONF
# written by hrm-tui's tests/slurm/start_slurm.sh: one node, this machine
ClusterName=hrmtest
MpiDefault=none
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MinJobAge=600
KillWait=5
OverTimeLimit=0
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4 PriorityTier=1
# A job in 'urgent' preempts (cancels) the jobs of 'debug' it needs the CPUs of: the preemption test.
PartitionName=urgent Nodes=$host Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=10
CONF
if ! cmp -s "$conf.new" "$conf"; then mv "$conf.new" "$conf"; changed=1; else rm -f "$conf.new"; changed=0; fi
rm -f /etc/slurm/cgroup.conf  # autodetect; slurm 22.05 has no 'disabled'
started=""
running() { pgrep -r R,S,D -x "$1" >/dev/null; }
if ! running munged; then
  su -s /bin/sh munge -c "munged" 2>/dev/null || munged --force
  started="$started munged"
fi
stop() { pkill -x "$1" || true; for _ in $(seq 1 50); do running "$1" || return 0; sleep 0.2; done; pkill -9 -x "$1" || true; }
restarted=""  # running daemons restarted for a new slurm.conf: not ours to stop later
if [ "$changed" = 1 ]; then
  for d in slurmctld slurmd; do running "$d" && { stop "$d"; restarted="$restarted $d"; }; done
fi
for d in slurmctld slurmd; do
  running "$d" && continue
  "$d"
  case " $restarted " in *" $d "*) ;; *) started="$started $d" ;; esac
done
[ -n "$restarted" ] && echo "restarted for the new slurm.conf:$restarted"
echo "started:${started:- nothing (already running)}"
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  case "$state" in idle*|mixed*|alloc*) echo "slurm up: node $host ($state), partition debug"; exit 0;; esac
  [ "$state" = "down" ] || [ "$state" = "down*" ] && scontrol update nodename="$host" state=resume 2>/dev/null || true
  sleep 1
done
echo "start_slurm.sh: node $host did not become idle (state: ${state:-none}); see /var/log/slurm" >&2
exit 1
