#!/usr/bin/env bash
# Memory per idle connection, drainhttp.Server over a plain http.Server, for
# HTTP/1.1, HTTP/2 over TLS and h2c, with each toolchain: bench/cmd/memconn
# runs each server in a process of its own, opens N idle connections (one
# request each) with net/http's client from its own process, and reads the
# server's HeapInuse + StackInuse after five GCs, from inside the server.
#
#   bench/memconn.sh
#
# Then, unless PROFILE=0, one more run per toolchain with every allocation
# recorded (runtime.MemProfileRate = 1) writes heap profiles and, per
# protocol, the drainhttp-minus-net/http inuse_space difference by
# allocation site (go tool pprof -diff_base), in bytes and bytes per
# connection, then the same grouped by what it is for (memconn -sites),
# and the goroutines each server holds.
#
# Environment (defaults in brackets): N [5000] connections, REPEATS [5],
# PROTOS [h1,h2,h2c], TOOLCHAINS ["local go1.27.3"] (GOTOOLCHAIN values;
# local is this machine's go), PROFILE [1],
# OUT [bench/results/memconn] (files OUT-GOVERSION.txt,
# OUT-GOVERSION-pprof.txt, and the profiles in OUT-GOVERSION-profiles/).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-5000}
REPEATS=${REPEATS:-5}
PROTOS=${PROTOS:-h1,h2,h2c}
TOOLCHAINS=${TOOLCHAINS:-local go1.27.3}
PROFILE=${PROFILE:-1}
OUT=${OUT:-bench/results/memconn}

# Both processes hold N sockets.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((N + 500)) ]; then
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi

# stacks summarises a goroutine profile (debug=1): each stack held by more
# than 10 goroutines, as its count and its frames outside the runtime.
stacks() {
	awk '
		/^[0-9]+ @/ { if (n > 10) print n "  " f; n = $1; f = ""; next }
		/^#\t0x/ { fn = $3; sub(/\+0x[0-9a-f]+$/, "", fn); if (fn !~ /^(runtime|internal\/poll)\./) f = f (f == "" ? "" : " < ") fn }
		END { if (n > 10) print n "  " f }' "$1"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$OUT")"

for tc in $TOOLCHAINS; do
	gov=$(GOTOOLCHAIN=$tc go env GOVERSION)
	GOTOOLCHAIN=$tc go build -o "$work/memconn-$gov" ./bench/cmd/memconn
	out=$OUT-$gov.txt
	{
		echo "# bench/memconn.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ); GOTOOLCHAIN=$tc ($gov); $(nproc) CPUs; kernel $(uname -r)"
		echo "# tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain -- . ':!bench' 2>/dev/null | wc -l) files outside bench/ changed or new since; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "# memconn -n $N -repeats $REPEATS -protos $PROTOS"
		timeout 1800 "$work/memconn-$gov" -n "$N" -repeats "$REPEATS" -protos "$PROTOS"
	} 2>&1 | tee "$out"

	[ "$PROFILE" = 1 ] || continue
	prof=$OUT-$gov-profiles
	rm -rf "$prof"
	pout=$OUT-$gov-pprof.txt
	{
		echo "# bench/memconn.sh profile run, $(date -u +%Y-%m-%dT%H:%M:%SZ); GOTOOLCHAIN=$tc ($gov); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "# memconn -n $N -repeats 1 -protos $PROTOS -profile $prof (MemProfileRate = 1; its figures below are of a profiled process)"
		timeout 1800 "$work/memconn-$gov" -n "$N" -repeats 1 -protos "$PROTOS" -profile "$prof"
		for p in ${PROTOS//,/ }; do
			echo
			echo "## $p: inuse_space, drainhttp minus net/http, by allocation site (flat), $N connections"
			echo "# go tool pprof -sample_index=inuse_space -diff_base $prof/$p-nethttp-r1.pb.gz -top -nodecount=30 -unit=B $prof/$p-drainhttp-r1.pb.gz"
			go tool pprof -sample_index=inuse_space -diff_base "$prof/$p-nethttp-r1.pb.gz" -top -nodecount=30 -unit=B \
				"$prof/$p-drainhttp-r1.pb.gz" 2>/dev/null |
				awk -v n="$N" '
					/^ *-?[0-9.]+B / { f = $1; sub(/B$/, "", f); printf "%9.1f B/conn  %s\n", f / n, $0; next }
					{ print }'
			echo
			echo "## $p: the same by site and by what it is for (memconn -sites)"
			"$work/memconn-$gov" -sites -n "$N" "$prof/$p-nethttp-r1.pb.gz" "$prof/$p-drainhttp-r1.pb.gz"
			echo
			echo "## $p: goroutines by stack, drainhttp (net/http: $p-nethttp-r1.goroutines.txt)"
			for s in drainhttp nethttp; do
				echo "# $s:"
				stacks "$prof/$p-$s-r1.goroutines.txt"
			done
		done
	} 2>&1 | tee "$pout"
done
