// Pieces both benchmark programs share: options, time, formatting, the fatal
// exit path (partial results, temp dir removed) and the hang watchdog.
// Header-only; each bench is one translation unit that sets g_prog first.
#pragma once

#include <sys/resource.h>
#include <wfengine.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

namespace wfb {

using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

// wf_open options: {"durability":"full"}, or $WF_BENCH_OPTIONS (a JSON
// document, e.g. to compare checkpoint_pages settings).
inline const char *open_options() {
  const char *env = std::getenv("WF_BENCH_OPTIONS");
  return env && *env ? env : "{\"durability\":\"full\"}";
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

__attribute__((format(printf, 1, 2))) inline std::string strf(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return {};
  if (size_t(n) < sizeof buf) return std::string(buf, size_t(n));
  std::string s(size_t(n) + 1, '\0');
  va_start(ap, fmt);
  std::vsnprintf(s.data(), s.size(), fmt, ap);
  va_end(ap);
  s.resize(size_t(n));
  return s;
}

// User + system CPU time of this process.
inline double cpu_seconds() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// --------------------------------------------------- global state, failure

inline const char *g_prog = "wf_bench";  // set by main
inline std::string g_tmpdir;             // removed at exit, also on failure
inline std::mutex g_results_mu;
inline json g_results;  // every figure; also dumped (partial) on failure
inline std::atomic<bool> g_dying{false};

inline void remove_tmpdir() {
  if (g_tmpdir.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(g_tmpdir, ec);
}

// Reports a fatal problem with what was measured so far, removes the temp dir
// and exits at once (engine threads may be stuck, so no destructors run).
[[noreturn]] inline void die(const std::string &msg) {
  if (g_dying.exchange(true)) {
    // Another thread is already reporting; let it finish.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::fflush(stdout);
  std::fprintf(stderr, "\n%s: FATAL: %s\n", g_prog, msg.c_str());
  {
    std::unique_lock<std::mutex> lk(g_results_mu, std::try_to_lock);
    if (lk.owns_lock() && !g_results.empty()) {
      g_results["error"] = msg;
      std::fprintf(stderr, "%s: partial results: %s\n", g_prog, g_results.dump().c_str());
    }
  }
  remove_tmpdir();
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(1);
}

inline void wf_check(int rc, const char *what) {
  // wf_last_error() is thread-local: read it here, on the failing thread.
  if (rc != WF_OK) die(strf("%s failed: %d (%s): %s", what, rc, wf_strerror(rc), wf_last_error()));
}

// A step that outlives its budget is reported as a hang (the engine or the
// disk is stuck) and the process exits.
class Watchdog {
 public:
  Watchdog() : thread_([this] { run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog &) = delete;
  Watchdog &operator=(const Watchdog &) = delete;
  void arm(const std::string &step, double seconds) {
    std::lock_guard<std::mutex> lk(mu_);
    step_ = step;
    armed_ = true;
    ++gen_;
    deadline_ = Clock::now() + std::chrono::milliseconds(int64_t(seconds * 1000));
    cv_.notify_all();
  }
  void disarm() {
    std::lock_guard<std::mutex> lk(mu_);
    armed_ = false;
    cv_.notify_all();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_) {
      if (!armed_) {
        cv_.wait(lk);
        continue;
      }
      uint64_t gen = gen_;
      if (cv_.wait_until(lk, deadline_) == std::cv_status::timeout && armed_ && !stop_ &&
          gen == gen_) {
        std::string step = step_;
        lk.unlock();
        die(strf("step '%s' did not finish within its time budget (hang?)", step.c_str()));
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::string step_;
  bool armed_ = false, stop_ = false;
  uint64_t gen_ = 0;
  Clock::time_point deadline_{};
  std::thread thread_;
};

inline Watchdog *g_watchdog = nullptr;

// Arms the watchdog for the lifetime of the object.
struct Step {
  Step(const std::string &name, double budget_s) { g_watchdog->arm(name, budget_s); }
  ~Step() { g_watchdog->disarm(); }
  Step(const Step &) = delete;
  Step &operator=(const Step &) = delete;
};

}  // namespace wfb
