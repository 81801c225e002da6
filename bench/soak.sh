#!/usr/bin/env bash
# The proving ground's soak variant (docs/reliability.md): R1 with 60 kill -9 points and the fuzzers with ten times
# their CI cases. Figures go to bench/results/soak-<time>.jsonl (one JSON line per figure) and to the output.
# Override with REFUGE_KILL_POINTS, REFUGE_FUZZ_SCALE, REFUGE_KILL_SEED (a failing run prints its seed).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out="$PWD/bench/results/soak-$(date -u +%Y-%m-%dT%H-%M-%SZ).jsonl"
export REFUGE_FIGURES="$out" REFUGE_KILL_POINTS="${REFUGE_KILL_POINTS:-60}" REFUGE_FUZZ_SCALE="${REFUGE_FUZZ_SCALE:-10}"
npx vitest run --project e2e test/e2e/kill-nine.test.ts
npx vitest run --project unit test/unit/proving
echo "figures: $out"
