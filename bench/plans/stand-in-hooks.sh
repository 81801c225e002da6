#!/usr/bin/env bash
# Hooks for the `command` fabric provider (contract: src/fabric/command/README.md) that stand in for VMs in the plan
# benchmark: a machine is a `sleep` process, so what is measured is Refuge's orchestration, not a guest's boot.
set -euo pipefail
dir=${REFUGE_WORK_DIR:?}
pidfile="$dir/pid"
alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
case "${REFUGE_HOOK:?}" in
  start)
    mkdir -p "$dir"
    nohup sleep 3600 >/dev/null 2>&1 &
    echo $! > "$pidfile"
    ;;
  status)
    if alive; then echo running; elif [ -d "$dir" ]; then echo stopped; else echo absent; fi
    ;;
  stop | delete)
    if alive; then kill "$(cat "$pidfile")"; fi
    rm -f "$pidfile"
    ;;
  console)
    echo "stand-in machine $REFUGE_MACHINE"
    ;;
esac
