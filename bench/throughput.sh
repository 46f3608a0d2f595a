#!/usr/bin/env bash
# Throughput of drainhttp.Server against a plain http.Server, side by side in
# one run: the same "ok" handler (bench/cmd/benchserver), loaded by wrk
# (HTTP/1.1 keep-alive) and h2load (HTTP/2 with prior knowledge, h2c), the
# two servers alternating run by run so that drift in the machine's load
# hits both alike. Reported as drainhttp/net/http ratios.
#
#   bench/throughput.sh
#
# Environment (defaults in brackets):
#   DURATION [10]      seconds of each measured run
#   WARMUP [2]         seconds of unmeasured load before each measured run
#   ROUNDS [5]         rounds; each round runs every server once per protocol
#   CONNS [64]         connections (wrk -c, h2load -c)
#   STREAMS [10]       h2load concurrent streams per connection (-m)
#   SERVERS ["nethttp drainhttp"]  add "middleware" for a plain http.Server
#                      behind drainhttp.Middleware
#   PIN [0]            0: server (GOMAXPROCS = all CPUs) and load generator
#                      (wrk -t/h2load -t = all CPUs) share every core, as
#                      they must on a 2-core machine. 1: the server is pinned
#                      to SERVER_CPUS [0] (GOMAXPROCS follows) and the load
#                      generator to LOAD_CPUS [1] (taskset); on 2 cores one
#                      wrk thread then cannot saturate the server.
#   ADDR [127.0.0.1:18080]
#   OUT [bench/results/throughput.txt]
#
# Besides requests per second, each run reads the server's CPU time
# (/proc/PID/task/*/schedstat, nanoseconds, process context only: the
# loopback softirq work is mostly charged to the sender) and reports
# requests per server CPU-second, the server's own efficiency.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}
SERVERS=${SERVERS:-nethttp drainhttp}
PIN=${PIN:-0}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
ADDR=${ADDR:-127.0.0.1:18080}
OUT=${OUT:-bench/results/throughput.txt}
URL="http://$ADDR/"

need() {
	command -v "$1" >/dev/null && return
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing $2 (for $1)" >&2
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
	fi
	command -v "$1" >/dev/null || { echo "throughput.sh: $1 is missing: apt-get install $2" >&2; exit 1; }
}
need wrk wrk
need h2load nghttp2-client
need taskset util-linux

work=$(mktemp -d)
server_pid=
cleanup() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/benchserver" ./bench/cmd/benchserver

if [ "$PIN" = 1 ]; then
	srv_pin=(taskset -c "$SERVER_CPUS")
	load_pin=(taskset -c "$LOAD_CPUS")
	server_procs=$(taskset -c "$SERVER_CPUS" nproc)
	load_threads=$(taskset -c "$LOAD_CPUS" nproc)
else
	srv_pin=()
	load_pin=()
	server_procs=$(nproc)
	load_threads=$(nproc)
fi

start_server() {
	GOMAXPROCS=$server_procs "${srv_pin[@]}" "$work/benchserver" -server "$1" -addr "$ADDR" >"$work/server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		grep -q '^listening' "$work/server.log" 2>/dev/null && return
		sleep 0.05
	done
	echo "throughput.sh: $1 did not start:" >&2
	cat "$work/server.log" >&2
	exit 1
}

stop_server() {
	kill "$server_pid"
	wait "$server_pid" || true
	server_pid=
}

# cpu_ns prints the CPU time the server's threads have used, in ns (%.0f:
# mawk's %d stops at 2^31).
cpu_ns() {
	cat /proc/"$server_pid"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}

# warmup PROTO runs unmeasured load.
warmup() {
	case $1 in
	http1) "${load_pin[@]}" wrk -t"$load_threads" -c"$CONNS" -d"${WARMUP}s" "$URL" >/dev/null ;;
	h2c) "${load_pin[@]}" h2load -t"$load_threads" -c"$CONNS" -m"$STREAMS" -D "$WARMUP" "$URL" >/dev/null ;;
	esac
}

