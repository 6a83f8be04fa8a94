#!/usr/bin/env bash
# scripts/files/run.sh BIN OUTDIR [S3_ENDPOINT]
# Files on each storage, one run: a 1 GiB upload (one tus PATCH, curl -T)
# and its download, in MiB/s; then the server's RSS while 100 uploads of
# 64 MiB run at once, each paced at 4 MiB/s (no whole-file buffering: RSS
# stays flat). Local disk always; S3 when an endpoint is given (its bucket
# `natter-bench` is made). Server on core 1, curl on core 0.
set -uo pipefail
BIN=$1; OUT=$2; S3=${3:-}
mkdir -p "$OUT"
PORT=17910; HTTP=17912
MIB=$((1024 * 1024))
rss_kib() { awk '/^VmRSS/ {print $2}' /proc/$1/status; }

start() { # storage
  W=$(mktemp -d /tmp/fb.XXXX)
  {
    echo "data_dir = \"$W/data\""
    echo "[listen]"; echo "tcp = \"127.0.0.1:$PORT\""; echo 'ws = ""'; echo "http = \"127.0.0.1:$HTTP\""
    echo "[password]"; echo "argon2_memory_kib = 1024"; echo "argon2_iterations = 1"
    echo "[files]"; echo "storage = \"$1\""; echo "quota_bytes_per_user = 1099511627776"
    echo "max_open_uploads_per_user = 200"
    if [ "$1" = s3 ]; then
      echo "[files.s3]"; echo "endpoint = \"$S3\""; echo 'bucket = "natter-bench"'
      echo 'access_key_id = "bench"'; echo 'secret_access_key = "bench"'
    fi
  } > "$W/n.toml"
  taskset -c 1 "$BIN" serve --config "$W/n.toml" > "$W/out" 2>> "$W/err" & SERVER=$!
  for _ in $(seq 1 200); do grep -q "natter tcp=" "$W/out" 2>/dev/null && break; sleep 0.1; done
  curl -s -X POST "http://127.0.0.1:$HTTP/v1/register" -H 'content-type: application/json' \
    -d '{"username":"bench","password":"correct horse"}' > /dev/null
  TOKEN=$(curl -s -X POST "http://127.0.0.1:$HTTP/v1/login" -H 'content-type: application/json' \
    -d '{"username":"bench","password":"correct horse","device_id":"bench"}' |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
}
stop() { kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null; rm -rf "$W"; }

create() { # length -> upload path
  curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$HTTP/v1/files/" \
    -H "authorization: Bearer $TOKEN" -H 'tus-resumable: 1.0.0' -H "upload-length: $1" |
    awk 'tolower($1)=="location:" {print $2}' | tr -d '\r'
}
patch() { # path file [extra curl args]
  local at=$1 file=$2; shift 2
  taskset -c 0 curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X PATCH -T "$file" "$@" \
    "http://127.0.0.1:$HTTP$at" -H "authorization: Bearer $TOKEN" -H 'tus-resumable: 1.0.0' \
    -H 'upload-offset: 0' -H 'content-type: application/offset+octet-stream'
}

head -c $((1024 * MIB)) /dev/urandom > "$OUT/1g.bin"
head -c $((64 * MIB)) /dev/urandom > "$OUT/64m.bin"
storages="local"; [ -n "$S3" ] && { curl -s -X PUT "$S3/natter-bench" > /dev/null; storages="local s3"; }
for round in 1 2; do
  for storage in $storages; do
    start "$storage"
    at=$(create $((1024 * MIB)))
    read -r code secs < <(patch "$at" "$OUT/1g.bin")
    up=$(python3 -c "print(round(1024/$secs))")
    read -r dcode dsecs < <(taskset -c 0 curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
      "http://127.0.0.1:$HTTP$at" -H "authorization: Bearer $TOKEN")
    down=$(python3 -c "print(round(1024/$dsecs))")
    echo "round $round $storage 1 GiB: upload $up MiB/s ($code, ${secs}s), download $down MiB/s ($dcode, ${dsecs}s)" | tee -a "$OUT/summary"
    # 100 uploads at once, 4 MiB/s each: RSS before, and its peak.
    base=$(rss_kib $SERVER); peak=$base
    pids=()
    for i in $(seq 1 100); do
      a=$(create $((64 * MIB)))
      patch "$a" "$OUT/64m.bin" --limit-rate 4M >> "$OUT/many-$storage-$round.txt" & pids+=($!)
    done
    running() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
    while running; do
      r=$(rss_kib $SERVER); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.5
    done
    ok=$(grep -c '^204 ' "$OUT/many-$storage-$round.txt")
    echo "round $round $storage 100 uploads x 64 MiB at once: RSS $((base / 1024)) MiB before, peak $((peak / 1024)) MiB, $ok/100 finished" | tee -a "$OUT/summary"
    : > "$OUT/many-$storage-$round.txt"
    stop
  done
done
rm -f "$OUT/1g.bin" "$OUT/64m.bin"
