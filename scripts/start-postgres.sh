#!/usr/bin/env bash
# Makes sure the PostgreSQL server the tests use is running (127.0.0.1:5432, trust auth, database `test`): installs
# it from Debian's packages if missing, starts the cluster if it is down, and creates the role and database the
# tests connect as. Safe to run again.
set -euo pipefail
sudo=""
as_postgres=(runuser -u postgres --)
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; as_postgres=(sudo -u postgres); fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "postgres: installing Debian's postgresql"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends postgresql
  # As on this project's machines: local TCP connections trusted (a test database only; never on a real vault).
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    grep -q '^host all all 127.0.0.1/32 trust' "$hba" || $sudo sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  done
  installed=1
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
if [ -n "${installed:-}" ]; then $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main restart || true; fi
if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online" { found = 1 } END { exit !found }'; then
  echo "postgres: starting cluster $version/main"
  $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 1
done
user=$(id -un)
if ! psql -h 127.0.0.1 -U "$user" -d test -Atc 'select 1' >/dev/null 2>&1; then
  # A fresh install: the tests' role and database (local connections trusted, as on this project's machines).
  "${as_postgres[@]}" psql -q -c "DO \$\$ BEGIN CREATE ROLE \"$user\" SUPERUSER LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$;" 2>/dev/null || true
  "${as_postgres[@]}" createdb -O "$user" test 2>/dev/null || true
fi
psql -h 127.0.0.1 -U "$user" -d test -Atc 'select 1' >/dev/null
echo "postgres: ready on 127.0.0.1:5432"
