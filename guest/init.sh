#!/bin/busybox sh
# /init of Refuge's tiny guest. It runs a small workload on the first virtio disk and reports on the serial
# console with lines starting "refuge-guest: ", which the fabric's console log and the tests read.
#
# Kernel command line parameters:
#   refuge.marker=TEXT    written to the disk on first boot (no spaces)
#   refuge.data_mib=N     MiB of random data written with its SHA-256 beside it (default 8)
#   refuge.disk_hash=1    print the SHA-256 of the whole disk before anything mounts it, so a test can compare
#                         the bytes a recovered guest booted on with the source disk's bytes at the recovery point
#
# First boot on an empty disk: format it (ext2), write the data and its checksum, sync, then write the marker
# and sync again, so a disk that holds the marker also holds the data it vouches for. A boot on a disk that
# holds a marker (a recovered copy) reads the marker back and verifies the data against its checksum.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

say() { echo "refuge-guest: $*" > /dev/console; }
param() {
  for w in $(cat /proc/cmdline); do
    case "$w" in "refuge.$1="*) echo "${w#*=}"; return ;; esac
  done
  echo "$2"
}
halt_with() { say "error: $*"; sync; poweroff -f; }

while read -r m; do insmod "/lib/modules/$m" 2>/dev/null || say "warning: module $m did not load"; done < /lib/modules/load-order
say "up kernel=$(uname -r)"

i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || halt_with "no virtio disk"

if [ "$(param disk_hash 0)" = 1 ]; then
  say "disk sha256: $(sha256sum /dev/vda | cut -d' ' -f1)"
fi

if ! mount -t ext4 /dev/vda /mnt 2>/dev/null; then
  say "formatting /dev/vda"
  mke2fs -q /dev/vda >/dev/null 2>&1 || halt_with "mke2fs failed"
  mount -t ext4 /dev/vda /mnt || halt_with "mount failed after mke2fs"
fi

if [ -f /mnt/refuge/marker ]; then
  say "marker read: $(cat /mnt/refuge/marker)"
  if (cd /mnt/refuge && sha256sum -c -s checksums); then say "data verified"; else say "error: data corrupt"; fi
else
  marker=$(param marker none)
  mib=$(param data_mib 8)
  mkdir -p /mnt/refuge
  dd if=/dev/urandom of=/mnt/refuge/data bs=1M count="$mib" 2>/dev/null
  (cd /mnt/refuge && sha256sum data > checksums)
  sync
  echo "$marker" > /mnt/refuge/marker
  sync
  say "marker written: $marker"
fi
say "ready"
while true; do sleep 3600; done