# load PROTO prints "requests seconds errors" of one measured run.
load() {
	case $1 in
	http1)
		"${load_pin[@]}" wrk -t"$load_threads" -c"$CONNS" -d"${DURATION}s" "$URL" >"$work/load.txt"
		awk '
			/requests in/ { n = $1; t = $4; sub(/s,$/, "", t) }
			/Socket errors/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
			/Non-2xx/ { e += $NF }
			END { printf "%.0f %s %.0f\n", n, t, e }' "$work/load.txt"
		;;
	h2c)
		"${load_pin[@]}" h2load -t"$load_threads" -c"$CONNS" -m"$STREAMS" -D "$DURATION" "$URL" >"$work/load.txt"
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
echo "# tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain -- . ':!bench' ':!tracker_bench_test.go' 2>/dev/null | wc -l) other files changed or new since"
echo "# $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(h2load --version | head -1)"
if [ "$PIN" = 1 ]; then
	echo "# server on CPU $SERVER_CPUS (GOMAXPROCS=$server_procs), load generator on CPU $LOAD_CPUS ($load_threads thread(s))"
else
	echo "# nothing pinned: server and load generator share all $(nproc) CPUs"
fi
echo "# $ROUNDS rounds x ${DURATION}s runs after ${WARMUP}s warm-up; wrk -c$CONNS, h2load -c$CONNS -m$STREAMS; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-5s %-6s %-10s %12s %10s %12s %8s\n' round proto server req/s errors req/cpu-s cpu%
for round in $(seq "$ROUNDS"); do
	order=$SERVERS
	if [ $((round % 2)) = 0 ]; then # reverse the order every other round
		order=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' ')
	fi
	for proto in http1 h2c; do
		for s in $order; do
			start_server "$s"
			warmup "$proto"
			c0=$(cpu_ns)
			read -r n secs errs < <(load "$proto")
			c1=$(cpu_ns)
			stop_server
			awk -v r="$round" -v p="$proto" -v s="$s" -v n="$n" -v t="$secs" -v e="$errs" -v c="$((c1 - c0))" 'BEGIN {
				printf "%-5s %-6s %-10s %12.0f %10d %12.0f %8.0f\n", r, p, s, n / t, e, n / (c / 1e9), 100 * c / 1e9 / t
			}' | tee -a "$work/runs.txt"
		done
	done
done

echo
echo "# medians over the rounds; ratio = drainhttp / nethttp, per round then median (min..max)"
printf '%-6s %-10s %12s %12s %18s %18s\n' proto server req/s req/cpu-s "req/s ratio" "req/cpu-s ratio"
awk '
	function median(a, n,   i, j, t) {
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	$1 ~ /^[0-9]+$/ {
		rps[$2, $3, $1] = $4; eff[$2, $3, $1] = $6
		rounds[$1] = 1; protos[$2] = 1; servers[$3] = 1
	}
	END {
		split("http1 h2c", P, " ")
		for (pi = 1; pi <= 2; pi++) {
			p = P[pi]
			for (s in servers) {
				n = 0
				for (r in rounds) { n++; a[n] = rps[p, s, r]; b[n] = eff[p, s, r] }
				mr = median(a, n); me = median(b, n)
				line = sprintf("%-6s %-10s %12.0f %12.0f", p, s, mr, me)
				if (s != "nethttp") {
					n = 0; lo = 1e9; hi = 0; lo2 = 1e9; hi2 = 0
					for (r in rounds) {
						n++
						a[n] = rps[p, s, r] / rps[p, "nethttp", r]; b[n] = eff[p, s, r] / eff[p, "nethttp", r]
						if (a[n] < lo) lo = a[n]; if (a[n] > hi) hi = a[n]
						if (b[n] < lo2) lo2 = b[n]; if (b[n] > hi2) hi2 = b[n]
					}
					line = line sprintf(" %6.3f (%.2f..%.2f) %6.3f (%.2f..%.2f)", median(a, n), lo, hi, median(b, n), lo2, hi2)
				}
				print line
			}
		}
	}' "$work/runs.txt" | sort -k1,1r -k2,2r
