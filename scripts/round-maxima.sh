#!/usr/bin/env bash
# One run of peerbench's 1:1 load at 10,000 msg/s for 25 s, reading the
# SQLite writer's round and queue-wait maxima from /metrics every 5 s (the
# exporter's summaries cover the last few seconds only), beside the
# clients' tail: whether a slow round is what the clients' max is made of.
# Server on core 1, generator on core 0, a fresh server per run. Needs
# ../shared/peerbench built (CARGO_TARGET_DIR=/tmp/peerbench-target cargo
# build --release there).
# Usage: scripts/round-maxima.sh LABEL BIN
set -uo pipefail
L=$1; BIN=$(realpath "$2")
cd "$(realpath "$(dirname "$0")/../../shared/peerbench")"
PB=/tmp/peerbench-target/release/peerbench
PB_NATTER_BIN=$BIN scripts/peer.sh start natter 1 >/dev/null
taskset -c 0 $PB register --proto natter --addr 127.0.0.1:17700 --count 200 >/dev/null 2>&1
P=$(scripts/peer.sh pids natter | head -1)
OUT=$(mktemp)
taskset -c 0 $PB dm --proto natter --addr 127.0.0.1:17700 --peer L --server-pid "$P" --rates 10000 \
  --warmup 3 --duration 25 --retries 0 --p99-limit-ms 2000 > "$OUT" 2>&1 &
D=$!
max_ms() { grep -E "^$1\{quantile=\"1\"" | awk '{printf "%.1f", $2 * 1000}'; }
seen=""
for _ in 1 2 3 4 5; do
  sleep 5
  M=$(curl -s 127.0.0.1:17780/metrics)
  seen="$seen round $(echo "$M" | max_ms natter_store_commit_seconds)/wait $(echo "$M" | max_ms natter_store_wait_seconds)"
done
wait $D
scripts/peer.sh stop natter >/dev/null
echo "$L maxima (ms):$seen"
awk -v l="$L" '$5 ~ /^[0-9]+$/ {print l, "clients: p50", $8, "p99", $9, "p999", $10, "max", $11, "us/msg", $16}' "$OUT"
rm -f "$OUT"
