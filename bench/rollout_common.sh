# shellcheck shell=bash
# What bench/rollout_nginx.sh, bench/rollout_caddy.sh and
# bench/rollout_haproxy.sh share; they source it, it runs nothing by
# itself. A trial there is: two backends (bench/cmd/backend) behind a proxy,
# all on 127.0.0.1, wrk sending GET / or POST / (4 KiB body), each at
# random, through the proxy, SIGTERM to backend A in the middle of the load,
# then everything stopped. Each trial counts the responses wrk saw by status, its
# socket errors, and prints backend A's summary line (time from SIGTERM to
# exit, and for drainhttp its Stats).
#
# Knobs shared by the scripts (defaults in brackets):
#   CONNS [16]       wrk -c: client connections to the proxy
#   RATE_DELAY [4]   ms each wrk connection waits between a response and
#                    its next request (wrk's Lua delay()), so the load stays
#                    moderate on a shared 2-core machine
#   WORK [2ms]       time the backend's handler takes per GET or POST
#   BODY [4096]      POST body bytes
#   LOAD [9]         seconds of load per trial
#   KILL_AT [2]      seconds into the load when backend A gets SIGTERM
#   KEEP_DIR [/tmp/rollout_kept.PID]  where the logs of every trial that
#                    lost a request are kept (the backends' -trace output,
#                    the proxy's access and error logs, wrk's output)
#   TRACE [0]        1: keep every trial's logs, not only those that lost
#   SRC [HEAD]       the commit whose library and backend are measured:
#                    exported with git archive and built there, so that
#                    uncommitted changes in the work tree are left out;
#                    SRC=worktree builds the work tree as it is

CONNS=${CONNS:-16}
RATE_DELAY=${RATE_DELAY:-4}
WORK=${WORK:-2ms}
BODY=${BODY:-4096}
LOAD=${LOAD:-9}
KILL_AT=${KILL_AT:-2}
TRACE=${TRACE:-0}
KEEP_DIR=${KEEP_DIR:-/tmp/rollout_kept.$$}

# need_pkgs installs the Debian packages whose commands are missing:
# need_pkgs CMD:PKG...
need_pkgs() {
	local missing=() p
	for p in "$@"; do
		command -v "${p%%:*}" >/dev/null || missing+=("${p#*:}")
	done
	[ ${#missing[@]} = 0 ] && return
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "$0: needs ${missing[*]} (apt-get install -y ${missing[*]})" >&2
		exit 1
	fi
	echo "installing ${missing[*]}" >&2
	timeout 600 apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null
	# The packages' init scripts may have started system services: stop
	# those by their pid files, the scripts run their own.
	local pidf
	for pidf in /run/nginx.pid /run/haproxy.pid; do
		[ -s "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null || true
	done
}

pids=()
work=
# rollout_init makes the work directory, builds the backend and writes the
# wrk script.
rollout_init() {
	work=$(mktemp -d)
	chmod 755 "$work" # nginx's workers run as nobody
	trap rollout_cleanup EXIT
	trap 'exit 130' INT TERM
	SRC=${SRC:-HEAD}
	if [ "$SRC" = worktree ]; then
		go build -o "$work/backend" ./bench/cmd/backend
		src_desc="work tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain -- . ':!bench' 2>/dev/null | wc -l) files outside bench/ changed or new"
	else
		mkdir "$work/src"
		git archive "$SRC" | tar -x -C "$work/src"
		(cd "$work/src/bench" && GOWORK=off GOFLAGS=-mod=mod go build -o "$work/backend" ./cmd/backend)
		src_desc="commit $(git rev-parse --short "$SRC") ($(git log -1 --format=%s "$SRC" | cut -c1-80)), built from git archive"
	fi
	cat >"$work/load.lua" <<EOF
-- GET / or POST / (a body of $BODY bytes), each with probability 1/2
-- (not in turn: a proxy's round robin would lock onto the alternation and
-- send every POST to one backend); counts the responses by status.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  counts = {}
  math.randomseed(os.time() + os.clock() * 1000000)
  get = wrk.format("GET", "/")
  post = wrk.format("POST", "/", {["Content-Type"] = "application/octet-stream"}, string.rep("x", $BODY))
end
function delay() return $RATE_DELAY end
function request()
  if math.random() < 0.5 then return post end
  return get
end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total, codes, line, non2xx = {}, {}, "", 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  for k in pairs(total) do table.insert(codes, k) end
  table.sort(codes)
  for _, k in ipairs(codes) do
    line = line .. string.format(" %d:%d", k, total[k])
    if k < 200 or k > 299 then non2xx = non2xx + total[k] end
  end
  local e = summary.errors
  io.write(string.format("load requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d statuses=%s\n",
    summary.requests, non2xx, e.connect, e.read, e.write, e.timeout, line))
end
EOF
}

rollout_cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	[ -n "$work" ] && rm -rf "$work"
}

# start BG_VAR CMD...: runs CMD in the background, its pid in BG_VAR and in
# pids (for the cleanup).
start() {
	local var=$1
	shift
	"$@" &
	local pid=$!
	pids+=("$pid")
	printf -v "$var" %s "$pid"
}

# stop PID [SIGNAL] [SECONDS]: signals PID (default TERM), waits up to
# SECONDS (default 5) for it, then kills it.
stop() {
	local pid=$1 sig=${2:-TERM} secs=${3:-5} i
	{
		kill -"$sig" "$pid" || return 0
		for ((i = 0; i < secs * 20; i++)); do
			kill -0 "$pid" || break
			sleep 0.05
		done
		kill -KILL "$pid" || true
		wait "$pid" || true
	} 2>/dev/null
}

# wait_listen PORT: waits up to 10 s until something listens on
# 127.0.0.1:PORT (without connecting to it).
wait_listen() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ -n "$(ss -Hltn "sport = :$1")" ] && return 0
		sleep 0.05
	done
	echo "$0: nothing listens on 127.0.0.1:$1" >&2
	return 1
}

