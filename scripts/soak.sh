#!/usr/bin/env bash
# Soak: builds bench/wf_soak and runs it for MINUTES (default 10) of constant
# mixed load with short retention windows (keyed jobs, saga events, cron
# schedules, dead letters). It prints file size, WAL size, free-list pages and
# RSS every 10 s and exits non-zero when one of them keeps growing after the
# warm-up (the rule is printed at the end; see bench/wf_soak.cpp).
#
# Usage: scripts/soak.sh [MINUTES] [BUILD_DIR]   (fractions allowed: 0.5)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
BUILD_DIR=${2:-build}
SECONDS_TOTAL=$(python3 -c "print(max(30, int(float('$MINUTES') * 60)))")
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  BUILD_DIR="$BUILD_DIR" ./scripts/build.sh -DWF_BUILD_BENCH=ON >/dev/null
fi
cmake --build "$BUILD_DIR" --target wf_soak >/dev/null
exec "$BUILD_DIR/bench/wf_soak" "$SECONDS_TOTAL"
