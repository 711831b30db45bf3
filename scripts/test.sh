#!/usr/bin/env bash
# Quick start 2: install what is missing, build, run every test suite:
# clang-format check, the GoogleTest suites via ctest (unit, C API, header,
# exported symbols, install consumers, crash test, fuzz corpus replay),
# then the whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

echo "== clang-format"
./scripts/format.sh --check

echo "== build (RelWithDebInfo)"
BUILD_DIR=build ./scripts/build.sh -DWF_BUILD_TESTS=ON -DWF_BUILD_BENCH=ON -DWF_SANITIZE=OFF -DWF_FAILPOINTS=ON
echo "== ctest"
(cd build && ctest --output-on-failure -j2 --timeout 900)

if [ "${WF_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== build (ASan + UBSan)"
  BUILD_DIR=build-asan BUILD_TYPE=Debug ./scripts/build.sh -DWF_SANITIZE=ON -DWF_BUILD_TESTS=ON -DWF_BUILD_BENCH=OFF
  echo "== ctest (ASan + UBSan)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j2 --timeout 900)
fi
