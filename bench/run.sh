#!/usr/bin/env bash
# make bench: `meshdrill load` side by side with wrk and oha on this machine.
# Loopback only. Generator pinned to CPU 0, server (nginx, 1 worker / stall server) to CPU 1.
# Writes bench/results.md (the tables) and keeps raw outputs in bench/raw/.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}          # interleaved closed-loop rounds per tool (min/median/max reported)
DUR=${DUR:-10}               # seconds per closed-loop round
CONNS=${CONNS:-50}
RSS_LONG=${RSS_LONG:-60}     # seconds of the long run for peak RSS
RATE=${RATE:-20000}          # fixed-rate test, req/s, for RATE_DUR seconds
RATE_DUR=${RATE_DUR:-10}
STALL_RATE=${STALL_RATE:-1000}
STALL_DUR=${STALL_DUR:-20}
RSS_CONNS=${RSS_CONNS:-"50 500 1000 2000 5000"}   # peak RSS vs -c (closed loop, RSS_DUR s each)
RSS_DUR=${RSS_DUR:-10}
RSS_LONG_CONNS=${RSS_LONG_CONNS:-5000}  # the long run (RSS_LONG s) again at this -c: flat in -c and duration
WORKER_ROUNDS=${WORKER_ROUNDS:-3}   # --workers 2 vs one worker (only when `load --help` has --workers)
QUIET_IDLE=${QUIET_IDLE:-90} # a round is flagged busy when the machine was < this % idle just before it
GEN_CPU=${GEN_CPU:-0}
SRV_CPU=${SRV_CPU:-1}
RAW=bench/raw
OUT=${OUT:-bench/results.md}

have() { command -v "$1" >/dev/null 2>&1; }

