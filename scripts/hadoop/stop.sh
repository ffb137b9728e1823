#!/usr/bin/env bash
# Stop the mini cluster started by start.sh and delete its run directory
# (HDFS/YARN data, logs, HADOOP_CONF_DIR). The jar cache is kept.
#
#   scripts/hadoop/stop.sh
#
# Environment: LOFN_HADOOP_RUN_DIR (as for start.sh),
#   LOFN_HADOOP_STOP_TIMEOUT (seconds before SIGKILL, default 60),
#   LOFN_HADOOP_KEEP_RUN_DIR=1 to keep logs/data for debugging.
set -euo pipefail

RUN=${LOFN_HADOOP_RUN_DIR:-${TMPDIR:-/tmp}/lofn-hadoop}
TIMEOUT=${LOFN_HADOOP_STOP_TIMEOUT:-60}
PID_FILE=$RUN/pid
log() { echo "lofn-hadoop: $*" >&2; }

if [[ ! -d "$RUN" ]]; then
  log "nothing to stop ($RUN does not exist)"
  exit 0
fi
RUN=$(cd "$RUN" && pwd -P)
if [[ ! -f "$RUN/.lofn-hadoop-run" ]]; then
  log "$RUN was not made by start.sh (no .lofn-hadoop-run marker); not touching it"
  exit 1
fi

wait_gone() {  # pid seconds
  local end=$(( $(date +%s) + $2 ))
  while kill -0 "$1" 2>/dev/null; do
    (( $(date +%s) < end )) || return 1
    sleep 0.2
  done
}

if [[ -f "$PID_FILE" ]]; then
  PID=$(cat "$PID_FILE")
  if kill -0 "$PID" 2>/dev/null; then
    log "stopping cluster pid $PID..."
    kill -TERM "$PID" 2>/dev/null || true
    if ! wait_gone "$PID" "$TIMEOUT"; then
      log "still alive after ${TIMEOUT}s, sending SIGKILL"
      kill -KILL "$PID" 2>/dev/null || true
      wait_gone "$PID" 10 || log "WARNING: pid $PID did not die"
    fi
  fi
fi

# YARN containers (AM/executors and their python workers) run in their own
# sessions (DefaultContainerExecutor uses setsid) and can outlive a killed
# NodeManager. They all work below $RUN/data: find them by cwd and end them by pid.
leftovers() {
  local p cwd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ "$p" == "$$" ]] && continue
    cwd=$(readlink "/proc/$p/cwd" 2>/dev/null) || continue
    [[ "$cwd" == "$RUN/data/"* ]] && echo "$p"
  done
  return 0
}
PIDS=$(leftovers)
if [[ -n "$PIDS" ]]; then
  log "ending leftover container processes: $(echo $PIDS)"
  kill -TERM $PIDS 2>/dev/null || true
  sleep 2
  PIDS=$(leftovers)
  [[ -n "$PIDS" ]] && kill -KILL $PIDS 2>/dev/null || true
fi

if [[ "${LOFN_HADOOP_KEEP_RUN_DIR:-0}" == 1 ]]; then
  rm -f "$PID_FILE" "$RUN/ready"
  log "stopped; kept $RUN"
else
  rm -rf "$RUN"
  log "stopped; removed $RUN"
fi
