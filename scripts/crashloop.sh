#!/usr/bin/env bash
# Crash loop: runs the kill -9 crash test (tests/crash, wf_crash_test) again and
# again with a new seed each time until the duration elapses, printing one
# summary line per run and the totals. Stops at the first failing run and
# exits non-zero, printing its seed (replay: WF_CRASH_SEED=<seed>
# WF_CRASH_KILLS=<kills> <build>/tests/crash/wf_crash_test) and keeping its log.
#
# Usage: scripts/crashloop.sh [duration-seconds] [build-dir]
#   duration-seconds  default 60; hours are fine (e.g. 14400)
#   build-dir         default $BUILD_DIR, else build
# Environment:
#   WF_CRASH_KILLS    kills per run (default 20)
#   CRASHLOOP_SEED    seed of the first run (default random); run i uses seed+i
#   CRASHLOOP_LOGS    directory for the run logs (default a new temporary one)
# Examples:
#   scripts/crashloop.sh 600                  # ten minutes
#   BUILD_DIR=build-asan scripts/crashloop.sh 3600
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-60}
build_dir=${2:-${BUILD_DIR:-build}}
kills=${WF_CRASH_KILLS:-20}
bin="$build_dir/tests/crash/wf_crash_test"
if ! [[ "$duration" =~ ^[0-9]+$ ]]; then
  echo "crashloop: duration must be a number of seconds, not '$duration'" >&2
  exit 2
fi
if [ ! -x "$bin" ]; then
  echo "crashloop: $bin not found; build first (scripts/build.sh) or pass the build directory" >&2
  exit 2
fi
logs=${CRASHLOOP_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/wf_crashloop_XXXXXX")}
mkdir -p "$logs"
seed=${CRASHLOOP_SEED:-$(( (RANDOM << 15 | RANDOM) + 1 ))}

# field <line> <name>: the number after "<name>=" in a summary line.
field() { grep -o "[ :]$2=[0-9-]*" <<<"$1" | head -n1 | cut -d= -f2 || true; }

start=$(date +%s)
runs=0 t_kills=0 t_jobs=0 t_jobs_lost=0 t_events=0 t_events_lost=0 t_dup=0
t_sched=0 t_sched_lost=0 t_double=0
totals() {
  local now elapsed
  now=$(date +%s)
  elapsed=$((now - start))
  echo "crashloop: totals: runs=$runs kills=$t_kills jobs acked=$t_jobs lost=$t_jobs_lost" \
    "events acked=$t_events lost=$t_events_lost duplicated=$t_dup" \
    "schedules acked=$t_sched lost=$t_sched_lost double_fired=$t_double (${elapsed} s, logs in $logs)"
}

echo "crashloop: $bin for ${duration} s, $kills kills per run, first seed $seed, logs in $logs"
while :; do
  now=$(date +%s)
  if ((runs > 0 && now - start >= duration)); then break; fi
  run_seed=$((seed + runs))
  log="$logs/run-$((runs + 1))-seed-$run_seed.log"
  t0=$(date +%s)
  set +e
  WF_CRASH_SEED=$run_seed WF_CRASH_KILLS=$kills "$bin" >"$log" 2>&1
  rc=$?
  set -e
  t1=$(date +%s)
  runs=$((runs + 1))
  jobs_line=$(grep -m1 '^crash test: kills=' "$log" || true)
  ev_line=$(grep -m1 '^crash test: events ' "$log" || true)
  sc_line=$(grep -m1 '^crash test: schedules ' "$log" || true)
  k=$(field "$jobs_line" kills); ja=$(field "$jobs_line" acked); jl=$(field "$jobs_line" lost)
  ea=$(field "$ev_line" acked); el=$(field "$ev_line" lost); ed=$(field "$ev_line" duplicated)
  sa=$(field "$sc_line" acked); sl=$(field "$sc_line" lost); sd=$(field "$sc_line" double_fired)
  printf 'crashloop: run %d seed=%d %s in %ds: kills=%s jobs acked=%s lost=%s events acked=%s lost=%s duplicated=%s schedules acked=%s lost=%s double_fired=%s\n' \
    "$runs" "$run_seed" "$([ $rc = 0 ] && echo ok || echo FAILED)" $((t1 - t0)) \
    "${k:-?}" "${ja:-?}" "${jl:-?}" "${ea:-?}" "${el:-?}" "${ed:-?}" "${sa:-?}" "${sl:-?}" "${sd:-?}"
  t_kills=$((t_kills + ${k:-0})); t_jobs=$((t_jobs + ${ja:-0})); t_jobs_lost=$((t_jobs_lost + ${jl:-0}))
  t_events=$((t_events + ${ea:-0})); t_events_lost=$((t_events_lost + ${el:-0})); t_dup=$((t_dup + ${ed:-0}))
  t_sched=$((t_sched + ${sa:-0})); t_sched_lost=$((t_sched_lost + ${sl:-0})); t_double=$((t_double + ${sd:-0}))
  if [ $rc != 0 ]; then
    echo "crashloop: run $runs FAILED (exit $rc); replay with:" >&2
    echo "  WF_CRASH_SEED=$run_seed WF_CRASH_KILLS=$kills $bin" >&2
    echo "crashloop: its output ($log):" >&2
    grep -E 'Failure|lost|duplicated|double|fired|integrity|kept in|Expected|Which is|Value of|Actual' "$log" | head -40 >&2 || true
    totals
    exit 1
  fi
  rm -f "$log"
done
totals
rmdir "$logs" 2>/dev/null || true
