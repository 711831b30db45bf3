#!/usr/bin/env bash
# Quick start 2: install what is missing, build, run every test suite:
# clang-format check, the GoogleTest suites via ctest (unit, C API, header,
# exported symbols, install consumers, crash test, fault injection, power
# loss, security, fuzz corpus replay), a bounded crash loop, clang-tidy,
# a bounded libFuzzer pass, then the whole suite again under AddressSanitizer +
# UndefinedBehaviorSanitizer and under ThreadSanitizer (ctest's summary ends it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
# Every runner's output also goes to this log; the script ends by printing
# their own summary lines again (ctest, pytest, go test, cargo test).
mkdir -p build
SUMMARY_LOG=$PWD/build/test-summary.log
: >"$SUMMARY_LOG"

echo "== clang-format"
./scripts/format.sh --check

echo "== build (RelWithDebInfo)"
BUILD_DIR=build ./scripts/build.sh -DWF_BUILD_TESTS=ON -DWF_BUILD_BENCH=ON -DWF_SANITIZE=OFF -DWF_FAILPOINTS=ON
echo "== ctest"
(cd build && ctest --output-on-failure -j2 --timeout 900) | tee -a "$SUMMARY_LOG"

# ---- go binding ----
# The Go binding (bindings/go, docs/bindings/go.md): go vet, go test -race
# (a real engine on temporary files, virtual clock, crash test, the read API
# beside a writer process, and TestModuleConsumer: separate modules `go get`
# the module from a file:// proxy / use a replace directive and run the
# program of the docs) and the example program, against the library built
# above. Installs Debian's
# golang-go when no go is on PATH; the module has no third-party
# dependencies, so nothing is downloaded. WF_SKIP_GO=1 skips it.
if [ "${WF_SKIP_GO:-0}" != 1 ]; then
  echo "== go binding"
  command -v go >/dev/null || ./scripts/deps.sh golang-go
  (cd bindings/go && export WFENGINE_LIBRARY="$PWD/../../build/libwfengine.so" &&
     go vet ./... && go test -race -count=1 ./... | tee -a "$SUMMARY_LOG" && go run -buildvcs=false ./examples/quickstart >/dev/null)
fi
# ---- end go binding ----

# A bounded crash loop on top of ctest's crash test: repeated runs of 20
# SIGKILLs each with fresh seeds (scripts/crashloop.sh runs it for hours).
# WF_CRASHLOOP_SECONDS sets the duration (default 60; 0 skips it).
if [ "${WF_CRASHLOOP_SECONDS:-60}" != 0 ]; then
  echo "== crash loop (${WF_CRASHLOOP_SECONDS:-60} s)"
  ./scripts/crashloop.sh "${WF_CRASHLOOP_SECONDS:-60}" build
fi

# ---- soak (owned by the retention work; keep this block self-contained) ----
# Constant mixed load with short retention windows: file size, WAL size,
# free-list pages and RSS must stay flat after the warm-up (bench/wf_soak.cpp
# states the rule). WF_SOAK_SECONDS sets the duration (default 60; 0 skips it).
if [ "${WF_SOAK_SECONDS:-60}" != 0 ]; then
  echo "== soak (${WF_SOAK_SECONDS:-60} s)"
  cmake --build build --target wf_soak >/dev/null
  build/bench/wf_soak "${WF_SOAK_SECONDS:-60}"
fi
# ---- end soak ----

# ---- python binding ----
# bindings/python (ctypes, no compiled code) against the library just built, with the
# system Python and Debian's python3-pytest and mypy (scripts/deps.sh): mypy --strict on
# the package, tests, example and benchmark, the pytest suite (including a crash test)
# and the example program. WF_SKIP_PYTHON=1 skips it. Then the packaging check
# (bindings/python/check_package.sh): `pip install ./bindings/python` into a fresh
# virtualenv (scikit-build-core from PyPI builds the library through ccache and bundles
# it), a smoke program there without WFENGINE_LIBRARY, `pip wheel` and the wheel's
# contents; about 20 s with a warm ccache, 2.5 min cold on 2 loaded cores.
# WF_SKIP_PYTHON_PACKAGE=1 skips only the packaging check.
if [ "${WF_SKIP_PYTHON:-0}" != 1 ]; then
  echo "== python binding"
  (export WFENGINE_LIBRARY="$PWD/build/libwfengine.so" PYTHONPATH="$PWD/bindings/python"
   cd bindings/python
   /usr/bin/python3 -m mypy --strict --no-error-summary --cache-dir ../../build/mypy_cache \
     wfengine tests example.py bench.py
   /usr/bin/python3 -m pytest -q -p no:cacheprovider tests | tee -a "$SUMMARY_LOG"
   /usr/bin/python3 example.py >/dev/null
   if [ "${WF_SKIP_PYTHON_PACKAGE:-0}" != 1 ]; then
     echo "== python package (pip install ./bindings/python in a fresh virtualenv, wheel)"
     ./check_package.sh | tee -a "$SUMMARY_LOG"
   fi)
