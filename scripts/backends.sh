#!/usr/bin/env bash
# The three stores side by side in one run (docs/BENCHMARKS.md, "SQLite,
# PostgreSQL and MariaDB in one run"): for each backend a fresh server (the
# release binary, pinned to core 0; the generator on core 1; the database
# servers unpinned), `natter bench dm` at an offered rate and
# `natter bench group`, printing one JSON line per run, tagged.
#
#   BIN=target/release/natter scripts/backends.sh [rate] [rounds]
#
# Needs PostgreSQL on postgres://postgres@127.0.0.1:5432 and MariaDB (or
# MySQL) on mysql://root@127.0.0.1:3306; each run gets a database of its
# own, dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/natter}
RATE=${1:-10000}
ROUNDS=${2:-1}
PORT=${PORT:-17800}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
MY=${MY:-mysql://root@127.0.0.1:3306}
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

start() { # backend
  local backend=$1 db="natter_bench_$$_$RANDOM"
  rm -rf "$WORK/data"; mkdir -p "$WORK/data"
  { cat <<TOML
data_dir = "$WORK/data"
[listen]
tcp = "127.0.0.1:$PORT"
ws = ""
http = ""
TOML
    cat scripts/bench-node.toml
    echo "[store]"
    echo "backend = \"$backend\""
    case $backend in
      postgres) psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
                echo "url = \"$PG/$db\"" ;;
      mysql) mysql -h 127.0.0.1 -uroot -e "CREATE DATABASE $db CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
             echo "url = \"$MY/$db\"" ;;
    esac
  } > "$WORK/node.toml"
  DB=$db
  taskset -c 0 "$BIN" serve --config "$WORK/node.toml" > "$WORK/out" 2> "$WORK/err" &
  SERVER=$!
  for _ in $(seq 1 100); do grep -q "natter tcp=" "$WORK/out" 2>/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; cat "$WORK/err" >&2; exit 1
}

stop() { # backend
  kill -TERM "$SERVER"; wait "$SERVER" || true
  case $1 in
    postgres) psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null ;;
    mysql) mysql -h 127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB" ;;
  esac
}

bench() { # backend, args...
  local backend=$1; shift
  taskset -c 1 "$BIN" bench "$@" --server "127.0.0.1:$PORT" --server-pid "$SERVER" \
    --tokens "$WORK/tokens.json" --json | sed "s/^{/{\"backend\":\"$backend\",/"
}

for round in $(seq 1 "$ROUNDS"); do
  for backend in sqlite postgres mysql; do
    start "$backend"
    rm -f "$WORK/tokens.json"
    bench "$backend" dm --clients 200 --rate "$RATE" --duration 10
    rm -f "$WORK/tokens.json"
    bench "$backend" group --clients 1000 --senders 10 --rate 100 --duration 10
    stop "$backend"
  done
done
