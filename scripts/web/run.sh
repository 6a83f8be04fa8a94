#!/usr/bin/env bash
# scripts/web/run.sh BIN OUTDIR
# The browser pages' numbers, one run: the web client's (/) and the admin
# console's (/admin) first load in Chromium (bytes, requests, ms; medians of
# 5 fresh profiles), and the dashboard's cost on the server: CPU per message
# under `natter bench dm` at a fixed rate with no dashboard open and with 10
# open (each a live SSE stream), alternated none/ten/none/ten. Server on
# core 1, load and browsers on core 0. Needs node, /usr/bin/chromium and
# `npm ci --prefix tests/browser`.
set -uo pipefail
BIN=$(realpath "$1"); OUT=$2
mkdir -p "$OUT"
HERE=$(dirname "$0")
PORT=17950; HTTP=17952
RATE=${RATE:-4000}; SECS=${SECS:-20}
W=$(mktemp -d /tmp/wb.XXXX)
export NATTER_THROTTLE__LOGIN_BURST_PER_ADDRESS=100000 NATTER_THROTTLE__REGISTER_BURST_PER_ADDRESS=100000
export NATTER_THROTTLE__FAILED_LOGIN_BURST_PER_ADDRESS=100000 NATTER_LIMITS__MAX_UNAUTHENTICATED_PER_ADDRESS=100000
export NATTER_SOCIAL__DIRECT_MESSAGES=anyone NATTER_LOG__LEVEL=warn
NATTER_ADMIN_PASSWORD=bench-password-1 "$BIN" admin create-admin --name bench --data-dir "$W" > /dev/null
taskset -c 1 "$BIN" serve --data-dir "$W" --tcp-addr 127.0.0.1:$PORT --ws-addr "" \
  --http-addr 127.0.0.1:$HTTP > "$W/out" 2>> "$OUT/server.err" & SERVER=$!
DASH=()
cleanup() { kill "${DASH[@]}" 2>/dev/null; kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
for _ in $(seq 1 200); do grep -q "natter http=" "$W/out" 2>/dev/null && break; sleep 0.1; done

echo "== first load" | tee "$OUT/firstload.txt"
for page in / /admin; do
  taskset -c 0 node "$HERE/firstload.mjs" "http://127.0.0.1:$HTTP$page" 5 | tee -a "$OUT/firstload.txt"
done

curl -s -c "$W/cookies" -X POST "http://127.0.0.1:$HTTP/admin/api/login" -H 'content-type: application/json' \
  -d '{"name":"bench","password":"bench-password-1"}' > /dev/null
# The bench's accounts, made once before the timed runs.
taskset -c 0 "$BIN" bench dm --server 127.0.0.1:$PORT --clients 200 --rate 100 --duration 2 > /dev/null

echo "== dashboard cost: bench dm, 200 clients, $RATE msg/s, ${SECS}s each" | tee "$OUT/dashboard.txt"
for round in 1 2; do
  for open in 0 10; do
    DASH=()
    for _ in $(seq 1 $open); do
      taskset -c 0 curl -s -N -b "$W/cookies" "http://127.0.0.1:$HTTP/admin/api/dashboard" > /dev/null & DASH+=($!)
    done
    sleep 2
    taskset -c 0 "$BIN" bench dm --server 127.0.0.1:$PORT --clients 200 --rate "$RATE" \
      --duration "$SECS" --server-pid $SERVER --json > "$OUT/dm-$open-$round.json"
    [ ${#DASH[@]} -gt 0 ] && kill "${DASH[@]}" 2>/dev/null
    python3 - "$OUT/dm-$open-$round.json" "$open" "$round" <<'PY' | tee -a "$OUT/dashboard.txt"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"round {sys.argv[3]}, {int(sys.argv[2]):>2} dashboards: "
      f"{r['delivered_per_sec']:.0f} msg/s, server CPU {r['server_cpu_us_per_msg']:.1f} us/msg "
      f"({r['server_cpu_percent']:.1f} %), p99 {r['latency_ms']['p99']:.2f} ms")
PY
  done
done
