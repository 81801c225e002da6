#!/usr/bin/env bash
# README command 1: set everything up, then run `refuge quickstart` (extra arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The agent's NBD export writes on libuv's thread pool (see packaging/systemd/refuge-agent@.service).
UV_THREADPOOL_SIZE="${UV_THREADPOOL_SIZE:-16}" exec node bin/refuge.js quickstart "$@"