# wait_free PORT...: waits up to 10 s until nothing listens on the ports,
# so that a trial never meets the previous one's processes.
wait_free() {
	local i p busy
	for ((i = 0; i < 200; i++)); do
		busy=
		for p in "$@"; do
			[ -n "$(ss -Hltn "sport = :$p")" ] && busy=1
		done
		[ -z "$busy" ] && return 0
		sleep 0.05
	done
	echo "$0: ports $* still in use" >&2
	return 1
}

# start_backend VAR DIR LABEL MODE PORT FLAGS...: starts bench/cmd/backend,
# its output in DIR/LABEL.out and DIR/LABEL.err.
start_backend() {
	local var=$1 dir=$2 label=$3 mode=$4 port=$5
	shift 5
	start "$var" "$work/backend" -name "$label" -mode "$mode" -addr "127.0.0.1:$port" -work "$WORK" -trace -log-level info "$@" \
		>"$dir/$label.out" 2>"$dir/$label.err"
}

# start_backends DIR MODE A_FLAGS... [-- B_FLAGS...]: waits until no
# process of the previous trial listens on PORT, PA or PB, then starts
# backends A (on PA) and B (on PB) in MODE, B with A's flags unless others
# follow "--", and waits until both listen. Their pids go to the caller's a
# and b.
start_backends() {
	local dir=$1 mode=$2 af=() bf=() sep='' f
	shift 2
	for f in "$@"; do
		if [ -z "$sep" ] && [ "$f" = -- ]; then
			sep=1
		elif [ -n "$sep" ]; then
			bf+=("$f")
		else
			af+=("$f")
		fi
	done
	[ -n "$sep" ] || bf=("${af[@]}")
	wait_free "$PORT" "$PA" "$PB"
	start_backend a "$dir" A "$mode" "$PA" "${af[@]}"
	start_backend b "$dir" B "$mode" "$PB" "${bf[@]}"
	wait_listen "$PA"
	wait_listen "$PB"
}

# rollout_load DIR A B PROXY SIGNAL: LOAD seconds of load through the proxy
# on PORT (wrk's output in DIR/load.txt), SIGTERM to backend A KILL_AT
# seconds in; then waits for A to exit and stops the proxy (with SIGNAL)
# and backend B. A, B and PROXY are pids.
rollout_load() {
	local dir=$1 a=$2 b=$3 proxy=$4 sig=$5 killer
	kill_backend "$a" "$dir" &
	killer=$!
	run_load "http://127.0.0.1:$PORT/" "$dir/load.txt"
	wait "$killer" || true
	wait_exit "$a" 30
	stop "$proxy" "$sig" 5
	stop "$b" KILL
}

