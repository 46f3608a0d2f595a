#!/usr/bin/env bash
# Rollout behind Caddy: Caddy (Debian's caddy, in the foreground, its config
# in a temp dir, admin API off) reverse-proxies to two backends
# (bench/cmd/backend) over h2c (reverse_proxy h2c://..., lb_try_duration 2s,
# default random load balancing and retry rules: a failed dial is retried
# on another upstream for up to 2 s, a request that reached an upstream only
# if it is a GET). wrk sends GET / and POST / with a body to Caddy over
# HTTP/1.1; KILL_AT seconds in, backend A gets SIGTERM. Every trial starts
# both backends and Caddy anew.
#
#   bench/rollout_caddy.sh
#
# TRIALS trials in a row with drainhttp backends (gradual drain,
# drain time 3 s, drain timeout 2 s, no shutdown delay), then TRIALS with
# plain net/http backends (http.Server.Shutdown on SIGTERM, no delay).
# Counts non-2xx responses and socket errors per trial, and the GOAWAYs
# backend A sent (drainhttp's Stats.GoAways, from its summary line); for
# every non-2xx, Caddy's access log line (time relative to SIGTERM) and its
# error log lines.
#
# Without health checks Caddy keeps choosing a backend that has gone away
# (half the requests, at random), each choice costing a refused dial and
# lb_try_interval (250 ms); a request that draws it for all of
# lb_try_duration gets a 502. FAIL_DURATION (say 10s) adds Caddy's passive
# health check, fail_duration: an upstream whose dial failed is not chosen
# for that long. HEALTH_INTERVAL (say 300ms) adds active health checks on
# /ready at that interval (health_uri /ready; Caddy 2.6 marks an upstream
# down at its first failed check).
#
# Environment (defaults in brackets): TRIALS [20], MODES ["drainhttp
# plain"], DRAIN_TIME [3s], DRAIN_TIMEOUT [2s], SHUTDOWN_DELAY [0s],
# FAIL_DURATION [none], HEALTH_INTERVAL [none], CADDY_LOG [DEBUG: it logs
# each upstream round trip], PORT [27200] (Caddy; backends PORT+1, PORT+2),
# OUT [bench/results/rollout_caddy.txt], and bench/rollout_common.sh's
# CONNS, RATE_DELAY, WORK, BODY, LOAD, KILL_AT, TRACE.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/rollout_common.sh

TRIALS=${TRIALS:-20}
MODES=${MODES:-drainhttp plain}
DRAIN_TIME=${DRAIN_TIME:-3s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-2s}
SHUTDOWN_DELAY=${SHUTDOWN_DELAY:-0s}
PORT=${PORT:-27200}
OUT=${OUT:-bench/results/rollout_caddy.txt}
FAIL_DURATION=${FAIL_DURATION:-}
CADDY_LOG=${CADDY_LOG:-DEBUG}
FAIL_CONF=
[ -n "$FAIL_DURATION" ] && [ "$FAIL_DURATION" != 0 ] && FAIL_CONF=$'\n\t\tfail_duration '"$FAIL_DURATION"
HEALTH_INTERVAL=${HEALTH_INTERVAL:-}
[ -n "$HEALTH_INTERVAL" ] && FAIL_CONF+=$'\n\t\thealth_uri /ready\n\t\thealth_interval '"$HEALTH_INTERVAL"$'\n\t\thealth_timeout 1s'

PA=$((PORT + 1))
PB=$((PORT + 2))

need_pkgs caddy:caddy wrk:wrk jq:jq
rollout_init

# caddy_conf DIR: Caddy's config for a trial, logs in DIR.
caddy_conf() {
	cat <<EOF
{
	admin off
	auto_https off
	storage file_system $1/data
	grace_period 1s
	log {
		output file $1/caddy.log
		level $CADDY_LOG
	}
}
http://127.0.0.1:$PORT {
	bind 127.0.0.1
	log {
		output file $1/access.log
		format json
	}
	reverse_proxy h2c://127.0.0.1:$PA h2c://127.0.0.1:$PB {
		lb_try_duration 2s$FAIL_CONF
	}
}
EOF
}

# trial N MODE: one trial; prints its line, and its evidence if it lost
# requests.
trial() {
	local n=$1 mode=$2 dir="$work/$2-$1" a b cd
	mkdir -p "$dir"
	caddy_conf "$dir" >"$dir/Caddyfile"
	start_backends "$dir" "$mode" -drain-time "$DRAIN_TIME" -drain-timeout "$DRAIN_TIMEOUT" -shutdown-delay "$SHUTDOWN_DELAY" -strategy gradual
	HOME=$dir XDG_DATA_HOME=$dir XDG_CONFIG_HOME=$dir start cd caddy run --config "$dir/Caddyfile" --adapter caddyfile >"$dir/caddy.out" 2>&1
	wait_listen "$PORT"
	rollout_load "$dir" "$a" "$b" "$cd" TERM
	local line
	line=$(trial_line "$n" "$mode" "$dir" "caddy: $(jq -r 'select(.msg == "handled request") | "\((.ts - .duration) * 1000 | round) \(.duration)"' "$dir/access.log" | awk '{ printf "%.3f %s\n", $1 / 1000, $2 }' | slow_of "$(cat "$dir/kill_at")")")
	record "$line" "$dir" || true
}

# evidence DIR: the non-2xx access log lines and Caddy's error log lines,
# times relative to SIGTERM.
evidence() {
	local dir=$1 k
	k=$(cat "$dir/kill_at")
	echo "    Caddy access log, non-2xx (t = start of the request, seconds after SIGTERM to A; status 0, wrk closing its connections at the end of the load, left out):"
	jq -r --argjson k "$k" 'select((.status < 200 or .status > 299) and .status != 0) |
		"      t=\(((.ts - .duration - $k) * 1000 | round) / 1000) \(.request.method) \(.status) duration=\(.duration)"' \
		"$dir/access.log" | first 40 || true
	echo "    Caddy error log (t = seconds after SIGTERM to A):"
	jq -r --argjson k "$k" 'select(.level == "error" or .level == "warn") |
		"      t=\(((.ts - $k) * 1000 | round) / 1000) \(.logger) \(.msg) upstream=\(.upstream // "") error=\(.error // "") duration=\(.duration // "")"' \
		"$dir/caddy.log" | first 40 || true
}

rollout_output "caddy $(caddy version | cut -d' ' -f1)"
{
	echo "# caddy 127.0.0.1:$PORT -> A h2c://:$PA, B h2c://:$PB; reverse_proxy options: lb_try_duration 2s$(tr '\n\t' '; ' <<<"$FAIL_CONF" | tr -s ' ')"
	echo "# load: wrk -t1 -c$CONNS -d${LOAD}s over HTTP/1.1 to Caddy, GET / or POST / (${BODY} B body) at random, ${RATE_DELAY} ms between a response and the next request per connection; handler work $WORK"
	echo "# SIGTERM to A at ${KILL_AT}s; drainhttp: gradual, drain time $DRAIN_TIME, drain timeout $DRAIN_TIMEOUT, shutdown delay $SHUTDOWN_DELAY; plain: Shutdown at once (context $DRAIN_TIMEOUT)"
	echo "# trial line: requests, non2xx, sockerr=connect/read/write/timeout (wrk), statuses; A: exit = SIGTERM to exit, Stats (drainhttp: goaways = HTTP/2 connections sent a GOAWAY), phases (start after SIGTERM, cause)"
}
run_modes
