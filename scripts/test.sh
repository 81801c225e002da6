#!/usr/bin/env bash
# README command 2: set everything up, then type-check, lint, and run every test: the fast unit suite, then the
# end-to-end suite with real qemu VMs. Nothing is skipped; a test that cannot run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== type-check"; npm run --silent typecheck
echo "== lint"; npm run --silent lint
echo "== unit tests"; npx vitest run --project unit
echo "== end-to-end tests"; REFUGE_JUST_BUILT=1 npx vitest run --project e2e # setup.sh built this checkout
