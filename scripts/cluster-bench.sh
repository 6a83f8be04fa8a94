#!/usr/bin/env bash
# The cluster figures of docs/BENCHMARKS.md ("The cluster"): one node and
# several in the same run, on one PostgreSQL database made for the run and
# one Redis (keys under a name of the run's own). Writes JSON lines under
# bench-results/cluster/.
#
#   scripts/cluster-bench.sh              # dm and group, 1 node vs 2, kill -9 under load, 4 × 19,000 connections
#   QUICK=1 scripts/cluster-bench.sh      # small and fast
#   PG=postgres://postgres@127.0.0.1:5432/test REDIS=redis://127.0.0.1:6379 scripts/cluster-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${REDIS:-redis://127.0.0.1:6379}
OUT=${OUT:-bench-results/cluster}
QUICK=${QUICK:-}
mkdir -p "$OUT"
if [ -z "${BIN:-}" ]; then cargo build --release -q; BIN=target/release/natter; fi
WORK=$(mktemp -d)
RUN=cb$$
DB="natter_$RUN"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  psql "$PG" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql "$PG" -qc "CREATE DATABASE $DB" >/dev/null
URL="${PG%/*}/$DB"

{ cat scripts/bench-node.toml; printf '[store]\nbackend = "postgres"\n'; } > "$WORK/node.toml"

