#!/usr/bin/env bash
# The store benchmark, one command: installs restic and borgbackup from Debian if missing, builds Refuge, then runs
# bench/store-bench.ts (seeding, 1% churn incremental and restore of the standard 2 GiB image of
# ../shared/docs/performance.md, Refuge against restic and borg in the same run, median of 3 runs).
# Options go to store-bench.ts: --size-mib N (default 2048), --runs N (default 3), --dir DIR (default
# /var/tmp/refuge-bench), --chunk-sizes 65536,262144,1048576 (adds the chunk-size study).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in restic borgbackup time; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run --silent build
exec npx tsx bench/store-bench.ts "$@"
