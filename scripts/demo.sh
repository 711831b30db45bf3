#!/usr/bin/env bash
# Quick start 1: install what is missing, build, run the end-to-end demos on
# local SQLite files (old files are removed first) and show the engine's stats:
#   1. examples/demo.c: outbox, retries, a dead letter;
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
./build-demo/examples/wf_demo "$DB"
echo
echo "== demo 2: order saga (examples/order_saga)"
./build-demo/examples/wf_order_saga "$SAGA_DB" "${PAYMENT_TIMEOUT_MS:-30000}"
echo
echo "== wfctl stats --db $DB (tools/wfctl: the operator's CLI, read-only)" && ./build-demo/tools/wfctl/wfctl stats --db "$DB"
