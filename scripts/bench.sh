#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md: builds release, starts a server on a fresh
# data directory, runs the standard scenarios and writes JSON results (and,
# with matplotlib available, the plots) under bench-results/.
#
#   scripts/bench.sh            # full run (19,000 connections, rate sweep)
#   QUICK=1 scripts/bench.sh    # small and fast, for a smoke test
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results}
PORT=${PORT:-17700}
QUICK=${QUICK:-}
mkdir -p "$OUT"
cargo build --release -q
BIN=target/release/natter
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# The server as configured for benchmarking (scripts/bench-node.toml says how).
{
  cat <<TOML
data_dir = "$WORK/data"
[listen]
tcp = "127.0.0.1:$PORT"
ws = ""
http = ""
TOML
  cat scripts/bench-node.toml
} > "$WORK/bench.toml"

start_server() {
  "$BIN" serve --config "$WORK/bench.toml" > "$WORK/server.out" 2>> "$WORK/server.err" &
  SERVER=$!
  for _ in $(seq 1 100); do grep -q "natter tcp=" "$WORK/server.out" 2>/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; cat "$WORK/server.err" >&2; exit 1
}
stop_server() { kill -TERM "$SERVER"; wait "$SERVER" || true; }
bench() { "$BIN" bench "$@" --server "127.0.0.1:$PORT" --server-pid "$SERVER" --tokens "$WORK/tokens.json" --json; }

if [ -n "$QUICK" ]; then CONNS="500 1000"; BIG=2000; RATES="1000 5000"; DUR=3; DM_CLIENTS=200
  GROUP=500; GROUP_RATES="20 50"
else CONNS="1000 5000 10000 19000"; BIG=19000; RATES="5000 10000 15000 20000 30000 50000"; DUR=10; DM_CLIENTS=2000
  GROUP=5000; GROUP_RATES="20 50 100"
fi

start_server
# Accounts and tokens for everything below, created once.
bench connect --clients "$BIG" --duration 0 --procs 3 --source-ips > /dev/null

: > "$OUT/connect.jsonl"
for n in $CONNS; do
  stop_server; start_server   # a fresh process, so RSS growth is the connections'
  bench connect --clients "$n" --duration 5 --procs 3 --source-ips | tee -a "$OUT/connect.jsonl"
done

stop_server; start_server
bench storm --clients "$BIG" --procs 3 --source-ips | tee "$OUT/storm.json"

# A fresh process for the message runs: the storm's connections may still be
# closing, and the server holds at most 19,000.
stop_server; start_server
: > "$OUT/dm.jsonl"
for r in $RATES; do
  bench dm --clients "$DM_CLIENTS" --rate "$r" --duration "$DUR" | tee -a "$OUT/dm.jsonl"
done

# One group of $GROUP members, 10 of them sending; each run makes a new group.
: > "$OUT/group.jsonl"
for r in $GROUP_RATES; do
  bench group --clients "$GROUP" --senders 10 --rate "$r" --duration "$DUR" | tee -a "$OUT/group.jsonl"
done
stop_server

if python3 -c "import matplotlib" 2>/dev/null; then
  python3 scripts/plot.py "$OUT"
else
  echo "matplotlib not installed (pip install matplotlib): skipping plots" >&2
fi
