#!/usr/bin/env bash
# Builds Refuge's tiny demo/test guest: Debian's kernel plus a busybox initramfs whose /init runs a small
# workload on the first virtio disk (see guest/init.sh). Everything comes from Debian's packages.
#
# Usage: guest/build.sh OUTDIR
# Produces OUTDIR/vmlinuz, OUTDIR/initrd.img and OUTDIR/guest.json. Re-running with the same kernel
# package and the same init script is a no-op (the stamp in guest.json matches).
set -euo pipefail

out=${1:?usage: guest/build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

need() { command -v "$1" >/dev/null 2>&1 || { echo "guest/build.sh: '$1' is missing (run scripts/setup.sh)" >&2; exit 1; }; }
need busybox; need cpio; need depmod; need modprobe; need apt-get; need dpkg

# The kernel image package behind the linux-image-amd64 metapackage (its version differs across machines).
# (awk reads to the end in both pipelines below: a reader that quits early kills the writer with SIGPIPE, and with
# pipefail that fails this script at random.)
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ && !found {print $2; found=1}')
[ -n "$kpkg" ] || { echo "guest/build.sh: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
kver=${kpkg#linux-image-}
stamp="$kpkg $(sha256sum "$here/init.sh" | cut -c1-16) $(busybox | awk 'NR == 1 { print $2 }')"
if [ -f "$out/guest.json" ] && grep -qF "\"stamp\": \"$stamp\"" "$out/guest.json" \
   && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
  echo "guest: up to date ($kpkg)"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "guest: fetching $kpkg"
# apt-get download runs unsandboxed as root in a private folder; dpkg -x avoids initramfs triggers.
(cd "$work" && apt-get download -q "$kpkg" >/dev/null 2>&1) || { echo "guest/build.sh: apt-get download $kpkg failed" >&2; exit 1; }
dpkg -x "$work"/"$kpkg"_*.deb "$work/k"
depmod -b "$work/k" "$kver"

# Modules in load order; virtio_pci is the transport, virtio_blk the disk, ext4 also mounts ext2,
# virtio_net is for guests given a network.
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,mnt,lib/modules,tmp}
: > "$root/lib/modules/load-order"
for m in virtio_pci virtio_blk crc32c_generic ext4 virtio_net; do
  modprobe -d "$work/k" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | grep -v crc32c-intel | awk '!seen[$0]++' | while read -r ko; do
  base=$(basename "$ko")
  case "$ko" in *.xz) xz -dc "$ko" > "$root/lib/modules/${base%.xz}"; base=${base%.xz};; *) cp "$ko" "$root/lib/modules/$base";; esac
  echo "$base" >> "$root/lib/modules/load-order"
done

cp "$(command -v busybox)" "$root/bin/busybox"
cp "$here/init.sh" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -6) > "$out/initrd.img.tmp"
cp "$work/k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
cat > "$out/guest.json" <<JSON
{
  "kernelPackage": "$kpkg",
  "kernelVersion": "$kver",
  "modules": [$(sed 's/.*/"&"/' "$root/lib/modules/load-order" | paste -sd, -)],
  "stamp": "$stamp"
}
JSON
echo "guest: built $out ($kver, $(wc -l < "$root/lib/modules/load-order") modules)"
