#!/usr/bin/env bash
# Rollout behind nginx: nginx (Debian's nginx-light, in the foreground, its
# config in a temp dir) proxies to two backends (bench/cmd/backend) over
# HTTP/1.1 with an upstream keep-alive pool (keepalive 32,
# proxy_http_version 1.1, proxy_set_header Connection ""), default
# proxy_next_upstream (error timeout: a GET is passed to the other backend
# after an error, a POST only if nginx had not sent it yet). wrk sends
# GET / and POST / with a body through nginx; KILL_AT seconds in, backend A
# gets SIGTERM. Every trial starts both backends and nginx anew.
#
#   bench/rollout_nginx.sh
#
# TRIALS trials in a row with drainhttp backends (gradual drain,
# drain time 3 s, drain timeout 2 s, no shutdown delay), then TRIALS with
# plain net/http backends (http.Server.Shutdown on SIGTERM, no delay).
# Counts non-2xx responses (nginx's 502s) and socket errors per trial;
# for every non-2xx, nginx's access log line (time relative to SIGTERM,
# method, status, upstream, upstream status) and error log lines.
#
# Environment (defaults in brackets): TRIALS [20], MODES ["drainhttp
# plain"], DRAIN_TIME [3s], DRAIN_TIMEOUT [2s], SHUTDOWN_DELAY [0s],
# PORT [27100] (nginx; backends PORT+1, PORT+2),
# OUT [bench/results/rollout_nginx.txt], and bench/rollout_common.sh's
# CONNS, RATE_DELAY, WORK, BODY, LOAD, KILL_AT, TRACE.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/rollout_common.sh

TRIALS=${TRIALS:-20}
MODES=${MODES:-drainhttp plain}
DRAIN_TIME=${DRAIN_TIME:-3s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-2s}
SHUTDOWN_DELAY=${SHUTDOWN_DELAY:-0s}
PORT=${PORT:-27100}
OUT=${OUT:-bench/results/rollout_nginx.txt}
PA=$((PORT + 1))
PB=$((PORT + 2))

need_pkgs nginx:nginx-light wrk:wrk
rollout_init

# nginx_conf DIR: nginx's config for a trial, logs in DIR.
nginx_conf() {
	cat <<EOF
daemon off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log info;
events { worker_connections 4096; }
http {
    log_format trial '\$msec \$request_method \$status time=\$request_time upstream=\$upstream_addr upstream_status=\$upstream_status connect=\$upstream_connect_time';
    access_log $1/access.log trial;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    upstream backends {
        server 127.0.0.1:$PA;
        server 127.0.0.1:$PB;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$PORT;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

# trial N MODE: one trial; prints its line, and its evidence if it lost
# requests.
trial() {
	local n=$1 mode=$2 dir="$work/$2-$1" a b ng
	mkdir -p "$dir/tmp"
	chmod -R 777 "$dir/tmp"
	nginx_conf "$dir" >"$dir/nginx.conf"
	start_backends "$dir" "$mode" -drain-time "$DRAIN_TIME" -drain-timeout "$DRAIN_TIMEOUT" -shutdown-delay "$SHUTDOWN_DELAY" -strategy gradual
	start ng nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
	wait_listen "$PORT"
	rollout_load "$dir" "$a" "$b" "$ng" QUIT
	local line
	line=$(trial_line "$n" "$mode" "$dir" "nginx: $(awk '{ d = substr($4, 6); printf "%.3f %s\n", $1 - d, d }' "$dir/access.log" | slow_of "$(cat "$dir/kill_at")")")
	record "$line" "$dir" || grep -q 'slow(>[0-9.]*s)=0' <<<"$line" || slow_evidence "$dir"
}

# evidence DIR: the non-2xx access log lines and nginx's error log lines
# about upstreams, times relative to SIGTERM.
evidence() {
	local dir=$1 k
	k=$(cat "$dir/kill_at")
	echo "    nginx access log, non-2xx (t = start of the request, seconds after SIGTERM to A):"
	awk -v k="$k" '$3 !~ /^2/ { printf "      t=%+.3f %s\n", $1 - substr($4, 6) - k, substr($0, index($0, " ") + 1) }' "$dir/access.log" | first 40 || true
	echo "    nginx error log, upstream lines (second resolution; SIGTERM at $(date -u -d "@$k" +%H:%M:%S.%N | cut -c1-12)):"
	grep -E 'upstream|connect\(\)|recv\(\)|send\(\)|writev\(\)' "$dir/error.log" | sed 's/^/      /' | first 40 || true
}

# slow_evidence DIR: the access log lines of the requests that took over
# SLOW seconds (their upstreams, upstream statuses and connect times).
slow_evidence() {
	local dir=$1 k
	k=$(cat "$dir/kill_at")
	echo "    nginx access log, requests over ${SLOW}s (t = start, seconds after SIGTERM to A):"
	awk -v k="$k" -v slow="$SLOW" '{ d = substr($4, 6) } d > slow { printf "      t=%+.3f %s\n", $1 - d - k, substr($0, index($0, " ") + 1) }' "$dir/access.log" | first 20 || true
	keep "$dir"
}

rollout_output "$(nginx -v 2>&1)"
{
	echo "# nginx 127.0.0.1:$PORT -> A :$PA, B :$PB (upstream keepalive 32, HTTP/1.1, default proxy_next_upstream)"
	echo "# load: wrk -t1 -c$CONNS -d${LOAD}s, GET / or POST / (${BODY} B body) at random, ${RATE_DELAY} ms between a response and the next request per connection; handler work $WORK"
	echo "# SIGTERM to A at ${KILL_AT}s; drainhttp: gradual, drain time $DRAIN_TIME, drain timeout $DRAIN_TIMEOUT, shutdown delay $SHUTDOWN_DELAY; plain: Shutdown at once (context $DRAIN_TIMEOUT)"
	echo "# trial line: requests, non2xx, sockerr=connect/read/write/timeout (wrk), statuses; A: exit = SIGTERM to exit, Stats (drainhttp), phases (start after SIGTERM, cause)"
}
run_modes
