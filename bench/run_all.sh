#!/usr/bin/env bash
# Runs every benchmark script of bench/BENCHMARKS.md's goals once, one
# after the other, into bench/results/ (the rollout scripts,
# bench/rollout_*.sh, are run on their own). About 30 minutes on 2 cores:
# throughput.sh's 10 rounds take ~9, memconn.sh ~12, drain_at_scale.sh ~2,
# allocs.sh ~1, the rest a minute or two each.
#
#   bench/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bench/binsize.sh
bench/allocs.sh
bench/memconn.sh
bench/gobench.sh
bench/drain_at_scale.sh
bench/throughput.sh
