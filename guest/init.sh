#!/bin/busybox sh
# /init of Refuge's tiny guest. It runs a small workload on the first virtio disk and reports on the serial
# console with lines starting "refuge-guest: ", which the fabric's console log and the tests read.
#
# Kernel command line parameters:
#   refuge.marker=TEXT    written to the disk on first boot (no spaces)
#   refuge.data_mib=N     MiB of random data written with its SHA-256 beside it (default 8)
#   refuge.disk_hash=1    print the SHA-256 of the whole disk before anything mounts it, so a test can compare
#                         the bytes a recovered guest booted on with the source disk's bytes at the recovery point
#   refuge.workload=records  instead of the filesystem workload below, write numbered records to the raw disk for
#                         the write-order fidelity test: record N is the 4096 bytes at offset N*4096, a header line
#                         "REFUGE-RECORD <N as 8 digits> <sha256 of the payload>\n" (88 bytes) and 4008 random bytes.
#                         Each record is written with O_DIRECT and fsync (a device write, then a flush), then, like a
#                         database's commit pointer, the last 4 KiB of the disk is overwritten with "REFUGE-HEAD <N>\n"
#                         (zero-padded; written and flushed the same way), and only then is the record reported as
#                         "refuge-guest: record N acked", before the next is written. A crash-consistent image
#                         therefore never shows a head beyond its intact records.
#   refuge.records=N      how many records to write (default: as many as the disk holds), then "records done"
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

write_records() {
  total=$(( $(cat /sys/block/vda/size) / 8 - 1 )) # the last 4 KiB hold the head
  n=$(param records "$total")
  [ "$n" -gt "$total" ] && n=$total
  say "records: writing $n records of 4096 bytes"
  seq=0
  while [ "$seq" -lt "$n" ]; do
    head -c 4008 /dev/urandom > /tmp/payload
    sum=$(sha256sum /tmp/payload | cut -c1-64)
    { printf 'REFUGE-RECORD %08d %s\n' "$seq" "$sum"; cat /tmp/payload; } > /tmp/record
    dd if=/tmp/record of=/dev/vda bs=4096 count=1 seek="$seq" oflag=direct conv=notrunc,fsync 2>/dev/null \
      || halt_with "record $seq could not be written"
    { printf 'REFUGE-HEAD %08d\n' "$seq"; head -c 4075 /dev/zero; } > /tmp/head
    dd if=/tmp/head of=/dev/vda bs=4096 count=1 seek="$total" oflag=direct conv=notrunc,fsync 2>/dev/null \
      || halt_with "head $seq could not be written"
    say "record $seq acked"
    seq=$((seq + 1))
  done
  say "records done"
  say "ready"
  while true; do sleep 3600; done
}

if [ "$(param workload fs)" = records ]; then
  write_records
fi

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