# run_load URL OUT: wrk for LOAD seconds, bounded.
run_load() {
	timeout $((LOAD + 15)) wrk -t1 -c"$CONNS" -d"${LOAD}s" --timeout 5s --latency -s "$work/load.lua" "$1" >"$2" 2>&1 || true
}

# now: seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

# kill_backend PID DIR: SIGTERM to PID KILL_AT seconds from now, the
# moment written to DIR/kill_at. Run it in the background beside the load.
kill_backend() {
	sleep "$KILL_AT"
	now >"$2/kill_at"
	kill -TERM "$1"
}

# wait_exit PID SECONDS: waits for PID to exit, killing it after SECONDS.
wait_exit() {
	local pid=$1 secs=$2 i
	for ((i = 0; i < secs * 20; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.05
	done
	echo "backend $pid still running after ${secs}s: killed" >&2
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# field KEY LINE: the value of KEY=VALUE in LINE.
field() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; }

# trial_line N MODE DIR [EXTRA]: one line for a trial, from wrk's output
# and backend A's summary, EXTRA (the proxy's view) after them.
trial_line() {
	local n=$1 mode=$2 dir=$3 extra=${4:-} load sum
	load=$(grep -m1 '^load ' "$dir/load.txt" || echo "load requests=? non2xx=? connect=? read=? write=? timeout=? statuses=?")
	sum=$(grep -m1 '^summary' "$dir/A.out" || echo "summary missing")
	local p99 max
	p99=$(awk '$1 == "99%" { print $2 }' "$dir/load.txt")
	max=$(awk '$1 == "Latency" && NF >= 4 { print $4 }' "$dir/load.txt")
	printf 'trial %2d %-9s requests=%s non2xx=%s sockerr=%s/%s/%s/%s statuses=%s p99=%s max=%s | A: exit=%s gets=%s posts=%s goaways=%s drained=%s forced=%s bad_bodies=%s%s\n' \
		"$n" "$mode" "$(field requests "$load")" "$(field non2xx "$load")" \
		"$(field connect "$load")" "$(field read "$load")" "$(field write "$load")" "$(field timeout "$load")" \
		"$(sed -n 's/.*statuses= *//p' <<<"$load" | tr ' ' ',')" "${p99:-?}" "${max:-?}" \
		"$(field sigterm_to_exit "$sum")" "$(field gets "$sum")" "$(field posts "$sum")" "$(field goaways "$sum")" "$(field drained "$sum")" "$(field forced "$sum")" \
		"$(field bad_bodies "$sum")" "$(phases_of "$sum")${extra:+ | $extra}"
}

# slow_of K: reads "START DURATION" lines (seconds since the epoch,
# seconds) and prints how many requests took over SLOW seconds and when the
# first and last of them started, relative to K (SIGTERM to A).
SLOW=${SLOW:-0.5}
slow_of() {
	awk -v k="$1" -v slow="$SLOW" '$2 > slow { n++; t = $1 - k; if (n == 1 || t < lo) lo = t; if (n == 1 || t > hi) hi = t }
		END { if (n) printf "slow(>%ss)=%d started t=%+.3f..%+.3f", slow, n, lo, hi; else printf "slow(>%ss)=0", slow }'
}

phases_of() {
	local p
	p=$(field phases "$1")
	[ -n "$p" ] && echo " phases=$p"
	p=$(field shutdown_at "$1")
	[ -n "$p" ] && echo " shutdown_at=$p ended_by=$(field ended_by "$1")"
	true
}

# lost LINE: whether the trial line shows any non-2xx or socket error.
lost() {
	local l=$1 nx se
	nx=$(sed -n 's/.* non2xx=\([^ ]*\).*/\1/p' <<<"$l")
	se=$(sed -n 's/.* sockerr=\([^ ]*\).*/\1/p' <<<"$l")
	[ "$nx" != 0 ] || [ "$se" != 0/0/0/0 ]
}

# tally LABEL FILE: per-mode summary of the trial lines in FILE whose mode
# is LABEL: total non-2xx and socket errors, trials with either, exit times
# of backend A.
tally() {
	local label=$1 file=$2
	awk -v m="$label" '
		$1 == "trial" && $3 == m {
			n++
			for (i = 4; i <= NF; i++) {
				split($i, kv, "=")
				if (kv[1] == "non2xx") { nx += kv[2]; lost = kv[2] != 0; per = per sep kv[2] }
				if (kv[1] == "requests") req += kv[2]
				if (kv[1] == "sockerr") { split(kv[2], s, "/"); e = s[1] + s[2] + s[3] + s[4]; se += e; if (e > 0) lost = 1 }
				if (kv[1] == "exit") { e = kv[2]; sub("s", "", e); ex[n] = e + 0; sum += e }
				if (kv[1] == "goaways") { ga = ga sep kv[2] }
			}
			sep = ","
			if (lost) bad++
		}
		END {
			if (n == 0) { print "  " m ": no trials"; exit }
			# sort exit times for the median
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (ex[j] < ex[i]) { t = ex[i]; ex[i] = ex[j]; ex[j] = t }
			med = (n % 2) ? ex[(n + 1) / 2] : (ex[n / 2] + ex[n / 2 + 1]) / 2
			printf "  %-22s trials=%d requests=%d non2xx=%d socket_errors=%d (trials with either: %d) exit_s: min=%.2f median=%.2f max=%.2f\n", m, n, req, nx, se, bad + 0, ex[1], med, ex[n]
			printf "  %-22s non2xx per trial: %s\n", "", per
			if (ga !~ /^[,]*$/) printf "  %-22s goaways per drain: %s\n", "", ga
		}' "$file"
}

# record LINE DIR: prints a trial's line and keeps it for the summary. If
# the trial lost requests (or TRACE=1), prints its evidence (the script's
# evidence DIR) and backend A's summary line, and keeps its logs; returns 1
# if not.
record() {
	local line=$1 dir=$2
	echo "$line"
	echo "$line" >>"$work/trials.txt"
	lost "$line" || [ "$TRACE" = 1 ] || return 1
	evidence "$dir"
	echo "    A: $(grep -m1 '^summary' "$dir/A.out" || echo 'no summary')"
	keep "$dir"
}

# rollout_output PROXY_VERSION: from here on the script's output goes to
# OUT.tmp as well (rollout_finish makes it OUT); prints the header lines
# every script starts with. The trials run in this shell (not in a
# pipeline's subshell), so that the cleanup sees every process they start.
rollout_output() {
	mkdir -p "$(dirname "$OUT")"
	exec 3>&1 > >(tee "$OUT.tmp")
	tee_pid=$!
	echo "# bench/$(basename "$0"), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(go version); $(nproc) CPUs; kernel $(uname -r); $1; $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
	echo "# library and backend: $src_desc"
	echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# run_modes: TRIALS trials in a row of each of MODES (the script's
# trial N MODE), then the summary.
run_modes() {
	local mode i
	for mode in $MODES; do
		echo
		echo "## $mode"
		for ((i = 1; i <= TRIALS; i++)); do
			trial "$i" "$mode"
		done
	done
	rollout_finish
}

# rollout_finish: the summary of every mode's trials (the lines each
# script's trial appended to $work/trials.txt), then OUT.tmp, which the
# script's output went to, becomes OUT.
rollout_finish() {
	local m
	echo
	echo "## summary"
	for m in $MODES; do
		tally "$m" "$work/trials.txt"
	done
	exec 1>&3 3>&-
	wait "$tee_pid" 2>/dev/null || true
	mv "$OUT.tmp" "$OUT"
}

# keep DIR: copies a trial's directory to KEEP_DIR.
keep() {
	mkdir -p "$KEEP_DIR"
	cp -r "$1" "$KEEP_DIR/" && echo "    logs kept in $KEEP_DIR/$(basename "$1")"
}

# first N: the first N lines of the input, and how many more there were.
# It reads all of its input, unlike head, whose early exit would fail the
# writer of a pipeline under pipefail (and end the script under set -e).
first() {
	awk -v n="$1" 'NR <= n { print } END { if (NR > n) printf "      ... and %d more\n", NR - n }'
}
