#!/usr/bin/env bash
# One run of peerbench's 1:1 load (200 clients, each message to a uniformly
# random other client, so ~40,000 conversations) at one rate against a fresh
# natter, with each server thread's CPU per message beside the clients'
# figures: which part of the server a change moved, under machine drift
# that moves the whole-process figure by 15 % or more.
# Server on core 1, generator on core 0. Needs ../shared/peerbench built
# (CARGO_TARGET_DIR=/tmp/peerbench-target cargo build --release there).
# Usage: scripts/pb-one.sh BIN RATE LABEL
#   WARMUP (5) and DUR (20): seconds of sending before and in the window;
#   the copy thread starts after 10 s, so WARMUP=40 measures it steady.
#   EXTRA: lines appended to peerbench's natter.toml (e.g. "[store]\ncommit_delay_us = 600").
#   MET=FILE: /metrics at the end. PERF='cmd': run after PERF_AT (12) s, with $SERVER set.
set -uo pipefail
BIN=$(realpath "$1"); RATE=$2; LABEL=$3
PBDIR=$(realpath "$(dirname "$0")/../../shared/peerbench")
PB=/tmp/peerbench-target/release/peerbench
W=$(mktemp -d /tmp/pb-one.XXXX); mkdir -p "$W/data"
cp "$PBDIR/configs/natter.toml" "$W/natter.toml"
[ -n "${EXTRA:-}" ] && printf "%b\n" "$EXTRA" >> "$W/natter.toml"
unset_env=(); for v in $(compgen -e | grep '^NATTER_' || true); do unset_env+=(-u "$v"); done
taskset -c 1 env "${unset_env[@]}" "$BIN" serve --config "$W/natter.toml" --data-dir "$W/data" \
  --tcp-addr 127.0.0.1:17700 --ws-addr "" --http-addr 127.0.0.1:17780 > "$W/out" 2> "$W/err" &
SERVER=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/17700) 2>/dev/null && break; sleep 0.1; done
taskset -c 0 $PB register --proto natter --addr 127.0.0.1:17700 --count 200 > /dev/null 2>&1
if [ -n "${PERF:-}" ]; then ( sleep "${PERF_AT:-12}"; eval "$PERF" ) & fi
taskset -c 0 $PB dm --proto natter --addr 127.0.0.1:17700 --server-pid $SERVER --threads 1 \
  --warmup "${WARMUP:-5}" --duration "${DUR:-20}" --rate "$RATE" --json "$W/r.jsonl" > "$W/stdout" 2>&1
NMSG=$(( (${WARMUP:-5} + ${DUR:-20}) * RATE ))
RSS=$(awk '/VmRSS/{print $2}' /proc/$SERVER/status)
# utime + stime in ticks of 10 ms, summed by thread name, over every message sent.
THREADS=$(for t in /proc/$SERVER/task/*; do echo "$(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done |
  awk -v n="$NMSG" '{a[$1]+=$2} END {for (k in a) if (a[k]>0) printf "%s=%.1f ", k, a[k]*10000/n}')
[ -n "${MET:-}" ] && curl -s http://127.0.0.1:17780/metrics > "$MET"
kill -TERM $SERVER; while kill -0 $SERVER 2>/dev/null; do sleep 0.1; done
python3 - "$W/r.jsonl" "$LABEL" "$RATE" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    lat = j.get("latency", {})
    print(f"{sys.argv[2]} {sys.argv[3]} msg/s: window CPU {j.get('server_cpu_us_per_msg', -1):.1f} us/msg,"
          f" p50 {lat.get('p50_us', -1) / 1000:.2f} ms, p99 {lat.get('p99_us', -1) / 1000:.2f} ms,"
          f" max {lat.get('max_us', -1) / 1000:.1f} ms, loss {j.get('loss_frac')}")
PY
echo "  per thread, us per message sent (whole run): $THREADS rss ${RSS} KiB"
rm -rf "$W"
