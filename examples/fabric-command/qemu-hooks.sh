#!/usr/bin/env bash
# Example hooks for Refuge's `command` fabric provider (contract: src/fabric/command/README.md). One script serves
# every hook, dispatching on REFUGE_HOOK; point all hooks of a site at it. It runs each machine as a daemonized
# qemu process with its pid file, QMP socket and console log in REFUGE_WORK_DIR. Adapt it to your platform: the
# provider only relies on the exit status and on what `status` and `console` print.
set -euo pipefail
dir=${REFUGE_WORK_DIR:?}
pidfile="$dir/qemu.pid"

alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${REFUGE_HOOK:?}" in
  start)
    args=(-name "$REFUGE_MACHINE" -accel tcg -m "$REFUGE_MEMORY_MIB" -smp "$REFUGE_CPUS" -nodefaults -display none
          -no-reboot -serial "file:$dir/console.log" -pidfile "$pidfile" -daemonize -nic none)
    for ((i = 0; i < REFUGE_DISK_COUNT; i++)); do
      var="REFUGE_DISK_$i"
      args+=(-drive "file=${!var},format=raw,if=virtio")
    done
    if [ "$REFUGE_BOOT_KIND" = kernel ]; then
      args+=(-kernel "$REFUGE_BOOT_KERNEL" -append "$REFUGE_BOOT_CMDLINE")
      [ -n "$REFUGE_BOOT_INITRD" ] && args+=(-initrd "$REFUGE_BOOT_INITRD")
    fi
    exec qemu-system-x86_64 "${args[@]}"
    ;;
  status)
    if alive; then echo running; elif [ -d "$dir" ]; then echo stopped; else echo absent; fi
    ;;
  stop | delete)
    if alive; then
      pid=$(cat "$pidfile")
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    ;;
  console)
    cat "$dir/console.log" 2>/dev/null || true
    ;;
  *)
    echo "unknown hook $REFUGE_HOOK" >&2
    exit 2
    ;;
esac
