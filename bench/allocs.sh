#!/usr/bin/env bash
# Allocations per request, drainhttp.Server against a plain http.Server,
# on HTTP/1.1, h2c and HTTP/2 over TLS, with each toolchain: the go test
# benchmarks of bench/h2alloc_test.go (real servers on loopback, Go's
# client, one request at a time on one connection). allocs/req counts the
# whole process (client and server) with decimals; the client's share is
# the same for both servers, so the difference is drainhttp's. Goal: at most
# 0.5 extra allocations per request on the HTTP/2 path.
#
#   bench/allocs.sh
#
# Environment: TOOLCHAINS ["local go1.27.3"], COUNT [10] runs of each
# benchmark, BENCHTIME [5000x], OUT [bench/results/allocs.txt].
set -euo pipefail
cd "$(dirname "$0")"

TOOLCHAINS=${TOOLCHAINS:-local go1.27.3}
COUNT=${COUNT:-10}
BENCHTIME=${BENCHTIME:-5000x}
OUT=${OUT:-results/allocs.txt}
OUT=$(realpath -m "$OUT")
mkdir -p "$(dirname "$OUT")"

{
	echo "# bench/allocs.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) CPUs; tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	for tc in $TOOLCHAINS; do
		echo
		echo "## GOTOOLCHAIN=$tc ($(GOTOOLCHAIN=$tc go env GOVERSION)): go test -run '^\$' -bench . -benchmem -count $COUNT -benchtime $BENCHTIME ."
		GOTOOLCHAIN=$tc timeout 1200 go test -run '^$' -bench . -benchmem -count "$COUNT" -benchtime "$BENCHTIME" . | tee "$OUT.$tc.raw"
		echo
		echo "# medians over $COUNT runs; extra = drainhttp - nethttp (goal for HTTP/2: <= 0.5 allocs/req)"
		awk '
			function median(k,   n, i, j, t, a) {
				n = cnt[k]
				for (i = 1; i <= n; i++) a[i] = v[k, i]
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
				return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
			}
			/^Benchmark/ {
				split($1, parts, "/"); proto = parts[1]; sub(/^Benchmark/, "", proto); srv = parts[2]; sub(/-[0-9]+$/, "", srv)
				if (!(proto in seen)) { seen[proto] = 1; order[++np] = proto }
				for (i = 3; i < NF; i += 2) { k = proto SUBSEP srv SUBSEP $(i + 1); cnt[k]++; v[k, cnt[k]] = $i }
			}
			END {
				printf "%-6s %12s %12s %12s %10s %10s %10s %12s\n", "proto", "nethttp", "drainhttp", "extra", "B/op n", "B/op d", "extra B", "ns/op ratio"
				for (i = 1; i <= np; i++) {
					p = order[i]
					a = median(p SUBSEP "nethttp" SUBSEP "allocs/req"); b = median(p SUBSEP "drainhttp" SUBSEP "allocs/req")
					c = median(p SUBSEP "nethttp" SUBSEP "B/op"); d = median(p SUBSEP "drainhttp" SUBSEP "B/op")
					e = median(p SUBSEP "nethttp" SUBSEP "ns/op"); f = median(p SUBSEP "drainhttp" SUBSEP "ns/op")
					printf "%-6s %12.2f %12.2f %+12.2f %10.0f %10.0f %+10.0f %12.3f\n", p, a, b, b - a, c, d, d - c, f / e
				}
			}' "$OUT.$tc.raw"
		rm -f "$OUT.$tc.raw"
	done
} 2>&1 | tee "$OUT"
