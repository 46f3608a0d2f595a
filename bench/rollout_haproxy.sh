#!/usr/bin/env bash
# Rollout behind HAProxy, for the shutdown delay: HAProxy (Debian's haproxy,
# in the foreground, its config in a temp dir) balances two backends
# (bench/cmd/backend) round robin over HTTP/1.1, with active checks on
# /ready (option httpchk GET /ready, inter 300ms fall 2 rise 2) and nothing
# to hide a failure: retries 0, no option redispatch. wrk sends GET / and
# POST / with a body through HAProxy; KILL_AT seconds in, backend A gets
# SIGTERM. Every trial starts both backends and HAProxy anew.
#
#   bench/rollout_haproxy.sh
#
# Each variant is a way for A to shut down; the trials run the variants in
# turn (trial 1 of each, then trial 2 of each, ...), so that drift in the
# machine's load hits them alike. By default:
#
#   drainhttp-delay0     drainhttp, gradual, drain time 3 s, drain timeout
#                        2 s, no shutdown delay
#   drainhttp-delay1s    the same with a fixed shutdown delay of 1 s
#   drainhttp-delay5s    ... of 5 s
#   drainhttp-adaptive   the same with Adaptive{Probes: 2} (HAProxy's fall 2)
#                        and the default Quiet (2 s), at most 5 s of delay
#   drainhttp-adaptive-q500ms  Adaptive{Probes: 2, Quiet: 500ms}: HAProxy
#                        applies a server's DOWN state at once, with no data
#                        path to reprogram, so a short quiet period suffices
#   plain-delay0         http.Server: /ready 503 and Shutdown at once
#   plain-delay1s        /ready 503, sleep 1 s, then Shutdown
#   plain-delay5s        ... sleep 5 s
#
# Reports per trial the client's errors (non-2xx, socket errors), A's time
# from SIGTERM to exit, and when HAProxy marked A DOWN; for every error,
# HAProxy's log line (time relative to SIGTERM, timers TR/Tw/Tc/Tr/Ta,
# termination state: S = the server side failed, C = at connect, H = while
# waiting for the response headers).
#
# Environment (defaults in brackets): TRIALS [5] per variant,
# VARIANTS [the list above; one "label|mode|backend flags" a line],
# DRAIN_TIME [3s], DRAIN_TIMEOUT [2s], LOAD [13], PORT [27300] (HAProxy;
# backends PORT+1, PORT+2), OUT [bench/results/rollout_haproxy.txt], and
# bench/rollout_common.sh's CONNS, RATE_DELAY, WORK, BODY, KILL_AT, TRACE.
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD=${LOAD:-13}
. bench/rollout_common.sh

