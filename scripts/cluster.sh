#!/usr/bin/env bash
# Starts a local N-node cluster on one PostgreSQL and one Redis and keeps it
# in the foreground; Ctrl-C stops every node (by PID) and exits.
#
#   scripts/cluster.sh            # 3 nodes
#   scripts/cluster.sh 4          # 4 nodes
#   PG=postgres://postgres@127.0.0.1:5432/test REDIS=redis://127.0.0.1:6379 scripts/cluster.sh
#
# Node i listens on 127.0.0.1: tcp 7700+10i, ws 7701+10i, http 7780+10i,
# with its data directory (its node id, logs) under $WORK (default
# ./cluster-data). Every node uses the same database and the same Redis;
# the cluster's keys start with $NAME (default "natter").
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${REDIS:-redis://127.0.0.1:6379}
NAME=${NAME:-natter}
WORK=${WORK:-cluster-data}
cargo build --release -q
BIN=target/release/natter
mkdir -p "$WORK"
PIDS=()
stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT INT TERM
for i in $(seq 0 $((N - 1))); do
    mkdir -p "$WORK/n$i"
    NATTER_STORE__BACKEND=postgres NATTER_STORE__URL="$PG" \
    NATTER_CLUSTER__REDIS_URL="$REDIS" NATTER_CLUSTER__NAME="$NAME" \
    NATTER_CLUSTER__NODE_ID="n$i" \
        "$BIN" serve --data-dir "$WORK/n$i" \
        --tcp-addr "127.0.0.1:$((7700 + 10 * i))" \
        --ws-addr "127.0.0.1:$((7701 + 10 * i))" \
        --http-addr "127.0.0.1:$((7780 + 10 * i))" \
        >"$WORK/n$i/log" 2>&1 &
    PIDS+=($!)
    echo "node n$i: pid $! tcp 127.0.0.1:$((7700 + 10 * i)) http 127.0.0.1:$((7780 + 10 * i)) log $WORK/n$i/log"
done
sleep 2
NATTER_CLUSTER__NAME="$NAME" "$BIN" cluster status --redis "$REDIS" || true
echo "assignment: curl http://127.0.0.1:7780/v1/cluster/assign ; Ctrl-C stops the cluster"
wait
