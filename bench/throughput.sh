#!/usr/bin/env bash
# Throughput of drainhttp.Server against a plain http.Server, paired in one
# run: the same mux and handler (bench/cmd/benchserver: "ok\n"), each server
# as a user would write it (README usage for drainhttp), loaded by wrk
# (HTTP/1.1 keep-alive) and h2load (h2c, HTTP/2 with prior knowledge).
# The runs alternate A B A B: in every round, for each protocol, net/http
# then drainhttp, each a fresh process with a warm-up, so that drift in the
# machine's load hits both alike. Each round gives one ratio per protocol,
# drainhttp / net/http; the summary is their median and range.
#
#   bench/throughput.sh
#
# Environment (defaults in brackets):
#   ROUNDS [10]     rounds (each: both servers, both protocols)
#   DURATION [10]   seconds of each measured run
#   WARMUP [2]      seconds of unmeasured load before each measured run
#   CONNS [32]      wrk -c
#   H2CONNS [16]    h2load -c
#   STREAMS [10]    h2load -m (concurrent streams per connection)
#   THREADS [nproc] wrk -t and h2load -t
#   PROTOS ["http1 h2c"]
#   SERVERS ["nethttp drainhttp"]  in this order in every round; ratios are
#                   to the first. nethttp-tcp is net/http on a TCP listener
#                   without Multipath TCP, as drainhttp listens
#   ADDR [127.0.0.1:18080]
#   OUT [bench/results/throughput.txt]
#
# Nothing is pinned: server (GOMAXPROCS = all CPUs) and load generator share
# every core. Besides requests per second, each run reads the server's CPU
# time (/proc/PID/task/*/schedstat, process context only: loopback softirq
# work is mostly charged to the sender) and reports requests per server
# CPU-second. The load average is printed before every round: other work on
# the machine shows there. wrk and h2load come from Debian's wrk and
# nghttp2-client packages, installed with apt-get if missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-10}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
H2CONNS=${H2CONNS:-16}
STREAMS=${STREAMS:-10}
THREADS=${THREADS:-$(nproc)}
PROTOS=${PROTOS:-http1 h2c}
ADDR=${ADDR:-127.0.0.1:18080}
OUT=${OUT:-bench/results/throughput.txt}
URL="http://$ADDR/"
SERVERS=${SERVERS:-nethttp drainhttp}

if ! command -v wrk >/dev/null || ! command -v h2load >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing wrk and nghttp2-client" >&2
		timeout 600 apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq wrk nghttp2-client >/dev/null
	fi
	command -v wrk >/dev/null && command -v h2load >/dev/null ||
		{ echo "throughput.sh: needs wrk and h2load: apt-get install wrk nghttp2-client" >&2; exit 1; }
fi

work=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then kill -9 "$server_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/benchserver" ./bench/cmd/benchserver

start_server() {
	"$work/benchserver" -server "$1" -addr "$ADDR" >"$work/server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}") 2>/dev/null; then return; fi
		sleep 0.05
	done
	echo "throughput.sh: $1 did not start:" >&2
	cat "$work/server.log" >&2
	exit 1
}

stop_server() {
	kill "$server_pid"
	for _ in $(seq 50); do
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}

# cpu_ns prints the CPU time the server's threads have used, in ns.
cpu_ns() {
	cat /proc/"$server_pid"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}

warmup() {
	case $1 in
	http1) timeout $((WARMUP + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$URL" >/dev/null ;;
	h2c) timeout $((WARMUP + 30)) h2load -t"$THREADS" -c"$H2CONNS" -m"$STREAMS" -D "$WARMUP" "$URL" >/dev/null ;;
	esac
}

