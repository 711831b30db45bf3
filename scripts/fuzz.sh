#!/usr/bin/env bash
# Fuzzing pass: builds the libFuzzer targets (clang-14, ASan + UBSan) into
# build-fuzz/ and runs each for the given number of seconds (default 300),
# starting from the checked-in corpus fuzz/corpus/<target>/ and the dictionary
# (fuzz/<target>.dict, else fuzz/json.dict). New interesting inputs go to the
# scratch dir build-fuzz/corpus-new/<target>/ (never the checked-in corpus);
# crash, leak and timeout inputs go to build-fuzz/artifacts/; each target's log
# to build-fuzz/logs/<target>.log.
#
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]
#   targets: job options cron event schedule saga_output nats_config nats_message http admin (default: all)
# Exits non-zero if any target crashed, leaked, timed out or broke a property
# (the targets abort() on a property violation). To reproduce a crash:
#   build-fuzz/fuzz/<target>_fuzzer build-fuzz/artifacts/<target>-crash-...
# The fix's regression input then goes into fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-300}
if [ $# -gt 0 ]; then shift; fi
ALL=(job options cron event schedule saga_output nats_config nats_message http admin)
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then TARGETS=("${ALL[@]}"); fi
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}

# clang and its libFuzzer runtime: installed if missing.
./scripts/deps.sh clang-14 libclang-rt-14-dev

echo "== fuzz build ($BUILD)"
# clang's -Wall -Wextra is held to -Werror too (clang 14 warns about nothing
# in src/ or fuzz/); the GoogleTest suites are not built here.
CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD" -G Ninja \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWF_FUZZ=ON -DWF_SANITIZE=ON \
  -DWF_BUILD_BENCH=OFF -DWF_BUILD_EXAMPLES=OFF -DWF_WERROR=ON >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}" --target "${TARGETS[@]/%/_fuzzer}"

mkdir -p "$BUILD/artifacts" "$BUILD/logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in "${TARGETS[@]}"; do
  dict=fuzz/$t.dict
  [ -f "$dict" ] || dict=fuzz/json.dict
  scratch=$BUILD/corpus-new/$t
  mkdir -p "$scratch"
  log=$BUILD/logs/$t.log
  echo "== fuzz $t (${SECS} s)"
  rc=0
  # First corpus dir is written to (scratch), the checked-in one only read.
  "$BUILD/fuzz/${t}_fuzzer" "$scratch" "fuzz/corpus/$t" \
    -dict="$dict" -max_total_time="$SECS" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$BUILD/artifacts/$t-" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$rc" = 0 ]; then
    echo "   ok: ${execs:-?} executions (${rate:-?}/s), ${cov:-cov: ?}, scratch corpus $(ls "$scratch" | wc -l) inputs"
  else
    failed+=("$t")
    echo "   FAILED (exit $rc); log $log; artifacts:"
    ls -1 "$BUILD/artifacts" | grep "^$t-" | sed 's/^/     /' || true
    grep -m1 -A 30 -E 'ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error' "$log" | sed 's/^/     /' || true
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ran ${SECS} s without a finding"
