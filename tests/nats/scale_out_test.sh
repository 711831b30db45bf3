#!/usr/bin/env bash
# examples/scale_out end to end: a real nats-server -js on 127.0.0.1 (free
# port, temporary store), an order engine placing N orders and a worker
# engine executing the commands. The worker is SIGKILLed mid-run and
# restarted. Passes when every order's saga finished, every command was
# executed, and none twice (counted in the worker's own database).
# Usage: scale_out_test.sh path/to/wf_scale_out [N]
set -euo pipefail
BIN=$1
N=${2:-200}
command -v nats-server >/dev/null || { echo "SKIP: nats-server not installed"; exit 77; }
tmp=$(mktemp -d /tmp/wf-scaleout-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Polls a command until it succeeds or SECONDS pass.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.05
  done
}
sql() { sqlite3 -readonly "$1" "$2" 2>/dev/null || echo -1; }

port=$("$BIN" freeport)
url="nats://127.0.0.1:$port"
nats-server -js -a 127.0.0.1 -p "$port" -sd "$tmp/js" >"$tmp/nats.log" 2>&1 &
pids+=($!)
wait_for 15 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
"$BIN" setup "$url"

"$BIN" worker "$tmp/worker.db" "$url" >"$tmp/worker1.log" 2>&1 &
w1=$!
pids+=($w1)
"$BIN" order "$tmp/orders.db" "$url" "$N" 180000 >"$tmp/order.log" 2>&1 &
order=$!
pids+=($order)

# Kill the worker once a part of the commands ran.
executed() { (($(sql "$tmp/worker.db" "SELECT count(*) FROM executions") >= $1)); }
wait_for 120 executed $((N / 4)) || { echo "FAIL: worker made no progress"; cat "$tmp"/*.log; exit 1; }
kill -9 "$w1"
wait "$w1" 2>/dev/null || true
before=$(sql "$tmp/worker.db" "SELECT count(*) FROM executions")
echo "worker SIGKILLed after $before of $N executions"

"$BIN" worker "$tmp/worker.db" "$url" >"$tmp/worker2.log" 2>&1 &
w2=$!
pids+=($w2)

if ! wait "$order"; then
  echo "FAIL: not every saga finished"
  cat "$tmp/order.log" "$tmp/worker1.log" "$tmp/worker2.log"
  exit 1
fi
cat "$tmp/order.log"
kill -TERM "$w2"
wait "$w2" || { echo "FAIL: worker did not stop cleanly"; exit 1; }

total=$(sql "$tmp/worker.db" "SELECT count(*) FROM executions")
distinct=$(sql "$tmp/worker.db" "SELECT count(DISTINCT cmd) FROM executions")
maxper=$(sql "$tmp/worker.db" "SELECT max(c) FROM (SELECT count(*) c FROM executions GROUP BY cmd)")
skipped=$(sql "$tmp/worker.db" "SELECT count(*) FROM skipped")
echo "executions=$total distinct=$distinct max_per_command=$maxper re-runs_absorbed=$skipped"
[ "$distinct" = "$N" ] || { echo "FAIL: $distinct of $N commands executed"; exit 1; }
[ "$total" = "$N" ] && [ "$maxper" = 1 ] || { echo "FAIL: a command executed twice"; exit 1; }
echo "PASS"
