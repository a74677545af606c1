#!/usr/bin/env bash
# Stop the daemons named on the command line (slurmd slurmctld munged), as started by start_slurm.sh.
# By their pid files, never by a broad name match; waits until each has exited.
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "stop_slurm.sh: must run as root" >&2; exit 2; }
for daemon in "$@"; do
  case "$daemon" in
    slurmd) pidfile=/run/slurmd.pid ;;
    slurmctld) pidfile=/run/slurmctld.pid ;;
    munged) pidfile=/run/munge/munged.pid ;;
    *) echo "stop_slurm.sh: unknown daemon $daemon" >&2; continue ;;
  esac
  pid=$(cat "$pidfile" 2>/dev/null) || { echo "$daemon: no pid file"; continue; }
  kill "$pid" 2>/dev/null || { echo "$daemon: not running"; continue; }
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  echo "stopped $daemon (pid $pid)"
done