# load PROTO prints "requests seconds errors" of one measured run.
load() {
	case $1 in
	http1)
		timeout $((DURATION + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$URL" >"$work/load.txt"
		awk '
			/requests in/ { n = $1; t = $4; sub(/s,$/, "", t) }
			/Socket errors/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
			/Non-2xx/ { e += $NF }
			END { printf "%.0f %s %.0f\n", n, t, e }' "$work/load.txt"
		;;
	h2c)
		timeout $((DURATION + 30)) h2load -t"$THREADS" -c"$H2CONNS" -m"$STREAMS" -D "$DURATION" "$URL" >"$work/load.txt"
		awk '
			/^finished in/ { t = $3; sub(/s,$/, "", t) }
			/^requests:/ { n = $8; e = $10 + $12 + $14 }
			/^status codes:/ { gsub(/,/, ""); e += $5 + $7 + $9 }
			END { printf "%.0f %s %.0f\n", n, t, e }' "$work/load.txt"
		;;
	esac
}

mkdir -p "$(dirname "$OUT")"
exec > >(tee "$OUT") 2>&1

echo "# bench/throughput.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# $(go version); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); kernel $(uname -r)"
echo "# tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain -- . ':!bench' 2>/dev/null | wc -l) files outside bench/ changed or new since"
echo "# $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(h2load --version | head -1)"
echo "# $ROUNDS rounds x ${DURATION}s runs after ${WARMUP}s warm-up, order $SERVERS in every round;"
echo "# wrk -t$THREADS -c$CONNS; h2load -t$THREADS -c$H2CONNS -m$STREAMS; nothing pinned, server GOMAXPROCS=$(nproc)"
echo
printf '%-5s %-6s %-10s %12s %10s %12s %8s  %s\n' round proto server req/s errors req/cpu-s cpu% "load (1 5 15 min)"
for round in $(seq "$ROUNDS"); do
	for proto in $PROTOS; do
		for s in $SERVERS; do
			la=$(cut -d' ' -f1-3 /proc/loadavg)
			start_server "$s"
			warmup "$proto"
			c0=$(cpu_ns)
			read -r n secs errs < <(load "$proto")
			c1=$(cpu_ns)
			stop_server
			awk -v r="$round" -v p="$proto" -v s="$s" -v n="$n" -v t="$secs" -v e="$errs" -v c="$((c1 - c0))" -v la="$la" 'BEGIN {
				printf "%-5s %-6s %-10s %12.0f %10d %12.0f %8.0f  %s\n", r, p, s, n / t, e, n / (c / 1e9), 100 * c / 1e9 / t, la
			}' | tee -a "$work/runs.txt"
		done
	done
done
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
base=${SERVERS%% *}
echo "# ratio = server / $base within each round; median (min..max) over $ROUNDS rounds"
printf '%-6s %-12s %12s %12s %24s %24s\n' proto server "$base-rps" rps "req/s ratio" "req/cpu-s ratio"
awk -v base="$base" -v servers="$SERVERS" '
	function median(a, n,   i, j, t, b) {
		for (i = 1; i <= n; i++) b[i] = a[i]
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
		return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
	}
	$1 ~ /^[0-9]+$/ { rps[$2, $3, $1] = $4; eff[$2, $3, $1] = $6; err[$2, $3] += $5; rounds[$1] = 1; if (!($2 in seen)) { seen[$2] = 1; order[++np] = $2 } }
	END {
		ns = split(servers, S, " ")
		for (pi = 1; pi <= np; pi++) for (si = 2; si <= ns; si++) {
			p = order[pi]; s = S[si]; n = 0; lo = 1e9; hi = 0; lo2 = 1e9; hi2 = 0; below = 0
			for (r in rounds) {
				if (!((p, base, r) in rps) || !((p, s, r) in rps)) continue
				n++
				a[n] = rps[p, base, r]; b[n] = rps[p, s, r]
				x[n] = b[n] / a[n]; y[n] = eff[p, s, r] / eff[p, base, r]
				if (x[n] < lo) lo = x[n]; if (x[n] > hi) hi = x[n]
				if (y[n] < lo2) lo2 = y[n]; if (y[n] > hi2) hi2 = y[n]
				if (x[n] < 0.99) below++
			}
			printf "%-6s %-12s %12.0f %12.0f %8.3f (%.3f..%.3f) %8.3f (%.3f..%.3f)   %d of %d rounds below 0.99, %d errors\n",
				p, s, median(a, n), median(b, n), median(x, n), lo, hi, median(y, n), lo2, hi2, below, n, err[p, s] + err[p, base]
		}
	}' "$work/runs.txt"
