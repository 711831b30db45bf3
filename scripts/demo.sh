#!/usr/bin/env bash
# Quick start 1: install what is missing, build, run the end-to-end demo on a
# local SQLite file and show the engine's stats.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
WF_BUILD_TESTS=OFF ./scripts/build.sh -DWF_BUILD_TESTS=OFF -DWF_BUILD_BENCH=OFF >/dev/null
DB=${DB:-./wf_demo.db}
rm -f "$DB" "$DB-wal" "$DB-shm"
./build/examples/wf_demo "$DB"
