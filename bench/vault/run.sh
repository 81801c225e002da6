#!/usr/bin/env bash
# P10/P11 benchmark of the vault's control plane: 1,000 replications and 100 agents on SQLite and on PostgreSQL,
# then 10,000 replications on PostgreSQL; each configuration run RUNS times (default 3), one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
scripts/start-postgres.sh >/dev/null
runs=${RUNS:-3}
for spec in "sqlite 1000" "postgres 1000" "postgres 10000"; do
  set -- $spec
  for _ in $(seq 1 "$runs"); do
    npx tsx bench/vault/control-plane.ts --db "$1" --replications "$2" --agents 100 --seconds "${SECONDS_PER_RUN:-30}"
  done
done
