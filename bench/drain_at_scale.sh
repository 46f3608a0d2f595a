#!/usr/bin/env bash
# Drain at scale: a gradual drain of DRAIN_TIME with CONNS keep-alive
# connections open (most idle, some busy, a few stuck in a request that
# never ends, some h2c), started through the server's admin POST /drain.
# Measures when the last connection closed against DRAIN_TIME +
# DRAIN_TIMEOUT + 1s, the server's CPU seconds, and failed requests
# (bench/cmd/drainscale does the work). It runs against each of SERVERS,
# one after the other:
#
#   library  bench/cmd/benchserver -admin: a drainhttp.Server and the
#            drainhttp/admin handler on a plain http.Server, nothing else
#   example  examples/server (the same plus hot restart, metrics and
#            handlers), if it builds; skipped with a note otherwise
#
#   bench/drain_at_scale.sh
#
# Environment (defaults in brackets): SERVERS ["library example"], CONNS
# [10000], DRAIN_TIME [20s], DRAIN_TIMEOUT [5s], HOLD [5s], BUSY_H1 [100],
# STUCK_H1 [20], IDLE_H2C [1000], BUSY_H2C [50], THINK [100ms], SRC [4]
# loopback source addresses, ADDR [127.0.0.1:18081], ADMIN
# [127.0.0.1:19901], OUT [bench/results/drain_at_scale.txt].
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-10000}
DRAIN_TIME=${DRAIN_TIME:-20s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-5s}
HOLD=${HOLD:-5s}
BUSY_H1=${BUSY_H1:-100}
STUCK_H1=${STUCK_H1:-20}
IDLE_H2C=${IDLE_H2C:-1000}
BUSY_H2C=${BUSY_H2C:-50}
THINK=${THINK:-100ms}
SRC=${SRC:-4}
ADDR=${ADDR:-127.0.0.1:18081}
ADMIN=${ADMIN:-127.0.0.1:19901}
OUT=${OUT:-bench/results/drain_at_scale.txt}
SERVERS=${SERVERS:-library example}

# Both processes hold CONNS sockets (and the client a few hundred more for
# reconnects): raise the open files limit as far as this machine lets us.
want=$((CONNS * 2 + 4096))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
	ulimit -Hn "$want" 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 1000)) ]; then
	echo "drain_at_scale.sh: open files limit $(ulimit -n) is too low for $CONNS connections" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/library" ./bench/cmd/benchserver
go build -o "$work/drainscale" ./bench/cmd/drainscale
example_note=
if [[ " $SERVERS " == *" example "* ]] && ! go build -o "$work/example" ./examples/server 2>"$work/example-build.txt"; then
	example_note="examples/server does not build here ($(head -2 "$work/example-build.txt" | tail -1 | sed 's/^ *//')): skipped"
	SERVERS=${SERVERS//example/}
fi

mkdir -p "$(dirname "$OUT")"
{
	echo "# bench/drain_at_scale.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(go version); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); kernel $(uname -r)"
	echo "# tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain -- . ':!bench' 2>/dev/null | wc -l) files outside bench/ changed or new since"
	echo "# ulimit -n $(ulimit -n); ephemeral ports $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range); somaxconn $(cat /proc/sys/net/core/somaxconn); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# server and load generator share the machine's $(nproc) CPUs"
	[ -z "$example_note" ] || echo "# $example_note"
	rc=0
	for srv in $SERVERS; do
		echo
		echo "## server: $srv; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
		timeout 300 "$work/drainscale" -server-bin "$work/$srv" -server-log "$work/$srv.log" \
			-addr "$ADDR" -admin "$ADMIN" -conns "$CONNS" -drain-time "$DRAIN_TIME" -drain-timeout "$DRAIN_TIMEOUT" \
			-hold "$HOLD" -busy-h1 "$BUSY_H1" -stuck-h1 "$STUCK_H1" -idle-h2c "$IDLE_H2C" -busy-h2c "$BUSY_H2C" \
			-think "$THINK" -src "$SRC" || rc=$?
		echo "# the server's drain log (forced closes are one Warn each, not shown):"
		grep -E 'drain (started|complete)|draining|exiting|ERROR|level=ERROR' "$work/$srv.log" | sed 's/^/#   /' | tail -8
		echo "# forced-close Warn records: $(grep -c 'force-closed' "$work/$srv.log" || true)"
		sleep 2 # let the sockets of one run go before the next
	done
	exit $rc
} 2>&1 | tee "$OUT"
