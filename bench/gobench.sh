#!/usr/bin/env bash
# The go test -bench suite: middleware hot path against a bare handler,
# manager decision, tracker per ConnState transition, and bytes, objects and
# goroutines per tracked connection (against a plain http.Server). Raw
# output is benchstat-ready; a benchstat summary follows when benchstat can
# be had (on PATH, or through the Go module proxy).
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
{
	echo "# bench/gobench.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ); $(go version); $(nproc) CPUs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain -- . ':!bench' ':!tracker_bench_test.go' 2>/dev/null | wc -l) other files changed or new since"
	echo "# go test -run '^\$' -bench '$BENCH' -benchmem -count $COUNT -benchtime $BENCHTIME ."
	go test -run '^$' -bench "$BENCH" -benchmem -count "$COUNT" -benchtime "$BENCHTIME" .
} | tee "$OUT"

benchstat=()
if command -v benchstat >/dev/null; then
	benchstat=(benchstat)
elif go run "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION" -h >/dev/null 2>&1; then
	benchstat=(go run "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION")
fi
if [ ${#benchstat[@]} -gt 0 ]; then
	"${benchstat[@]}" "$OUT" | tee "$SUMMARY"
else
	echo "benchstat unavailable: raw results in $OUT" >&2
fi

# The figures the goals are about, as medians over the runs.
awk '
	function median(k,   n, i, j, t, a) {
		n = cnt[k]
		for (i = 1; i <= n; i++) a[i] = v[k, i]
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	/^Benchmark/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		for (i = 3; i < NF; i += 2) { k = name " " $(i + 1); cnt[k]++; v[k, cnt[k]] = $i }
	}
	function show(label, name, unit) {
		k = name " " unit
		if (cnt[k]) printf "  %-52s %10.4g %s\n", label, median(k), unit
	}
	END {
		print ""
		print "# goal figures (medians over the runs)"
		show("bare handler", "BenchmarkBareHandler", "ns/op")
		show("handler behind the middleware", "BenchmarkMiddleware", "ns/op")
		show("middleware allocations (goal 0)", "BenchmarkMiddleware", "allocs/op")
		show("middleware, every policy configured", "BenchmarkMiddlewareAllPolicies", "ns/op")
		show("middleware, every policy: allocations (goal 0)", "BenchmarkMiddlewareAllPolicies", "allocs/op")
		show("manager decision, not draining", "BenchmarkDrainCloseIdle", "ns/op")
		show("manager decision, gradual drain", "BenchmarkDrainCloseGradual", "ns/op")
		show("manager decision allocations", "BenchmarkDrainCloseGradual", "allocs/op")
		show("ConnState transition, http/1.1", "BenchmarkTrackerConnState/http/1.1", "ns/op")
		show("ConnState transition, h2c", "BenchmarkTrackerConnState/h2c", "ns/op")
		show("ConnState transition allocations", "BenchmarkTrackerConnState/http/1.1", "allocs/op")
		show("tracker bytes per connection (goal <= 256)", "BenchmarkTrackedConnection/tracker", "B/conn")
		show("tracker heap objects per connection", "BenchmarkTrackedConnection/tracker", "objects/conn")
		show("tracker goroutines per connection (goal 0)", "BenchmarkTrackedConnection/tracker", "goroutines/conn")
		show("http/1.1 idle conn, net/http", "BenchmarkTrackedConnection/loopback/http1", "base-B/conn")
		show("http/1.1 idle conn, drainhttp", "BenchmarkTrackedConnection/loopback/http1", "drainhttp-B/conn")
		show("http/1.1 added by drainhttp (goal <= 256)", "BenchmarkTrackedConnection/loopback/http1", "added-B/conn")
		show("http/1.1 goroutines added (goal 0)", "BenchmarkTrackedConnection/loopback/http1", "added-goroutines/conn")
		show("h2c idle conn, net/http", "BenchmarkTrackedConnection/loopback/h2c", "base-B/conn")
		show("h2c idle conn, drainhttp", "BenchmarkTrackedConnection/loopback/h2c", "drainhttp-B/conn")
		show("h2c added by drainhttp", "BenchmarkTrackedConnection/loopback/h2c", "added-B/conn")
		show("h2c goroutines added (goal 0)", "BenchmarkTrackedConnection/loopback/h2c", "added-goroutines/conn")
	}' "$OUT" | tee -a "${SUMMARY}"
