#!/usr/bin/env bash
# Quick start 1: install what is missing, build, run the end-to-end demos on
# local SQLite files (old files are removed first) and show the engine's stats:
#   1. examples/demo.c: outbox, retries, a dead letter, and one webhook signed
#      by the built-in HTTP provider (Standard Webhooks) delivered to a local
#      sink (scripts/webhook_sink.py on 127.0.0.1) that verifies the signature;
#   2. examples/order_saga: a saga (reserve -> charge -> ship) whose second
#      order has its card declined and is compensated (inventory released).
# DB, SAGA_DB and PAYMENT_TIMEOUT_MS (default 30000) override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
BUILD_DIR=build-demo ./scripts/build.sh -DWF_BUILD_TESTS=OFF -DWF_BUILD_BENCH=OFF >/dev/null
DB=${DB:-./wf_demo.db}
SAGA_DB=${SAGA_DB:-./order_saga.db}
rm -f "$DB" "$DB-wal" "$DB-shm" "$DB-wfboots" "$SAGA_DB" "$SAGA_DB-wal" "$SAGA_DB-shm" "$SAGA_DB-wfboots"
echo "== demo 1: outbox and relay (examples/demo.c)"
# A throwaway signing secret, shared with the sink through the environment.
WF_DEMO_WHSEC=$(python3 -c 'import base64,os;print("whsec_"+base64.b64encode(os.urandom(24)).decode())')
export WF_DEMO_WHSEC
SINK_OUT=$(mktemp)
SINK_IN=$(mktemp -u)
mkfifo "$SINK_IN"
python3 scripts/webhook_sink.py --secret env:WF_DEMO_WHSEC <"$SINK_IN" >"$SINK_OUT" &
SINK_PID=$!
exec 3>"$SINK_IN"  # the sink exits when this closes
trap 'exec 3>&-; wait $SINK_PID 2>/dev/null || true; rm -f "$SINK_IN" "$SINK_OUT"' EXIT
until grep -q '"ready"' "$SINK_OUT"; do
  kill -0 "$SINK_PID" 2>/dev/null || { echo "webhook sink failed to start"; exit 1; }
  sleep 0.05
done
PORT=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["port"])' "$SINK_OUT")
./build-demo/examples/wf_demo "$DB" "http://127.0.0.1:$PORT/verify"
python3 - "$SINK_OUT" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("ev") != "req":
        continue
    h = r["headers"]
    print("  sink received %s %s webhook-id=%s signature %s body %s" % (
        r["method"], r["path"], h.get("webhook-id"),
        "VERIFIED" if r["sig_ok"] else "INVALID", r["body"]))
PY
echo
echo "== demo 2: order saga (examples/order_saga)"
./build-demo/examples/wf_order_saga "$SAGA_DB" "${PAYMENT_TIMEOUT_MS:-30000}"
echo
echo "== wfctl stats --db $DB (tools/wfctl: the operator's CLI, read-only)" && ./build-demo/tools/wfctl/wfctl stats --db "$DB"
