#!/usr/bin/env bash
# Starts a local N-node cluster on one PostgreSQL and one Redis and keeps it
# in the foreground; Ctrl-C stops every node (by PID) and exits.
#
#   scripts/cluster.sh            # 3 nodes
#   scripts/cluster.sh 4          # 4 nodes
#   PG=postgres://postgres@127.0.0.1:5432/test REDIS=redis://127.0.0.1:6379 scripts/cluster.sh
#   NATTER_BIN=/usr/local/bin/natter NATTER_PORT_BASE=9000 scripts/cluster.sh
#
# The binary is $NATTER_BIN if set (nothing is built), else a release build
# made here (`cargo build --release`, into $CARGO_TARGET_DIR if set). Node i
# listens on 127.0.0.1: tcp B+10i, ws B+1+10i, http B+80+10i, where B is
# $NATTER_PORT_BASE (default 7700: 7700/7701/7780, 7710/7711/7790, ...),
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
BASE=${NATTER_PORT_BASE:-7700}
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
    echo "cluster.sh: the node count must be a positive number, not '$N'" >&2
    exit 2
fi
if ! [[ "$BASE" =~ ^[1-9][0-9]{0,4}$ ]]; then
    echo "cluster.sh: NATTER_PORT_BASE must be a port number, not '$BASE'" >&2
    exit 2
fi
# Every port of the last node must exist: B + 80 + 10(N-1) <= 65535.
if ((BASE + 80 + 10 * (N - 1) > 65535)); then
    echo "cluster.sh: NATTER_PORT_BASE='$BASE' leaves no room for $N nodes (needs up to $BASE + $((80 + 10 * (N - 1))) <= 65535)" >&2
    exit 2
fi
if [[ -n "${NATTER_BIN:-}" ]]; then
    BIN=$NATTER_BIN
    if ! [[ -x "$BIN" ]]; then
        echo "cluster.sh: NATTER_BIN='$BIN' is not an executable file" >&2
        exit 2
    fi
else
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-target}/release/natter
fi
mkdir -p "$WORK"
PIDS=()
stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT INT TERM
for i in $(seq 0 $((N - 1))); do
    tcp=$((BASE + 10 * i)) ws=$((BASE + 1 + 10 * i)) http=$((BASE + 80 + 10 * i))
    mkdir -p "$WORK/n$i"
    NATTER_STORE__BACKEND=postgres NATTER_STORE__URL="$PG" \
    NATTER_CLUSTER__REDIS_URL="$REDIS" NATTER_CLUSTER__NAME="$NAME" \
    NATTER_CLUSTER__NODE_ID="n$i" \
        "$BIN" serve --data-dir "$WORK/n$i" \
        --tcp-addr "127.0.0.1:$tcp" \
        --ws-addr "127.0.0.1:$ws" \
        --http-addr "127.0.0.1:$http" \
        >"$WORK/n$i/log" 2>&1 &
    PIDS+=($!)
    echo "node n$i: pid $! tcp 127.0.0.1:$tcp ws 127.0.0.1:$ws http 127.0.0.1:$http log $WORK/n$i/log"
done
sleep 2
NATTER_CLUSTER__NAME="$NAME" "$BIN" cluster status --redis "$REDIS" || true
echo "assignment: curl http://127.0.0.1:$((BASE + 80))/v1/cluster/assign ; Ctrl-C stops the cluster"
wait
