#!/usr/bin/env bash
# The TLS figures of docs/BENCHMARKS.md, all in one run against one server
# process: a reconnect storm with full handshakes, the same storm resumed
# (each client warmed with one TLS connection of its own before the start),
# and 1:1 delivery over TLS against plain TCP (same command, another URL).
#
#   scripts/bench-tls.sh                 # 19,000-client storms, dm at 5,000 msg/s
#   CLIENTS=6000 scripts/bench-tls.sh    # smaller storms
#   SHED_LAG_MS=30000 scripts/bench-tls.sh   # the node does not shed on event-loop lag
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results}
PORT=${PORT:-17700}
CLIENTS=${CLIENTS:-19000}
RATE=${RATE:-5000}
DUR=${DUR:-10}
DM_CLIENTS=${DM_CLIENTS:-2000}
mkdir -p "$OUT"
BIN=${BIN:-target/release/natter}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# A private CA and a leaf for 127.0.0.1 (ECDSA P-256).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2> /dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/leaf.csr" 2> /dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 30 -extfile "$WORK/ext" -out "$WORK/chain.pem" 2> /dev/null

{
  cat <<TOML
data_dir = "$WORK/data"
[listen]
tcp = "127.0.0.1:$PORT"
tcp_tls = "127.0.0.1:$((PORT + 1))"
ws = ""
http = "127.0.0.1:$((PORT + 2))"
[tls]
cert = "$WORK/chain.pem"
key = "$WORK/key.pem"
session_cache = 20000
TOML
  cat scripts/bench-node.toml
  if [ -n "${SHED_LAG_MS:-}" ]; then
    printf '[overload]\nshed_lag_ms = %s\nessential_lag_ms = %s\n' "$SHED_LAG_MS" "$((SHED_LAG_MS * 2))"
  fi
} > "$WORK/bench.toml"

"$BIN" serve --config "$WORK/bench.toml" > "$WORK/server.out" 2>> "$WORK/server.err" &
SERVER=$!
for _ in $(seq 1 100); do grep -q "natter tcp_tls=" "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
PLAIN="127.0.0.1:$PORT"
TLS="tls://127.0.0.1:$((PORT + 1))"
handshakes() {
  curl -s "127.0.0.1:$((PORT + 2))/metrics" | grep '^natter_tls_handshakes_total' || true
}
bench() { "$BIN" bench "$@" --ca "$WORK/ca.pem" --server-pid "$SERVER" --tokens "$WORK/tokens.json" --json; }

# Accounts and tokens for everything below, created once.
bench connect --server "$PLAIN" --clients "$CLIENTS" --duration 0 --procs 3 --source-ips > /dev/null

echo "== storm, full handshakes"
handshakes
bench storm --server "$TLS" --clients "$CLIENTS" --procs 3 --source-ips | tee "$OUT/tls-storm-full.json"
handshakes
sleep 5   # the storm's connections close
echo "== storm, resumed handshakes"
bench storm --server "$TLS" --tls-resume --clients "$CLIENTS" --procs 3 --source-ips | tee "$OUT/tls-storm-resumed.json"
handshakes
sleep 5

echo "== dm, plain then TLS"
bench dm --server "$PLAIN" --clients "$DM_CLIENTS" --rate "$RATE" --duration "$DUR" | tee "$OUT/tls-dm-plain.json"
bench dm --server "$TLS" --clients "$DM_CLIENTS" --rate "$RATE" --duration "$DUR" | tee "$OUT/tls-dm-tls.json"
handshakes
kill -TERM "$SERVER"; wait "$SERVER" || true
