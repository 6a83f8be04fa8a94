#!/usr/bin/env bash
# A/B of two natter binaries, alternated A B A B, each on a fresh data
# directory: idle RSS per connection at 19,000, dm 200 clients at 10,000 msg/s,
# one group of 1,000 at 20 msg/s. Server on core 1, generator on core 0.
# Usage: scripts/ab.sh BIN_A BIN_B OUTDIR   (JSON reports land in OUTDIR)
set -uo pipefail
A=$1; B=$2; OUT=$3; mkdir -p "$OUT"
PORT=17800
run_variant() {
  local name=$1 bin=$2 round=$3
  local W; W=$(mktemp -d /tmp/ab.XXXX)
  { echo "data_dir = \"$W/data\""; echo "[listen]"; echo "tcp = \"127.0.0.1:$PORT\""; echo 'ws = ""'; echo 'http = ""';
    cat "$(dirname "$0")/bench-node.toml"; } > "$W/bench.toml"
  start() { taskset -c 1 "$bin" serve --config "$W/bench.toml" > "$W/out" 2>> "$W/err" & SERVER=$!
    for _ in $(seq 1 200); do grep -q "natter tcp=" "$W/out" 2>/dev/null && return; sleep 0.1; done; echo "no start $name" >&2; cat "$W/err" >&2; }
  stop() { kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null; }
  b() { taskset -c 0 "$bin" bench "$@" --server "127.0.0.1:$PORT" --server-pid "$SERVER" --tokens "$W/tokens.json" --json; }
  start; b connect --clients 19000 --duration 0 --procs 3 --source-ips > /dev/null 2>"$W/setup.err"; stop
  start; b connect --clients 19000 --duration 5 --procs 3 --source-ips > "$OUT/$name-$round-idle.json" 2>>"$W/bench.err"; stop
  start; b dm --clients 200 --rate 10000 --duration 10 > "$OUT/$name-$round-dm.json" 2>>"$W/bench.err"; stop
  start; b group --clients 1000 --senders 10 --rate 20 --duration 10 > "$OUT/$name-$round-group.json" 2>>"$W/bench.err"; stop
  rm -rf "$W"
}
for round in 1 2; do
  run_variant a "$A" $round
  run_variant b "$B" $round
done