# start_nodes N [cluster|single]: node i on 127.0.0.1:(17700 + 10 i), http + 80.
start_nodes() {
  local n=$1 mode=$2
  PIDS=(); TCPS=""
  for i in $(seq 0 $((n - 1))); do
    local tcp="127.0.0.1:$((17700 + 10 * i))" http="127.0.0.1:$((17780 + 10 * i))"
    mkdir -p "$WORK/n$i"
    if [ "$mode" = cluster ]; then
      export NATTER_CLUSTER__REDIS_URL="$REDIS" NATTER_CLUSTER__NAME="$RUN" NATTER_CLUSTER__NODE_ID="n$i"
    else
      unset NATTER_CLUSTER__REDIS_URL NATTER_CLUSTER__NAME NATTER_CLUSTER__NODE_ID
    fi
    NATTER_STORE__URL="$URL" "$BIN" serve --config "$WORK/node.toml" --data-dir "$WORK/n$i" \
      --tcp-addr "$tcp" --ws-addr "" --http-addr "$http" > "$WORK/n$i.out" 2> "$WORK/n$i.err" &
    PIDS+=($!)
    TCPS="${TCPS:+$TCPS,}$tcp"
  done
  for i in $(seq 0 $((n - 1))); do
    for _ in $(seq 1 100); do grep -q "natter http=" "$WORK/n$i.out" 2>/dev/null && break; sleep 0.1; done
    grep -q "natter http=" "$WORK/n$i.out" || { echo "node n$i did not start:" >&2; cat "$WORK/n$i.err" >&2; exit 1; }
  done
  sleep 2   # every node has reported
  SERVER_PIDS=$(IFS=,; echo "${PIDS[*]}")
}
stop_nodes() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
# metric NAME: the sum over the running nodes.
metric() {
  local sum=0
  for i in $(seq 0 $((${#PIDS[@]} - 1))); do
    v=$(curl -s "http://127.0.0.1:$((17780 + 10 * i))/metrics" | awk -v m="$1" '$1 == m {print $2}')
    sum=$(python3 -c "print($sum + ${v:-0})")
  done
  echo "$sum"
}
bench() { "$BIN" bench "$@" --server "$TCPS" --server-pid "$SERVER_PIDS" --tokens "$WORK/tokens.json" --json; }

if [ -n "$QUICK" ]; then RATES="2000"; DUR=3; GROUP=200; CONN=2000; CONN_PROCS=2
  KILL_CLIENTS=${KILL_CLIENTS:-600}; KILL_RATE=${KILL_RATE:-1000}; KILL_DUR=${KILL_DUR:-6}
else RATES="5000 10000 20000"; DUR=10; GROUP=1000; CONN=76000; CONN_PROCS=8
  KILL_CLIENTS=${KILL_CLIENTS:-12000}; KILL_RATE=${KILL_RATE:-5000}; KILL_DUR=${KILL_DUR:-20}
fi

# ONLY=kill runs only the kill -9 part; ONLY=connect only the connections.
if [ -z "${ONLY:-}" ] || [ "$ONLY" = kill ]; then
# Three nodes, clients placed by assignment, node n2 killed (-9) a third of
# the way into sending. Its clients reconnect through assignment and sync;
# the audit spans the reconnect (lost, shown twice, out of order), and the
# report says how long until every client was back.
start_nodes 3 cluster
ASSIGN="http://127.0.0.1:17780,http://127.0.0.1:17790,http://127.0.0.1:17800"
"$BIN" bench dm --clients "$KILL_CLIENTS" --rate "$KILL_RATE" --duration "$KILL_DUR" \
  --assign "$ASSIGN" --procs 2 --source-ips --connect-concurrency 32 \
  --tokens "$WORK/tokens.json" --json > "$OUT/kill.json" &
BENCH=$!
for _ in $(seq 1 600); do
  held=$(NATTER_CLUSTER__NAME="$RUN" "$BIN" cluster status --redis "$REDIS" --json \
    | python3 -c "import json,sys; print(sum(n['connections'] for n in json.load(sys.stdin)))")
  [ "$held" -ge "$KILL_CLIENTS" ] && break
  kill -0 "$BENCH" 2>/dev/null || { wait "$BENCH"; exit 1; }
  sleep 0.5
done
sleep $((KILL_DUR / 3))
NATTER_CLUSTER__NAME="$RUN" "$BIN" cluster status --redis "$REDIS" > "$OUT/kill-before.txt"
kill -KILL "${PIDS[2]}"
killed=$(date +%s.%N)
until NATTER_CLUSTER__NAME="$RUN" "$BIN" cluster status --redis "$REDIS" --json \
  | python3 -c "import json,sys; sys.exit(0 if all(n['state'] != 'up' for n in json.load(sys.stdin) if n['node_id'] == 'n2') else 1)"; do
  sleep 0.1
done
dead=$(python3 -c "print(round($(date +%s.%N) - $killed, 2))")
wait "$BENCH"
echo "{\"declared_dead_after_s\": $dead, \"report\": $(cat "$OUT/kill.json")}" | tee "$OUT/kill.jsonl"
stop_nodes
fi

if [ -z "${ONLY:-}" ]; then
: > "$OUT/dm.jsonl"
for rate in $RATES; do
  for shape in "1 single" "1 cluster" "2 cluster"; do
    set -- $shape
    start_nodes "$1" "$2"
    p0=$(metric natter_bus_publishes_total); b0=$(metric natter_bus_published_bytes_total)
    r=$(bench dm --clients 200 --rate "$rate" --duration "$DUR")
    p1=$(metric natter_bus_publishes_total); b1=$(metric natter_bus_published_bytes_total)
    echo "{\"nodes\": $1, \"mode\": \"$2\", \"publishes\": $(python3 -c "print($p1 - $p0)"), \"bytes\": $(python3 -c "print($b1 - $b0)"), \"report\": $r}" | tee -a "$OUT/dm.jsonl"
    stop_nodes
  done
done

: > "$OUT/group.jsonl"
for shape in "1 cluster" "2 cluster"; do
  set -- $shape
  start_nodes "$1" "$2"
  r=$(bench group --clients "$GROUP" --senders 10 --rate 100 --duration "$DUR")
  echo "{\"nodes\": $1, \"mode\": \"$2\", \"report\": $r}" | tee -a "$OUT/group.jsonl"
  stop_nodes
done

fi

if [ -z "${ONLY:-}" ] || [ "$ONLY" = connect ]; then
# Idle connections over four nodes, several generator processes and source
# addresses. Resumes read the session from the database: a few at a time
# per generator process keep the pool from refusing them as busy.
start_nodes 4 cluster
bench connect --clients "$CONN" --duration 20 --procs "$CONN_PROCS" --source-ips \
  --connect-concurrency "${CONN_CONCURRENCY:-32}" > "$OUT/connect.json" &
BENCH=$!
# The node table while they are held (the last 20 s of the run).
for _ in $(seq 1 600); do
  NATTER_CLUSTER__NAME="$RUN" "$BIN" cluster status --redis "$REDIS" --json > "$OUT/status.json"
  held=$(python3 -c "import json; print(sum(n['connections'] for n in json.load(open('$OUT/status.json'))))")
  [ "$held" -ge "$CONN" ] && break
  kill -0 "$BENCH" 2>/dev/null || break
  sleep 1
done
sleep 3
NATTER_CLUSTER__NAME="$RUN" "$BIN" cluster status --redis "$REDIS" | tee "$OUT/status.txt"
wait "$BENCH"; cat "$OUT/connect.json"
stop_nodes
fi
