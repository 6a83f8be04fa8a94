#!/usr/bin/env bash
# One write every 3 s beside peerbench's 1:1 load at 10,000 msg/s for 25 s,
# to see whether that write holds the sends up: prints the sends' latency
# and each write's HTTP status and time. Server on core 1, generator on
# core 0, a fresh server per run. Needs ../shared/peerbench built
# (CARGO_TARGET_DIR=/tmp/peerbench-target cargo build --release there).
# Usage: scripts/side-load.sh BIN OUT join|remark
#   join:   user pb7 joins and leaves an open room (POST /v1/groups/{id}/join, /leave)
#   remark: user pb7 sets a remark on user 9 (PUT /v1/friends/9/remark)
set -uo pipefail
BIN=$(realpath "$1"); OUT=$2; WHAT=${3:-join}
PEERS=$(realpath "$(dirname "$0")/../../shared/peerbench")
PB=/tmp/peerbench-target/release/peerbench
H=http://127.0.0.1:17780
cd "$PEERS"
PB_NATTER_BIN=$BIN scripts/peer.sh start natter 1 >/dev/null
taskset -c 0 $PB register --proto natter --addr 127.0.0.1:17700 --count 200 >/dev/null 2>&1
P=$(scripts/peer.sh pids natter | head -1)
json() { python3 -c "import sys,json;print(json.load(sys.stdin)['$1'])"; }
token() {
  curl -s -X POST $H/v1/login -H 'content-type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"pbpass-natter\",\"device_id\":\"side\"}" | json token
}
T7=$(token pb7); T8=$(token pb8)
G=$(curl -s -X POST $H/v1/groups -H "authorization: Bearer $T8" -H 'content-type: application/json' \
  -d '{"kind":"ROOM","name":"side","join_policy":"OPEN"}' | json conversation_id)
taskset -c 0 $PB dm --proto natter --addr 127.0.0.1:17700 --peer L --server-pid "$P" --rates 10000 \
  --warmup 3 --duration 25 --retries 0 --p99-limit-ms 2000 > "$OUT.dm" 2>&1 &
D=$!
sleep 6
: > "$OUT.side"
for i in 1 2 3 4 5 6 7; do
  case $WHAT in
    join) if [ $((i % 2)) = 1 ]; then m=POST u=$H/v1/groups/$G/join; d='{}'; else m=POST u=$H/v1/groups/$G/leave; d=''; fi ;;
    remark) m=PUT u=$H/v1/friends/9/remark; d="{\"remark\":\"r$i\"}" ;;
  esac
  curl -s -o /dev/null -w "%{http_code} %{time_total}\n" -X $m "$u" -H "authorization: Bearer $T7" \
    -H 'content-type: application/json' ${d:+-d "$d"} >> "$OUT.side"
  sleep 3
done
wait $D
scripts/peer.sh stop natter >/dev/null
awk '$5 ~ /^[0-9]+$/ {print "rate",$5,"p50",$8,"p99",$9,"p999",$10,"max",$11,"us/msg",$16}' "$OUT.dm"
tr '\n' ' ' < "$OUT.side"; echo
