#!/usr/bin/env bash
# Runs every benchmark script once, one after the other, into
# bench/results/: the numbers in bench/BENCHMARKS.md come from one such run.
#
#   bench/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bench/gobench.sh
bench/throughput.sh
bench/drain_at_scale.sh
