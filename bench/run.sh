#!/usr/bin/env bash
# make bench: `meshdrill load` side by side with wrk and oha on this machine.
# Loopback only. Generator pinned to CPU 0, server (nginx, 1 worker / stall server) to CPU 1.
# Writes bench/results.md (the tables) and keeps raw outputs in bench/raw/.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}          # interleaved closed-loop rounds per tool (median reported)
DUR=${DUR:-10}               # seconds per closed-loop round
CONNS=${CONNS:-50}
RSS_LONG=${RSS_LONG:-60}     # seconds of the long run for peak RSS
RATE=${RATE:-20000}          # fixed-rate test, req/s, for RATE_DUR seconds
RATE_DUR=${RATE_DUR:-10}
STALL_RATE=${STALL_RATE:-1000}
STALL_DUR=${STALL_DUR:-20}
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
have oha || cargo install oha --locked
cargo build --release --bin meshdrill --example stall_server
BIN=target/release/meshdrill
STALL=target/release/examples/stall_server

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
timed() { local name=$1; shift; /usr/bin/time -o "$RAW/$name.time" -f "%U %S %e %M" taskset -c "$GEN_CPU" "$@" > "$RAW/$name.out" 2> "$RAW/$name.err" || true; }

# oha's JSON flag changed across versions.
if oha --help 2>&1 | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); else OHA_JSON=(--json); fi
OHA=(oha --no-tui "${OHA_JSON[@]}")

# --- nginx: 1 worker on CPU 1, 12-byte body, keep-alive ---
PORT=$(free_port)
mkdir -p "$TMP/nginx"
cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
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
echo "nginx on $URL (pid ${PIDS[0]})"

# --- 1. closed loop, interleaved rounds ---
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS"
  timed "closed-meshdrill-$r" "$BIN" load "$URL" -c "$CONNS" -d "${DUR}s" -o json
  timed "closed-wrk-$r" wrk -t1 -c"$CONNS" -d"${DUR}s" "$URL"
  timed "closed-oha-$r" "${OHA[@]}" -c "$CONNS" -z "${DUR}s" "$URL"
done

# --- 2. peak RSS vs duration (closed loop) ---
echo "RSS runs (${DUR}s and ${RSS_LONG}s)"
timed rss-meshdrill-short "$BIN" load "$URL" -c "$CONNS" -d "${DUR}s" -o json
timed rss-meshdrill-long "$BIN" load "$URL" -c "$CONNS" -d "${RSS_LONG}s" -o json
timed rss-oha-short "${OHA[@]}" -c "$CONNS" -z "${DUR}s" "$URL"
timed rss-oha-long "${OHA[@]}" -c "$CONNS" -z "${RSS_LONG}s" "$URL"
timed rss-wrk-long wrk -t1 -c"$CONNS" -d"${RSS_LONG}s" "$URL"

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
  "rounds=$ROUNDS dur=$DUR conns=$CONNS rss_long=$RSS_LONG rate=$RATE rate_dur=$RATE_DUR stall_rate=$STALL_RATE stall_dur=$STALL_DUR"
cat "$OUT"