TRIALS=${TRIALS:-5}
DRAIN_TIME=${DRAIN_TIME:-3s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-2s}
PORT=${PORT:-27300}
OUT=${OUT:-bench/results/rollout_haproxy.txt}
PA=$((PORT + 1))
PB=$((PORT + 2))
VARIANTS=${VARIANTS:-"drainhttp-delay0|drainhttp|-shutdown-delay 0s
drainhttp-delay1s|drainhttp|-shutdown-delay 1s
drainhttp-delay5s|drainhttp|-shutdown-delay 5s
drainhttp-adaptive|drainhttp|-adaptive -probes 2 -shutdown-delay 5s
drainhttp-adaptive-q500ms|drainhttp|-adaptive -probes 2 -quiet 500ms -shutdown-delay 5s
plain-delay0|plain|-shutdown-delay 0s
plain-delay1s|plain|-shutdown-delay 1s
plain-delay5s|plain|-shutdown-delay 5s"}
MODES=$(cut -d'|' -f1 <<<"$VARIANTS" | tr '\n' ' ')

need_pkgs haproxy:haproxy wrk:wrk
rollout_init

# haproxy_conf: HAProxy's config (it logs to stdout).
haproxy_conf() {
	cat <<EOF
global
    log stdout format iso local0 info
    maxconn 4096
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 0
    no option redispatch
frontend fe
    bind 127.0.0.1:$PORT
    log-format "%Ts.%ms %HM %ST %b/%s %TR/%Tw/%Tc/%Tr/%Ta %tsc"
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /ready
    server a 127.0.0.1:$PA check inter 300ms fall 2 rise 2
    server b 127.0.0.1:$PB check inter 300ms fall 2 rise 2
EOF
}

# trial N LABEL MODE FLAGS: one trial; prints its line, and its evidence if
# it lost requests.
trial() {
	local n=$1 label=$2 mode=$3 flags=$4 dir="$work/$2-$1" a b hp
	mkdir -p "$dir"
	haproxy_conf >"$dir/haproxy.cfg"
	# shellcheck disable=SC2206 # FLAGS is a list of words
	local f=(-drain-time "$DRAIN_TIME" -drain-timeout "$DRAIN_TIMEOUT" -strategy gradual $flags)
	start_backends "$dir" "$mode" "${f[@]}" -- -drain-time "$DRAIN_TIME" -drain-timeout "$DRAIN_TIMEOUT"
	start hp haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1
	wait_listen "$PORT"
	sleep 1 # both servers UP (rise 2 at 300 ms) before the load
	rollout_load "$dir" "$a" "$b" "$hp" TERM
	local line k down
	k=$(cat "$dir/kill_at")
	down=$(grep -m1 '^[0-9].*Server be/a is DOWN' "$dir/haproxy.log" | grep -o '^[0-9T:.+-]*' || true)
	if [ -n "$down" ]; then
		down=$(awk -v d="$(date -d "$down" +%s.%N)" -v k="$k" 'BEGIN { printf "%+.3fs", d - k }')
	else
		down=never
	fi
	line=$(trial_line "$n" "$label" "$dir" "haproxy: A down at $down")
	record "$line" "$dir" || true
}

# evidence DIR: HAProxy's log lines for the errors, and its server state
# changes, times relative to SIGTERM.
evidence() {
	local dir=$1 k
	k=$(cat "$dir/kill_at")
	echo "    HAProxy log, non-2xx (t = accept, seconds after SIGTERM to A; TR/Tw/Tc/Tr/Ta ms; termination state):"
	awk -v k="$k" '$3 ~ /^(GET|POST)$/ && $4 !~ /^2/ { printf "      t=%+.3f %s\n", $2 - k, substr($0, index($0, $3)) }' "$dir/haproxy.log" | first 40 || true
	echo "    HAProxy server state changes:"
	grep 'Server be/' "$dir/haproxy.log" | grep -v '^\[' | while read -r ts rest; do
		awk -v d="$(date -d "$ts" +%s.%N)" -v k="$k" -v r="$rest" 'BEGIN { printf "      t=%+.3f %s\n", d - k, substr(r, 1, 110) }'
	done || true
}

rollout_output "$(haproxy -v | head -1 | cut -d' ' -f1-3)"
{
	echo "# haproxy 127.0.0.1:$PORT -> A :$PA, B :$PB (roundrobin, option httpchk GET /ready, inter 300ms fall 2 rise 2, retries 0, no option redispatch)"
	echo "# load: wrk -t1 -c$CONNS -d${LOAD}s, GET / or POST / (${BODY} B body) at random, ${RATE_DELAY} ms between a response and the next request per connection; handler work $WORK"
	echo "# SIGTERM to A at ${KILL_AT}s; drainhttp: gradual, drain time $DRAIN_TIME, drain timeout $DRAIN_TIMEOUT; plain: Shutdown (context $DRAIN_TIMEOUT) after the delay"
	echo "# variants (label|mode|A's flags):"
	sed 's/^/#   /' <<<"$VARIANTS"
	echo "# trial line: requests, non2xx, sockerr=connect/read/write/timeout (wrk), statuses; A: exit = SIGTERM to exit, Stats (drainhttp), phases (start after SIGTERM, cause); when HAProxy marked A DOWN"
}
for ((i = 1; i <= TRIALS; i++)); do
	echo
	echo "## round $i"
	while IFS='|' read -r label mode flags; do
		[ -z "$label" ] && continue
		trial "$i" "$label" "$mode" "$flags"
	done <<<"$VARIANTS"
done
rollout_finish