fi
# ---- end python binding ----
# ---- rust binding ----
# bindings/rust (wfengine-sys + wfengine): clippy -D warnings, cargo test
# (tests/engine.rs, tests/read_api.rs, tests/crash.rs, the doc example) and
# the example against build/libwfengine.so. Uses cargo from PATH or
# ~/.cargo/bin (Rust >= 1.71; Debian 12's 1.63 is too old for the locked
# crates); without one it installs a minimal toolchain with rustup.
# Crates come from crates.io (Cargo.lock pins them). WF_SKIP_RUST=1 skips it.
if [ "${WF_SKIP_RUST:-0}" != 1 ]; then
  echo "== rust binding"
  export PATH="$PATH:$HOME/.cargo/bin"
  rust_ok() {
    command -v cargo >/dev/null && cargo clippy --version >/dev/null 2>&1 &&
      rustc -vV | awk '/^release:/ { split($2, v, "."); exit !(v[1] > 1 || v[2] >= 71) }'
  }
  if ! rust_ok; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal -c clippy >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  (cd bindings/rust &&
     export CARGO_TARGET_DIR="$PWD/target" WFENGINE_LIBRARY="$PWD/../../build/libwfengine.so" &&
     cargo clippy -q --locked --all-targets -- -D warnings &&
     cargo test -q --locked 2>&1 | tee -a "$SUMMARY_LOG" &&
     cargo run -q --locked --example quickstart)
fi
# ---- end rust binding ----

# clang-tidy over src/ with the checked-in .clang-tidy: any finding fails.
# WF_SKIP_LINT=1 skips it.
if [ "${WF_SKIP_LINT:-0}" != 1 ]; then
  echo "== clang-tidy"
  ./scripts/lint.sh
fi

# ---- fuzz (owned by the fuzzing work; keep this block self-contained) ----
# A bounded libFuzzer pass (ASan + UBSan) over every target, starting from the
# checked-in corpora; the corpora themselves are replayed by ctest above.
# WF_SKIP_FUZZ=1 skips it; WF_FUZZ_SECONDS sets the time per target.
if [ "${WF_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz (${WF_FUZZ_SECONDS:-15} s per target)"
  ./scripts/fuzz.sh "${WF_FUZZ_SECONDS:-15}"
fi
# ---- end fuzz ----

if [ "${WF_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== build (ASan + UBSan)"
  BUILD_DIR=build-asan BUILD_TYPE=Debug ./scripts/build.sh -DWF_SANITIZE=ON -DWF_BUILD_TESTS=ON -DWF_BUILD_BENCH=OFF
  echo "== ctest (ASan + UBSan)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j2 --timeout 900) | tee -a "$SUMMARY_LOG"
fi

# ---- tsan (owned by the hardening work; keep this block self-contained) ----
# The suite again under ThreadSanitizer: the relay loop, group commit and
# completions from any thread. Left out: the fault-injection sweeps (label
# faults: a forked engine per injected fault, several minutes under TSan; the
# threads they run are the ones covered here) and the install consumers
# (label install: programs linked without the TSan runtime, as for ASan).
# Races inside libuv/SQLite would go to tests/tsan.supp, with a reason.
# WF_SKIP_TSAN=1 (or WF_SKIP_SANITIZERS=1) skips it.
if [ "${WF_SKIP_SANITIZERS:-0}" != 1 ] && [ "${WF_SKIP_TSAN:-0}" != 1 ]; then
  echo "== build (TSan)"
  BUILD_DIR=build-tsan ./scripts/build.sh -DWF_TSAN=ON -DWF_SANITIZE=OFF -DWF_BUILD_TESTS=ON \
    -DWF_BUILD_BENCH=OFF -DWF_BUILD_EXAMPLES=OFF
  echo "== ctest (TSan)"
  tsan_opts="second_deadlock_stack=1"
  if [ -f tests/tsan.supp ]; then tsan_opts="$tsan_opts suppressions=$PWD/tests/tsan.supp"; fi
  (cd build-tsan && TSAN_OPTIONS="$tsan_opts" \
     ctest --output-on-failure -j2 --timeout 900 -LE 'faults|install') | tee -a "$SUMMARY_LOG"
fi
# ---- end tsan ----

echo "== summary (each runner's own lines)"
grep -E "tests passed|tests failed out of|^ok  |^FAIL|^--- FAIL|[0-9]+ passed|[0-9]+ failed|^test result:" \
  "$SUMMARY_LOG" || true
