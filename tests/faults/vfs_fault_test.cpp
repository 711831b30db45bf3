// Fault sweep through the "wf_faulty" VFS shim (faulty_vfs.h).
//
// For each fault kind (write, sync, truncate, lock returning SQLITE_BUSY,
// lock returning SQLITE_IOERR_LOCK, shm lock) and each mode, k sweeps over
// the calls of that kind a small workload makes, counted from wf_open to the
// end of wf_close (a fault-free calibration run gives the range). Modes:
//  - once:        only the k-th call fails;
//  - persistent:  every call from the k-th on fails, until the workload is
//                 over; then the fault clears with the engine still open;
//  - sticky:      like persistent, but the fault lasts through wf_close and
//                 only clears before the database is reopened.
// One run: wf_open with {"vfs":"wf_faulty"}, register, start; three rounds of
// a keyed job, a host transaction (host row + job), a saga event and a
// one-shot schedule, each call recorded with its result; a short settle so
// the relay claims, delivers, applies and fires under the fault. Then:
//  - the engine must not retry failing writes in a busy loop: at most 20
//    failed write transactions (its "write transaction failed" log lines)
//    in the 60 ms settle;
//  - once / persistent: the same engine must work again once the fault is
//    gone: a probe job and a probe transaction return WF_OK, and without
//    reopening it finishes all its work (jobs delivered and completed,
//    events applied, schedules fired) within WF_FAULTS_LIVENESS_MS (1000 ms,
//    3.3 times lease_ms; 0 skips this check); wf_close returns WF_OK
//    unless a fault was returned during it;
//  - idle afterwards (or waiting out a sticky fault), the process uses at
//    most half of a 200 ms window in CPU time: no spinning loop;
//  - wf_close; PRAGMA integrity_check must say "ok";
//  - the engine reopens on the file (default VFS) and drains everything;
//  - every call that returned WF_OK is there: job delivered, host row and its
//    job, event applied exactly once, schedule fired exactly once; no call
//    that failed is half there (host row without its job or the reverse),
//    nothing is applied or delivered twice, no dead letters or parked events.
//
// Each run happens in a forked process, so an engine that aborts or hangs
// fails that run only. Knobs: WF_FAULTS_MAX_RUNS (k values per kind and mode,
// default 60, 20 in sanitizer builds; the sweep strides when the calibrated
// range is larger; 0 = every k), WF_FAULTS_CKPT_MAX_RUNS (the same for the
// Checkpoint* tests, default 12, 4 in sanitizer builds), WF_FAULTS_ROUNDS (workload rounds, default
// 3), WF_FAULTS_VERBOSE=1, WF_FAULTS_KEEP=1 (keep the files of failed runs), WF_FAULTS_REPRO (see
// DISABLED_Repro below).

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "faulty_vfs.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "wfengine.h"

namespace {

using faulty::Kind;
using faulty::Mode;
using Clock = std::chrono::steady_clock;

enum class Phase { kOnce, kPersistent, kSticky };

const char* run_name(Phase r) {
  return r == Phase::kOnce ? "once" : r == Phase::kPersistent ? "persistent" : "sticky";
}

constexpr const char* kFaultyOptions =
    "{\"vfs\":\"wf_faulty\",\"busy_timeout_ms\":20,\"poll_ms\":0,\"lease_ms\":300,"
    "\"drain_timeout_ms\":300,\"checkpoint_pages\":100}";
constexpr const char* kPlainOptions = "{\"poll_ms\":0}";
// Failed write transactions tolerated during the 60 ms settle (the
// engine's retry timers fire every 100 ms).
constexpr int64_t kMaxSettleFailedTx = 20;

// Counts the engine's "write transaction failed" log lines.
void count_failed_tx(void* user, int /*level*/, const char* line) {
  if (std::strstr(line, "write transaction failed"))
    static_cast<std::atomic<int64_t>*>(user)->fetch_add(1);
  static const bool print = harness::env_int("WF_FAULTS_LOG", 0) != 0;
  if (print) std::fprintf(stderr, "engine log: %s\n", line);
}
// Workload rounds of the Checkpoint* tests (enough for a checkpoint).
constexpr int kCheckpointRounds = 100;

struct Outcome {
  int64_t injected = 0;  // faults the shim returned
  int calls_ok = 0, calls_failed = 0;
  bool opened = false;
  bool crashed = false;               // the process running the engine died
  std::vector<std::string> failures;  // empty: the run passed
  harness::Report report;
};

// CPU time this process used while the calling thread slept `ms`.
constexpr int kIdleWindowMs = 200;
double process_cpu_ms_during_sleep(int ms) {
  auto cpu_ms = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  };
  const double before = cpu_ms();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return cpu_ms() - before;
}

