#!/usr/bin/env bash
# The root package's hot-path go test benchmarks (manager decision and
# whatever else the package defines: each one found by go test -list is
# run; none are written here). Raw output is benchstat-ready; a benchstat
# summary follows when benchstat can be had (on PATH, or through the Go
# module proxy), then the median of every metric of every benchmark.
#
#   bench/gobench.sh
#
# Environment: COUNT [6] runs of each benchmark, BENCH [.] the -bench
# regexp, BENCHTIME [1s], OUT [bench/results/gobench.txt] (raw output; the
# summary goes to the same name with .benchstat.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-6}
BENCH=${BENCH:-.}
BENCHTIME=${BENCHTIME:-1s}
OUT=${OUT:-bench/results/gobench.txt}
SUMMARY=${OUT%.txt}.benchstat.txt
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da # golang.org/x/perf

mkdir -p "$(dirname "$OUT")"
if ! list=$(timeout 600 go test -list "$BENCH" . 2>&1); then
	echo "gobench.sh: the root package's tests do not build:" >&2
	echo "$list" >&2
	exit 1
fi
benches=$(echo "$list" | grep '^Benchmark' || true)
if [ -z "$benches" ]; then
	echo "gobench.sh: the root package has no benchmark matching $BENCH; nothing to run" | tee "$OUT"
	exit 0
fi

{
	echo "# bench/gobench.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ); $(go version); $(nproc) CPUs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain -- . ':!bench' 2>/dev/null | wc -l) files outside bench/ changed or new since"
	echo "# benchmarks found: $(echo $benches)"
	echo "# go test -run '^\$' -bench '$BENCH' -benchmem -count $COUNT -benchtime $BENCHTIME ."
	timeout 1800 go test -run '^$' -bench "$BENCH" -benchmem -count "$COUNT" -benchtime "$BENCHTIME" .
} | tee "$OUT"

benchstat=()
if command -v benchstat >/dev/null; then
	benchstat=(benchstat)
elif timeout 300 go run "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION" -h >/dev/null 2>&1; then
	benchstat=(go run "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION")
fi
if [ ${#benchstat[@]} -gt 0 ]; then
	"${benchstat[@]}" "$OUT" | tee "$SUMMARY"
else
	echo "benchstat unavailable: raw results in $OUT" | tee "$SUMMARY" >&2
fi

# Every metric of every benchmark, as medians over the runs.
awk '
	function median(k,   n, i, j, t, a) {
		n = cnt[k]
		for (i = 1; i <= n; i++) a[i] = v[k, i]
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	/^Benchmark/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		for (i = 3; i < NF; i += 2) {
			k = name " " $(i + 1)
			if (!(k in cnt)) order[++nk] = k
			cnt[k]++; v[k, cnt[k]] = $i
		}
	}
	END {
		print ""
		print "# medians over the runs"
		for (i = 1; i <= nk; i++) { split(order[i], p, " "); printf "  %-50s %12.4g %s\n", p[1], median(order[i]), p[2] }
	}' "$OUT" | tee -a "$SUMMARY"
