#!/usr/bin/env bash
# Binary size: a hello-world server built with -ldflags='-s -w', on a plain
# http.Server (bench/cmd/hello/nethttp, the goal's baseline;
# nethttp-shutdown adds the signal.NotifyContext and Shutdown a plain
# program needs to stop gracefully, nethttp-slog one log/slog record on top)
# and on drainhttp.Server used as the README shows it
# (bench/cmd/hello/drainhttp), with each toolchain. Goal: drainhttp at most
# 0.6 MB (600 000 bytes) larger than nethttp.
#
#   bench/binsize.sh
#
# It also lists the packages drainhttp's build adds and, from the symbol
# table of an unstripped build (go tool nm -size), the bytes of code and
# data each package accounts for in the drainhttp binary beyond the plain
# one (symbol sizes only: the stripped file also shrinks or grows by
# pclntab, type and string data that nm does not attribute, so the package
# sums fall short of the file difference).
#
# Environment: TOOLCHAINS ["local go1.27.3 go1.27.3+nojsonv2"], TOP [25]
# packages listed, OUT [bench/results/binsize.txt]. A toolchain written
# TC+EXP builds with GOEXPERIMENT=EXP: go1.27.3+nojsonv2 is Go 1.27 with
# the encoding/json of Go 1.26, which log/slog links (on Go 1.27 it is
# built on json/v2, and larger).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAINS=${TOOLCHAINS:-local go1.27.3 go1.27.3+nojsonv2}
TOP=${TOP:-25}
OUT=${OUT:-bench/results/binsize.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$OUT")"

# setup TC[+EXP] sets tc, GOEXPERIMENT and gov (the version, +EXP if any).
setup() {
	tc=${1%%+*}
	export GOEXPERIMENT=
	[ "$tc" = "$1" ] || GOEXPERIMENT=${1#*+}
	gov=$(GOTOOLCHAIN=$tc go env GOVERSION)${GOEXPERIMENT:++$GOEXPERIMENT}
}

# pkgsizes BINARY prints "package bytes" for each package's symbols.
pkgsizes() {
	go tool nm -size "$1" | awk '
		NF >= 4 {
			name = $4
			for (i = 5; i <= NF; i++) name = name " " $i
			sub(/\[.*/, "", name) # type arguments of a generic instantiation
			# The package is the symbol up to its last "/" and then the first ".".
			pre = ""; rest = name
			if ((k = match(rest, /\/[^\/]*$/)) > 0) { pre = substr(rest, 1, k); rest = substr(rest, k + 1) }
			sub(/\..*/, "", rest)
			pkg = pre rest
			if (pkg ~ /^(type:|go:|runtime\.|$)/) pkg = "(" pkg ")"
			s[pkg] += $2
		}
		END { for (p in s) print p, s[p] }' | sort
}

{
	echo "# bench/binsize.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ); $(uname -m); tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "# go build -ldflags='-s -w' ./bench/cmd/hello/{nethttp,nethttp-shutdown,nethttp-slog,drainhttp}; sizes in bytes (MB = 10^6 B)"
	printf '%-19s %10s %17s %13s %10s %21s %20s %20s  %s\n' go nethttp nethttp-shutdown nethttp-slog drainhttp "drainhttp - nethttp" "- nethttp-shutdown" "- nethttp-slog" "goal <= 600000"
	for entry in $TOOLCHAINS; do
		setup "$entry"
		for p in nethttp nethttp-shutdown nethttp-slog drainhttp; do
			GOTOOLCHAIN=$tc go build -ldflags='-s -w' -o "$work/$gov-$p" ./bench/cmd/hello/$p
			GOTOOLCHAIN=$tc go build -o "$work/$gov-$p.full" ./bench/cmd/hello/$p
		done
		a=$(stat -c %s "$work/$gov-nethttp")
		b=$(stat -c %s "$work/$gov-nethttp-shutdown")
		l=$(stat -c %s "$work/$gov-nethttp-slog")
		c=$(stat -c %s "$work/$gov-drainhttp")
		verdict=met
		[ $((c - a)) -le 600000 ] || verdict=missed
		mb() { awk -v d="$1" 'BEGIN { printf "%.2f", d / 1e6 }'; }
		printf '%-19s %10d %17d %13d %10d %11d (%s MB) %10d (%s MB) %10d (%s MB)  %s\n' "$gov" "$a" "$b" "$l" "$c" \
			$((c - a)) "$(mb $((c - a)))" $((c - b)) "$(mb $((c - b)))" $((c - l)) "$(mb $((c - l)))" "$verdict"
	done
	for entry in $TOOLCHAINS; do
		setup "$entry"
		echo
		echo "## $gov: packages in the drainhttp build and not in nethttp-shutdown's"
		comm -13 <(GOTOOLCHAIN=$tc go list -deps ./bench/cmd/hello/nethttp-shutdown | sort) \
			<(GOTOOLCHAIN=$tc go list -deps ./bench/cmd/hello/drainhttp | sort) | grep -v '^github.com/drainhttp/drainhttp/bench' | sed 's/^/  /'
		echo
		for b in nethttp-shutdown nethttp-slog; do
			echo "## $gov: symbol bytes by package, drainhttp minus $b (unstripped builds, go tool nm -size), top $TOP"
			join -a1 -a2 -e0 -o 0,1.2,2.2 <(pkgsizes "$work/$gov-$b.full") <(pkgsizes "$work/$gov-drainhttp.full") |
				awk '{ d = $3 - $2; t += d; if (d != 0) print d, $1, $2, $3 } END { print t, "(all)", "-", "-" }' |
				sort -k1,1nr | head -"$TOP" | awk '{ printf "  %+9d  %-50s %9s -> %s\n", $1, $2, $3, $4 }'
			echo
		done
	done
} 2>&1 | tee "$OUT"