void settle(wf_engine* e, int ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < deadline) {
    harness::Pending p = harness::pending(e);
    if (p.work == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// One run of the workload with `kind` armed at `k` (Kind::kNone: no fault),
// on a new database in the empty directory `dir`. `counts` receives the calls
// counted over the whole run, `at_clear` those counted when a persistent
// fault is cleared (after the workload).
Outcome run_once(const std::string& dir, Kind kind, Phase run, int64_t k, int rounds,
                 faulty::File target, faulty::Counts* counts, faulty::Counts* at_clear) {
  Outcome o;
  const std::string db = dir + "/f.db";
  harness::LedgerLog ll;
  harness::LogFn log = ll.fn();
  auto count = [&](int rc) { (rc == WF_OK ? o.calls_ok : o.calls_failed)++; };

  faulty::reset();
  faulty::set_target(target);
  if (kind != Kind::kNone)
    faulty::arm(kind, k, run == Phase::kOnce ? Mode::kOnce : Mode::kPersistent);
  wf_engine* e = nullptr;
  int rc = wf_open(db.c_str(), kFaultyOptions, &e);
  count(rc);
  std::atomic<int64_t> failed_tx{0};
  if (rc == WF_OK) {
    o.opened = true;
    wf_set_logger(e, harness::env_int("WF_FAULTS_LOG", 0) ? WF_LOG_DEBUG : WF_LOG_ERROR,
                  count_failed_tx, &failed_tx);
    // wf_open switches a new file to WAL mode: bytes 18 and 19 of the
    // database header (file format write / read version) are 2 in WAL mode.
    std::string header = harness::read_file(db).substr(0, 100);
    if (header.size() < 20 || header[18] != 2 || header[19] != 2) {
      o.failures.push_back(
          "wf_open returned WF_OK but the database file is not in WAL mode (header bytes 18-19: " +
          (header.size() < 20 ? std::string("file shorter than 20 bytes")
                              : std::to_string(header[18]) + "," + std::to_string(header[19])) +
          "): the failed switch to WAL was not reported");
    }
    rc = harness::register_all(e, &log);
    if (rc == WF_OK) rc = wf_start(e);
    if (rc != WF_OK) {
      o.failures.push_back(std::string("register/start: ") + wf_strerror(rc) + ": " +
                           wf_last_error());
    }
    const int64_t t0 = harness::now_ms();
    for (int i = 0; i < rounds; ++i) {
      std::string n = std::to_string(i);
      count(harness::do_job(e, "j" + n, log));
      count(harness::do_tx(e, "t" + n, log));
      count(harness::do_event(e, "e" + n, harness::instance(i), log));
      count(harness::do_schedule(e, "s" + n, t0 + 5 * i, log));
    }
    const int64_t before_settle = failed_tx.load();
    const auto settle_start = Clock::now();
    settle(e, 60);
    const int64_t settle_failed = failed_tx.load() - before_settle;
    const double settle_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - settle_start).count();
    // While the database keeps failing, the engine retries its background
    // writes (claims, saga steps, schedule firings) on timers; dozens of
    // failed write transactions within the settle mean a busy retry loop.
    if (settle_failed > kMaxSettleFailedTx) {
      o.failures.push_back(
          "busy retry loop: " + std::to_string(settle_failed) + " failed write transactions in " +
          std::to_string(static_cast<int>(settle_ms)) + " ms with no API call in flight");
    }
    if (at_clear) *at_clear = faulty::counts();
    if (run == Phase::kPersistent) faulty::disarm();
    if (run != Phase::kSticky) {
      // The fault is over (a once fault fires at most once): the same engine
      // must accept work again. A once fault may land on the probe itself:
      // then one more try.
      for (const char* what : {"job", "tx"}) {
        for (int attempt = 0; attempt < 2; ++attempt) {
          int64_t before = faulty::injected();
          std::string key = std::string("p") + what + std::to_string(attempt);
          rc = what[0] == 'j' ? harness::do_job(e, key, log) : harness::do_tx(e, key, log);
          count(rc);
          if (rc == WF_OK) break;
          if (attempt == 1 || faulty::injected() == before) {
            o.failures.push_back(std::string("the engine did not recover once the fault cleared: "
                                             "probe ") +
                                 what + " returned " + wf_strerror(rc) + ": " + wf_last_error());
            break;
          }
        }
      }
    }
    const int live_ms = harness::env_int("WF_FAULTS_LIVENESS_MS", 1000);
    if (run != Phase::kSticky && live_ms > 0 && o.failures.empty()) {
      // Without reopening, the same engine must finish the acknowledged work.
      const auto deadline = Clock::now() + std::chrono::milliseconds(live_ms);
      harness::Pending p;
      while ((p = harness::pending(e)).work != 0 && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (p.work != 0)
        o.failures.push_back("the engine did not finish its work within " +
                             std::to_string(live_ms) + " ms after the fault cleared: " + p.raw);
    }
    // Idle (finished, or waiting out a sticky fault on its retry timers),
    // the engine must not burn CPU: a loop timer re-armed for an instant that
    // stays due spins a core without a single failed write.
    // A spin lasts; the tail of the workload (retries and log lines of the
    // last failed writes) does not: a window over the limit is measured once
    // more, and only two in a row fail the run.
    if (o.failures.empty()) {
      const double cpu = process_cpu_ms_during_sleep(kIdleWindowMs);
      if (cpu > kIdleWindowMs / 2.0) {
        const double again = process_cpu_ms_during_sleep(kIdleWindowMs);
        if (again > kIdleWindowMs / 2.0)
          o.failures.push_back("busy loop: the idle engine used " +
                               std::to_string(static_cast<int>(cpu)) + " and then " +
                               std::to_string(static_cast<int>(again)) + " ms of CPU in two " +
                               std::to_string(kIdleWindowMs) + " ms windows");
      }
    }
    const int64_t before_close = faulty::injected();
    rc = wf_close(e);
    // With the fault over (and none returned during the close itself) the
    // close must succeed; otherwise it may report the fault.
    if (run != Phase::kSticky && rc != WF_OK && faulty::injected() == before_close)
      o.failures.push_back(std::string("wf_close failed with no fault during it: ") +
                           wf_strerror(rc) + ": " + wf_last_error());
  }
  if (counts) *counts = faulty::counts();
  o.injected = faulty::injected();
  faulty::disarm();

  std::string ic = harness::integrity_check(db);
  if (ic != "ok") o.failures.push_back("PRAGMA integrity_check: " + ic);
  harness::Drained d;
  std::string err = harness::drain(db, kPlainOptions, log, 10000, &d);
  if (!err.empty()) o.failures.push_back("reopen and drain: " + err);
  if (d.dead != 0 || d.parked != 0 || d.unmatched != 0)
    o.failures.push_back("dead letters, parked or unmatched events after the drain: " + d.stats);
  std::string herr;
  std::set<std::string> host = harness::host_rows(db, &herr);
  if (!herr.empty()) o.failures.push_back("reading the host table: " + herr);
  ic = harness::integrity_check(db);
  if (ic != "ok") o.failures.push_back("PRAGMA integrity_check after the drain: " + ic);
  {
    std::lock_guard<std::mutex> g(ll.mu);
    o.report = harness::verify(ll.ledger, d.states, host, harness::Options{});
  }
  if (!o.report.ok()) {
    o.failures.push_back(o.report.summary());
    for (const auto& p : o.report.problems) o.failures.push_back("  " + p);
  }
  return o;
}

// Runs run_once in a child process, so that an engine that aborts (or
// hangs) fails this run only and the sweep goes on. The outcome comes back
// through a pipe as lines.
Outcome run_isolated(Kind kind, Phase run, int64_t k, int rounds, faulty::File target,
                     faulty::Counts* counts, faulty::Counts* at_clear) {
  Outcome o;
  // The directory belongs to this process: removed even if the child dies.
  const std::string dir = harness::make_temp_dir("wf_faults");
  if (dir.empty()) {
    o.failures.push_back("mkdtemp failed");
    return o;
  }
  int fds[2];
  if (::pipe(fds) != 0) {
    harness::remove_dir(dir);
    o.failures.push_back("pipe failed");
    return o;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    faulty::Counts c, cc;
    Outcome r = run_once(dir, kind, run, k, rounds, target, &c, &cc);
    std::string out;
    auto num = [&](const char* tag, int64_t v) {
      out += std::string(tag) + " " + std::to_string(v) + "\n";
    };
    num("injected", r.injected);
    num("calls_ok", r.calls_ok);
    num("calls_failed", r.calls_failed);
    num("opened", r.opened);
    num("c_write", c.write);
    num("c_sync", c.sync);
    num("c_truncate", c.truncate);
    num("c_lock", c.lock);
    num("c_shmlock", c.shmlock);
    num("cc_write", cc.write);
    num("cc_sync", cc.sync);
    num("cc_truncate", cc.truncate);
    num("cc_lock", cc.lock);
    num("cc_shmlock", cc.shmlock);
    num("r_jobs", r.report.jobs_acked);
    num("r_tx", r.report.tx_acked);
    num("r_events", r.report.events_acked);
    num("r_schedules", r.report.schedules_acked);
    num("r_lost", r.report.lost);
    num("r_duplicated", r.report.duplicated);
    num("r_double", r.report.double_fired);
    num("r_half", r.report.half);
    num("r_phantom", r.report.phantom);
    num("r_unacked", r.report.unacked_present);
    for (const auto& f : r.failures) out += "F " + f + "\n";
    out += "end\n";
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    o.failures.push_back("fork failed");
    return o;
  }
  std::string text;
  char buf[4096];
  bool hung = false;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    int ready = ::poll(&p, 1, 100);
    if (ready == 0) {
      if (Clock::now() > deadline) {
        hung = true;
        ::kill(pid, SIGKILL);
        break;
      }
      continue;
    }
    if (ready < 0 && errno == EINTR) continue;
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (hung) o.failures.push_back("the run did not finish within 60 s (hang?)");
  std::istringstream in(text);
  std::string line;
  bool complete = false;
  while (std::getline(in, line)) {
    if (line == "end") {
      complete = true;
      continue;
    }
    if (line.compare(0, 2, "F ") == 0) {
      o.failures.push_back(line.substr(2));
      continue;
    }
    size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    std::string tag = line.substr(0, sp);
    int64_t v = std::atoll(line.c_str() + sp + 1);
    if (tag == "injected") o.injected = v;
    if (tag == "calls_ok") o.calls_ok = static_cast<int>(v);
    if (tag == "calls_failed") o.calls_failed = static_cast<int>(v);
    if (tag == "opened") o.opened = v != 0;
    if (counts && tag == "c_write") counts->write = v;
    if (counts && tag == "c_sync") counts->sync = v;
    if (counts && tag == "c_truncate") counts->truncate = v;
    if (counts && tag == "c_lock") counts->lock = v;
    if (counts && tag == "c_shmlock") counts->shmlock = v;
    if (at_clear && tag == "cc_write") at_clear->write = v;
    if (at_clear && tag == "cc_sync") at_clear->sync = v;
    if (at_clear && tag == "cc_truncate") at_clear->truncate = v;
    if (at_clear && tag == "cc_lock") at_clear->lock = v;
    if (at_clear && tag == "cc_shmlock") at_clear->shmlock = v;
    if (tag == "r_jobs") o.report.jobs_acked = v;
    if (tag == "r_tx") o.report.tx_acked = v;
    if (tag == "r_events") o.report.events_acked = v;
    if (tag == "r_schedules") o.report.schedules_acked = v;
    if (tag == "r_lost") o.report.lost = v;
    if (tag == "r_duplicated") o.report.duplicated = v;
    if (tag == "r_double") o.report.double_fired = v;
    if (tag == "r_half") o.report.half = v;
    if (tag == "r_phantom") o.report.phantom = v;
    if (tag == "r_unacked") o.report.unacked_present = v;
  }
  if (o.failures.empty() && complete && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    harness::remove_dir(dir);
  } else if (harness::env_int("WF_FAULTS_KEEP", 0) != 0) {
    o.failures.push_back("files kept in " + dir);
  } else {
    harness::remove_dir(dir);
  }
  if (!complete || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    o.crashed = true;
    std::string how = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                          : "exit status " + std::to_string(WEXITSTATUS(status));
    o.failures.push_back("the process running the engine died (" + how + "): see its stderr above");
  }
  return o;
}

// Sweeps k for one fault kind in one mode.
void sweep(Kind kind, Phase run, faulty::File target = faulty::File::kAny, int rounds = 0) {
  ASSERT_TRUE(faulty::register_vfs());
  faulty::set_real_sync(false);
  if (rounds <= 0) rounds = std::max(1, harness::env_int("WF_FAULTS_ROUNDS", 3));
  const int max_runs =
      target == faulty::File::kDb
          ? harness::env_int("WF_FAULTS_CKPT_MAX_RUNS", harness::kSanitized ? 4 : 12)
          : harness::env_int("WF_FAULTS_MAX_RUNS", harness::kSanitized ? 20 : 60);
  const bool verbose = harness::env_int("WF_FAULTS_VERBOSE", 0) != 0;
  const auto t0 = Clock::now();

  // Calibration: how many calls of this kind a fault-free run makes (up to
  // the point where a persistent fault is cleared, in that mode).
  int64_t range = 0, fewest = INT64_MAX;
  for (int i = 0; i < 3; ++i) {
    faulty::Counts all, at_clear;
    Outcome o = run_isolated(Kind::kNone, Phase::kOnce, 0, rounds, target, &all, &at_clear);
    const faulty::Counts& c = run == Phase::kPersistent ? at_clear : all;
    ASSERT_TRUE(o.failures.empty()) << "fault-free run failed:\n"
                                    << ::testing::PrintToString(o.failures);
    ASSERT_EQ(o.calls_failed, 0);
    range = std::max(range, c.of(kind));
    fewest = std::min(fewest, c.of(kind));
  }
  if (range == 0) {
    GTEST_SKIP() << "the workload makes no " << faulty::kind_name(kind) << " call before a "
                 << run_name(run) << " fault would clear";
  }
  range += 2;  // and a little past the end: a fault that never comes
  const int64_t stride = max_runs > 0 ? std::max<int64_t>(1, (range + max_runs - 1) / max_runs) : 1;

  int64_t runs = 0, with_fault = 0, failed_runs = 0, calls_ok = 0, calls_failed = 0;
  int64_t acked = 0, lost = 0, duplicated = 0, double_fired = 0, half = 0, unacked_present = 0;
  // A call the workload makes only once or twice may, with background
  // threads (the checkpointer), come before or after the point where a
  // persistent fault clears: when no swept run got its fault, the first
  // few k are tried again (at most 6 more runs).
  const int64_t calls = range - 2;
  int64_t retries = 0;
  for (int64_t k = 1;; k += stride) {
    if (k > range) {
      if (with_fault > 0 || calls > 3 || retries >= 6) break;
      k = 1 + retries++ % std::max<int64_t>(calls, 1);
    }
    {
      Outcome o = run_isolated(kind, run, k, rounds, target, nullptr, nullptr);
      runs++;
      with_fault += o.injected > 0;
      calls_ok += o.calls_ok;
      calls_failed += o.calls_failed;
      acked += o.report.jobs_acked + o.report.tx_acked + o.report.events_acked +
               o.report.schedules_acked;
      lost += o.report.lost;
      duplicated += o.report.duplicated;
      double_fired += o.report.double_fired;
      half += o.report.half;
      unacked_present += o.report.unacked_present;
      if (verbose) {
        std::printf("  %s %s k=%lld: faults=%lld calls ok=%d failed=%d %s\n",
                    faulty::kind_name(kind), run_name(run), static_cast<long long>(k),
                    static_cast<long long>(o.injected), o.calls_ok, o.calls_failed,
                    o.failures.empty() ? "ok" : "FAILED");
      }
      if (!o.failures.empty()) {
        failed_runs++;
        std::string all;
        for (const auto& f : o.failures) all += "\n  " + f;
        ADD_FAILURE() << "fault " << faulty::kind_name(kind) << " " << run_name(run) << " k=" << k
                      << " (faults returned: " << o.injected << "):" << all;
      }
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "faults sweep: kind=%s%s mode=%s calls=%lld k=1..%lld stride=%lld runs=%lld (with a fault "
      "returned: %lld) failed_runs=%lld | API calls ok=%lld failed=%lld | acked=%lld lost=%lld "
      "duplicated=%lld double_fired=%lld half=%lld (failed calls whose work is present: %lld) "
      "%.1f s\n",
      faulty::kind_name(kind), target == faulty::File::kDb ? " (database file, checkpoints)" : "",
      run_name(run), static_cast<long long>(range - 2), static_cast<long long>(range),
      static_cast<long long>(stride), static_cast<long long>(runs),
      static_cast<long long>(with_fault), static_cast<long long>(failed_runs),
      static_cast<long long>(calls_ok), static_cast<long long>(calls_failed),
      static_cast<long long>(acked), static_cast<long long>(lost),
      static_cast<long long>(duplicated), static_cast<long long>(double_fired),
      static_cast<long long>(half), static_cast<long long>(unacked_present), secs);
  std::fflush(stdout);
  if (with_fault == 0 && (fewest == 0 || calls <= 3)) {
    // A call that only a background checkpoint's timing brings before the
    // fault clears (calibration: fewest..calls of them) and that none of the
    // swept runs, retries included, happened to make.
    GTEST_SKIP() << "the workload makes " << fewest << ".." << calls << " "
                 << faulty::kind_name(kind) << " calls depending on timing, and none of the "
                 << runs << " swept runs made one before the fault cleared";
  }
  EXPECT_GT(with_fault, 0) << "the sweep never injected a fault of kind "
                           << faulty::kind_name(kind);
}

// Reruns one case in this process (no fork), e.g. under a debugger:
//   WF_FAULTS_REPRO="<kind>:<once|persistent|sticky>:<k>[:db[:<rounds>]]"
//   wf_faults_test --gtest_also_run_disabled_tests --gtest_filter='*Repro'
// ":db" counts the database file only, as the Checkpoint* tests do.
TEST(FaultSweep, DISABLED_Repro) {
  const char* spec = std::getenv("WF_FAULTS_REPRO");
  if (!spec || !*spec) GTEST_SKIP() << "set WF_FAULTS_REPRO=<kind>:<mode>:<k> to rerun one case";
  std::vector<std::string> part;
  std::istringstream in(spec);
  for (std::string p; std::getline(in, p, ':');) part.push_back(p);
  ASSERT_GE(part.size(), 3u) << "WF_FAULTS_REPRO=" << spec;
  Kind kind = Kind::kNone;
  for (Kind k : {Kind::kWrite, Kind::kSync, Kind::kTruncate, Kind::kLockBusy, Kind::kLockIoerr,
                 Kind::kShmLock})
    if (part[0] == faulty::kind_name(k)) kind = k;
  ASSERT_NE(kind, Kind::kNone) << "unknown kind " << part[0];
  Phase run = part[1] == "sticky"       ? Phase::kSticky
              : part[1] == "persistent" ? Phase::kPersistent
                                        : Phase::kOnce;
  faulty::File target = part.size() > 3 && part[3] == "db" ? faulty::File::kDb : faulty::File::kAny;
  int rounds = part.size() > 4               ? std::atoi(part[4].c_str())
               : target == faulty::File::kDb ? kCheckpointRounds
                                             : harness::env_int("WF_FAULTS_ROUNDS", 3);
  ASSERT_TRUE(faulty::register_vfs());
  faulty::set_real_sync(false);
  const std::string dir = harness::make_temp_dir("wf_faults");
  ASSERT_FALSE(dir.empty());
  Outcome o = run_once(dir, kind, run, std::atoll(part[2].c_str()), std::max(1, rounds), target,
                       nullptr, nullptr);
  if (o.failures.empty() || harness::env_int("WF_FAULTS_KEEP", 0) == 0) {
    harness::remove_dir(dir);
  } else {
    o.failures.push_back("files kept in " + dir);
  }
  std::printf("faults returned=%lld calls ok=%d failed=%d\n", static_cast<long long>(o.injected),
              o.calls_ok, o.calls_failed);
  for (const auto& f : o.failures) ADD_FAILURE() << f;
}

#define WF_SWEEP_TESTS(Name, kind)                                        \
  TEST(FaultSweep, Name##Once) { sweep(kind, Phase::kOnce); }             \
  TEST(FaultSweep, Name##Persistent) { sweep(kind, Phase::kPersistent); } \
  TEST(FaultSweep, Name##Sticky) { sweep(kind, Phase::kSticky); }

WF_SWEEP_TESTS(Write, Kind::kWrite)
WF_SWEEP_TESTS(Sync, Kind::kSync)
WF_SWEEP_TESTS(Truncate, Kind::kTruncate)
WF_SWEEP_TESTS(LockBusy, Kind::kLockBusy)
WF_SWEEP_TESTS(LockIoerr, Kind::kLockIoerr)
WF_SWEEP_TESTS(ShmLock, Kind::kShmLock)

// Checkpoints: a longer workload whose WAL passes checkpoint_pages (100 in
// kFaultyOptions) many times, so the engine's background checkpointer and the
// writer's catch-up copy into the database file while the engine runs; the
// faults hit the calls on the database file only (checkpoint writes, syncs,
// truncates).
#define WF_CHECKPOINT_TESTS(Name, kind)                                    \
  TEST(FaultSweep, Checkpoint##Name##Once) {                               \
    sweep(kind, Phase::kOnce, faulty::File::kDb, kCheckpointRounds);       \
  }                                                                        \
  TEST(FaultSweep, Checkpoint##Name##Persistent) {                         \
    sweep(kind, Phase::kPersistent, faulty::File::kDb, kCheckpointRounds); \
  }

WF_CHECKPOINT_TESTS(Write, Kind::kWrite)
WF_CHECKPOINT_TESTS(Sync, Kind::kSync)
WF_CHECKPOINT_TESTS(Truncate, Kind::kTruncate)

}  // namespace