# --- tools (idempotent) ---
missing=()
have nginx || missing+=(nginx)
have wrk || missing+=(wrk)
[ -x /usr/bin/time ] || missing+=(time)
have taskset || missing+=(util-linux)
have python3 || missing+=(python3)
have curl || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# SKIP_OHA=1: run without oha (its rows read n/a) instead of building it (~10 min).
if ! have oha && [ "${SKIP_OHA:-0}" != 1 ]; then cargo install oha --locked; fi
cargo build --release --bin meshdrill --example stall_server
TGT=${CARGO_TARGET_DIR:-target}
BIN=$TGT/release/meshdrill
STALL=$TGT/release/examples/stall_server
# Up to 5000 connections per tool (and as many on nginx's side).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$RAW"
rm -f "$RAW"/*

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "server at $1 did not start" >&2; return 1; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
gen() { taskset -c "$GEN_CPU" "$@"; }
# timed NAME CMD...: runs CMD pinned to the generator CPU under /usr/bin/time; stdout to $RAW/NAME.out
# (taskset execs the tool, so %M is the tool's own peak RSS, not a harness's.)
timed() {
  local name=$1; shift
  if [ "$1" = oha ] && ! have oha; then return 0; fi
  /usr/bin/time -o "$RAW/$name.time" -f "%U %S %e %M" taskset -c "$GEN_CPU" "$@" > "$RAW/$name.out" 2> "$RAW/$name.err" || true
}
# unpinned NAME CMD...: the same, not pinned (for the runs that are about using both CPUs)
unpinned() { local name=$1; shift; /usr/bin/time -o "$RAW/$name.time" -f "%U %S %e %M" "$@" > "$RAW/$name.out" 2> "$RAW/$name.err" || true; }
# CPU jiffies of a process (utime + stime, fields 14 and 15 of /proc/PID/stat; comm has no spaces here)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# busy and total jiffies of the whole machine (/proc/stat "cpu" line; idle = idle + iowait)
cpustat() { awk '/^cpu /{t=0; for (i=2; i<=NF; i++) t+=$i; print t - $5 - $6, t}' /proc/stat; }
# measured NAME CMD...: a closed-loop round. Records, in $RAW/NAME.env: the 1-min load
# average and the machine's idle share over the second before the round (nothing of
# ours runs then), nginx's worker CPU jiffies before/after, and the machine's busy and
# total jiffies over the round (so the CPU used by others during it can be worked out).
measured() {
  local name=$1; shift
  local b0 b1 t0 t1
  read -r b0 t0 < <(cpustat); sleep 1; read -r b1 t1 < <(cpustat)
  local idle=$(( 100 * ((t1 - t0) - (b1 - b0)) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
  local load1; load1=$(cut -d' ' -f1 /proc/loadavg)
  local n0 s0; n0=$(ticks "$NGINX_WORKER"); read -r s0 _ < <(cpustat)
  timed "$name" "$@"
  local n1 s1; n1=$(ticks "$NGINX_WORKER"); read -r s1 _ < <(cpustat)
  echo "load1=$load1 idle_pct=$idle nginx_ticks=$((n1 - n0)) busy_ticks=$((s1 - s0)) hz=$(getconf CLK_TCK)" > "$RAW/$name.env"
}

# oha's JSON flag changed across versions.
if oha --help 2>&1 | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); else OHA_JSON=(--json); fi
OHA=(oha --no-tui "${OHA_JSON[@]}")
have oha || echo "oha not installed (SKIP_OHA=1): its runs are skipped, its rows read n/a"

# --- nginx: 1 worker on CPU 1, 12-byte body, keep-alive ---
PORT=$(free_port)
mkdir -p "$TMP/nginx"
cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location / { default_type text/plain; return 200 "hello world\n"; }
  }
}
CONF
taskset -c "$SRV_CPU" nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" &
PIDS+=($!)
URL="http://127.0.0.1:$PORT/"
wait_http "$URL"
# nginx's one worker process (the master's only child): its CPU is the server's CPU.
NGINX_WORKER=""
for _ in $(seq 50); do
  NGINX_WORKER=$(cat "/proc/${PIDS[0]}/task/${PIDS[0]}/children" 2>/dev/null | awk '{print $1}')
  [ -n "$NGINX_WORKER" ] && break
  sleep 0.1
done
[ -n "$NGINX_WORKER" ] || { echo "nginx worker process not found" >&2; exit 1; }
echo "nginx on $URL (master ${PIDS[0]}, worker $NGINX_WORKER)"

# --- 1. closed loop, interleaved rounds (each preceded by a quiet-machine check) ---
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS"
  measured "closed-meshdrill-$r" "$BIN" load "$URL" -c "$CONNS" -d "${DUR}s" -o json
  measured "closed-wrk-$r" wrk -t1 -c"$CONNS" -d"${DUR}s" "$URL"
  measured "closed-oha-$r" "${OHA[@]}" -c "$CONNS" -z "${DUR}s" "$URL"
done

# --- 1b. peak RSS vs connections (closed loop, RSS_DUR s each) ---
for c in $RSS_CONNS; do
  echo "RSS at -c $c"
  timed "rssc-meshdrill-$c" "$BIN" load "$URL" -c "$c" -d "${RSS_DUR}s" -o json
  timed "rssc-wrk-$c" wrk -t1 -c"$c" -d"${RSS_DUR}s" "$URL"
  timed "rssc-oha-$c" "${OHA[@]}" -c "$c" -z "${RSS_DUR}s" "$URL"
done

# --- 1c. two local workers vs one (only if this meshdrill has --workers). Not pinned:
# the point is to use both CPUs, which nginx (pinned to CPU 1) also needs. ---
if "$BIN" load --help 2>/dev/null | grep -q -- '--workers'; then
  for r in $(seq "$WORKER_ROUNDS"); do
    echo "workers round $r/$WORKER_ROUNDS"
    unpinned "workers-1-$r" "$BIN" load "$URL" -c "$CONNS" -d "${DUR}s" -o json
    unpinned "workers-2-$r" "$BIN" load "$URL" --workers 2 -c "$CONNS" -d "${DUR}s" -o json
  done
else
  echo "meshdrill load has no --workers: skipping the 2-worker runs"
fi

# --- 2. peak RSS vs duration (closed loop) ---
echo "RSS runs (${DUR}s and ${RSS_LONG}s)"
timed rss-meshdrill-short "$BIN" load "$URL" -c "$CONNS" -d "${DUR}s" -o json
timed rss-meshdrill-long "$BIN" load "$URL" -c "$CONNS" -d "${RSS_LONG}s" -o json
timed rss-oha-short "${OHA[@]}" -c "$CONNS" -z "${DUR}s" "$URL"
timed rss-oha-long "${OHA[@]}" -c "$CONNS" -z "${RSS_LONG}s" "$URL"
timed rss-wrk-long wrk -t1 -c"$CONNS" -d"${RSS_LONG}s" "$URL"
if [ -n "$RSS_LONG_CONNS" ]; then
  echo "RSS runs at -c $RSS_LONG_CONNS for ${RSS_LONG}s"
  timed rss-meshdrill-longc "$BIN" load "$URL" -c "$RSS_LONG_CONNS" -d "${RSS_LONG}s" -o json
  timed rss-wrk-longc wrk -t1 -c"$RSS_LONG_CONNS" -d"${RSS_LONG}s" "$URL"
  timed rss-oha-longc "${OHA[@]}" -c "$RSS_LONG_CONNS" -z "${RSS_LONG}s" "$URL"
fi

# --- 3. fixed rate ---
echo "fixed rate ${RATE} req/s for ${RATE_DUR}s"
timed rate-meshdrill "$BIN" load "$URL" -c "$CONNS" --rate "$RATE" -d "${RATE_DUR}s" -o json
timed rate-oha "${OHA[@]}" -c "$CONNS" -q "$RATE" -z "${RATE_DUR}s" --latency-correction "$URL"

# --- 4. stall server: freezes every answer 1 s of each 5 s (from its first request) ---
stall_run() { # NAME CMD... (URL appended)
  local name=$1; shift
  taskset -c "$SRV_CPU" "$STALL" 5s 1s 2s $((STALL_DUR + 30)) > "$TMP/stall.addr" 2>/dev/null &
  local pid=$!
  PIDS+=($pid)
  for _ in $(seq 50); do [ -s "$TMP/stall.addr" ] && break; sleep 0.1; done
  local url="http://$(cat "$TMP/stall.addr")/"
  timed "$name" "$@" "$url"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  : > "$TMP/stall.addr"
}
echo "stall runs at ${STALL_RATE} req/s for ${STALL_DUR}s"
stall_run stall-meshdrill-open "$BIN" load -c "$CONNS" --rate "$STALL_RATE" -d "${STALL_DUR}s" -o json
stall_run stall-meshdrill-closed "$BIN" load -c "$CONNS" -d "${STALL_DUR}s" -o json
stall_run stall-oha-corrected "${OHA[@]}" -c "$CONNS" -q "$STALL_RATE" -z "${STALL_DUR}s" --latency-correction
stall_run stall-wrk-closed wrk -t1 -c"$CONNS" -d"${STALL_DUR}s" --latency

# --- report ---
python3 -B bench/report.py "$RAW" "$OUT" \
  "rounds=$ROUNDS dur=$DUR conns=$CONNS quiet_idle=$QUIET_IDLE rss_conns=${RSS_CONNS// /,} rss_dur=$RSS_DUR worker_rounds=$WORKER_ROUNDS rss_long=$RSS_LONG rss_long_conns=${RSS_LONG_CONNS:-none} rate=$RATE rate_dur=$RATE_DUR stall_rate=$STALL_RATE stall_dur=$STALL_DUR"
cat "$OUT"
