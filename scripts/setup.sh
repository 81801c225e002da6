#!/usr/bin/env bash
# Sets up Refuge on a fresh Debian 12 machine: the Debian packages it uses (qemu, the packages the demo guest is
# built from, NBD tools, Chromium for the portal's tests), the npm packages, the build (TypeScript and the web
# portal) and the demo guest. Safe to run again: each step
# is skipped when already done. Needs root (or sudo) only for the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  qemu-system-x86 qemu-utils # the built-in fabric provider and disk tools
  busybox-static cpio kmod xz-utils # the demo guest's initramfs (guest/build.sh)
  e2fsprogs # mkfs and fsck for tests on disk images
  libnbd-bin nbdkit fio # NBD peers for tests and benchmarks
  btrfs-progs socat # scan snapshot hooks (btrfs; fsfreeze is util-linux) and their tests; socat: QMP from a test hook
  libvirt-daemon-system libvirt-clients # the libvirt fabric provider and its tests
  python3 make g++ # native npm modules (better-sqlite3, zstd-napi) build from source
  chromium # the web portal's browser tests (driven by playwright-core, which downloads no browser)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

# npm packages: reinstall only when the lockfile changed since the last install.
stamp=node_modules/.refuge-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing npm packages (native modules compile from source; takes a minute)"
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
fi

echo "setup: building (TypeScript, and the web portal with Vite)"
npm run --silent build

guest/build.sh build/guest
echo "setup: done"
