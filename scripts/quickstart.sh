#!/usr/bin/env bash
# README command 1: set everything up, then run `refuge quickstart` (extra arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec node bin/refuge.js quickstart "$@"
