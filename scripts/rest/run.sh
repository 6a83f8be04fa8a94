#!/usr/bin/env bash
# scripts/rest/run.sh BIN OUTDIR (needs wrk and curl with HTTP/2: apt-get install wrk curl).
# REST against the frame protocol on one server build, one run: sends over
# HTTP/1.1 keep-alive (wrk, closed loop), HTTP/2 (curl multiplexing) and over frames (natter bench dm at
# the rate HTTP reached), logins over HTTP (wrk) and over frames (natter
# bench connect). Server on core 1, load on core 0; a fresh server each.
set -uo pipefail
BIN=$1; OUT=$2; mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=17900; HTTP=17902
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
start() {
  W=$(mktemp -d /tmp/rb.XXXX)
  { echo "data_dir = \"$W/data\""; echo "[listen]"; echo "tcp = \"127.0.0.1:$PORT\""; echo 'ws = ""';
    echo "http = \"127.0.0.1:$HTTP\""; cat "$HERE/../bench-node.toml" | sed 's/^\[social\]/[social]\ndirect_messages = "anyone"/'; } > "$W/n.toml"
  taskset -c 1 "$BIN" serve --config "$W/n.toml" > "$W/out" 2>> "$W/err" & SERVER=$!
  for _ in $(seq 1 200); do grep -q "natter tcp=" "$W/out" 2>/dev/null && return; sleep 0.1; done
  echo "no start" >&2; cat "$W/err" >&2
}
stop() { kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null; rm -rf "$W"; }
users() {
  : > "$OUT/tokens"
  for i in $(seq 0 199); do
    curl -s -X POST "http://127.0.0.1:$HTTP/v1/register" -H 'content-type: application/json' \
      -d "{\"username\":\"user$i\",\"password\":\"correct horse\"}" > /dev/null
  done
  for i in $(seq 0 199); do
    t=$(curl -s -X POST "http://127.0.0.1:$HTTP/v1/login" -H 'content-type: application/json' \
      -d "{\"username\":\"user$i\",\"password\":\"correct horse\",\"device_id\":\"bench\"}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
    echo "$t $(( (i ^ 1) + 1 ))" >> "$OUT/tokens"
  done
}
tick=$(getconf CLK_TCK)
for round in 1 2; do
  # Sends over HTTP/1.1.
  start; users
  c0=$(cpu_ticks $SERVER)
  TOKENS="$OUT/tokens" taskset -c 0 wrk -t1 -c100 -d10s --latency -s "$HERE/send.lua" "http://127.0.0.1:$HTTP" > "$OUT/http-send-$round.txt"
  c1=$(cpu_ticks $SERVER)
  reqs=$(awk '/^Requests\/sec/ {print $2}' "$OUT/http-send-$round.txt")
  total=$(awk '/requests in/ {print $1}' "$OUT/http-send-$round.txt")
  echo "round $round http send: $reqs req/s, $(python3 -c "print(round(($c1-$c0)/$tick*1e6/$total,1))") us CPU/msg, $(awk '/ 99%/ {print $2}' "$OUT/http-send-$round.txt") p99" | tee -a "$OUT/summary"
  # Logins over HTTP/1.1 (the same users, each on its own device).
  c0=$(cpu_ticks $SERVER)
  USERS=200 taskset -c 0 wrk -t1 -c50 -d10s --latency -s "$HERE/login.lua" "http://127.0.0.1:$HTTP" > "$OUT/http-login-$round.txt"
  c1=$(cpu_ticks $SERVER)
  lreqs=$(awk '/^Requests\/sec/ {print $2}' "$OUT/http-login-$round.txt")
  ltotal=$(awk '/requests in/ {print $1}' "$OUT/http-login-$round.txt")
  echo "round $round http login: $lreqs req/s, $(python3 -c "print(round(($c1-$c0)/$tick*1e6/$ltotal,1))") us CPU/login, $(awk '/ 99%/ {print $2}' "$OUT/http-login-$round.txt") p99" | tee -a "$OUT/summary"
  # Sends and logins over HTTP/2 (h2c): curl multiplexing on one
  # connection, each request its own sender and client_msg_id (sends) or
  # user (logins); a config file per run, made by h2.py.
  for what in send login; do
    python3 "$HERE/h2.py" "$what" "$OUT/tokens" "$HTTP" "$round" > "$OUT/h2-$what.cfg"
    c0=$(cpu_ticks $SERVER); t0=$(date +%s.%N)
    taskset -c 0 curl -K "$OUT/h2-$what.cfg" > "$OUT/h2-$what-$round.txt" 2>> "$OUT/bench.err"
    t1=$(date +%s.%N); c1=$(cpu_ticks $SERVER)
    python3 "$HERE/h2.py" report "$OUT/h2-$what-$round.txt" "$t0" "$t1" "$c0" "$c1" "$tick" "round $round http/2 $what" | tee -a "$OUT/summary"
  done
  stop
  # Sends over frames at the rate HTTP reached (rounded down to 1000).
  rate=$(python3 -c "print(max(1000, int(float('$reqs')//1000*1000)))")
  start
  taskset -c 0 "$BIN" bench dm --server "127.0.0.1:$PORT" --server-pid "$SERVER" --clients 200 --rate "$rate" --duration 10 --json > "$OUT/frames-dm-$round.json" 2>> "$OUT/bench.err"
  python3 -c "
import json; d=json.load(open('$OUT/frames-dm-$round.json'))
print('round $round frames dm at $rate/s:', d['delivered_per_sec'], 'delivered/s,', d['server_cpu_us_per_msg'], 'us CPU/msg, p99', d['latency_ms']['p99'], 'ms, lost', d['lost'])" | tee -a "$OUT/summary"
  stop
  # Logins over frames.
  start
  taskset -c 0 "$BIN" bench connect --server "127.0.0.1:$PORT" --server-pid "$SERVER" --clients 5000 --duration 0 --json > "$OUT/frames-connect-$round.json" 2>> "$OUT/bench.err"
  python3 -c "
import json; d=json.load(open('$OUT/frames-connect-$round.json'))
print('round $round frames connect+login: 5000 in', d['connect_wall_ms'], 'ms =', round(5000/d['connect_wall_ms']*1000), '/s')" | tee -a "$OUT/summary"
  stop
done
