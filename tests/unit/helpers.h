// Shared fixtures for the engine tests: temp databases, an injectable clock,
// a sink that records deliveries and lets tests wait on conditions (never on
// sleeps).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "wfengine.h"

namespace wft {

using json = nlohmann::json;

// Under the sanitizers a child of a multi-threaded fork cannot run an
// engine: TSan refuses to start threads there ("not supported. Dying") and
// ASan's allocator lock, held by another thread at the fork, hangs the
// child's first malloc. Tests whose child opens an engine skip there, and
// heavy tests scale their counts down.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
constexpr bool kSanitizer = true;
#else
constexpr bool kSanitizer = false;
#endif
#else
constexpr bool kSanitizer = false;
#endif

// The first column of the first row of `sql` on a read-only connection to
// `path` (-1 if it cannot be read).
inline int64_t count_rows(const std::string &path, const char *sql) {
  sqlite3 *db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

// The whole content of a file ("" if it cannot be read).
inline std::string slurp(const std::string &p) {
  std::string all;
  FILE *f = std::fopen(p.c_str(), "rb");
  if (!f) return all;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) all.append(buf, n);
  std::fclose(f);
  return all;
}

// A forked child opens the database at `path`, registers effect "x" with
// `policy_json`, enqueues `job_json` and starts; once the job is dispatched
// (the callback never completes it) the child is SIGKILLed and reaped.
inline void kill_child_mid_attempt(const std::string &path, const char *policy_json,
                                   const char *job_json) {
  int pipefd[2];
  ASSERT_EQ(0, pipe(pipefd));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipefd[0]);
    alarm(60);
    wf_engine *c = nullptr;
    if (wf_open(path.c_str(), nullptr, &c) != WF_OK) _exit(2);
    static int fd;
    fd = pipefd[1];
    wf_effect_register(
        c, "x", policy_json,
        [](void *, wf_job *) {
          if (write(fd, "d", 1) != 1) _exit(3);  // dispatched; never completes
        },
        nullptr);
    if (wf_enqueue(c, job_json, nullptr) != WF_OK) _exit(4);
    wf_start(c);
    pause();
    _exit(0);
  }
  close(pipefd[1]);
  char b;
  ASSERT_EQ(1, read(pipefd[0], &b, 1));
  close(pipefd[0]);
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
}

inline std::string temp_dir() {
  char tmpl[] = "/tmp/wftest-XXXXXX";
  char *d = mkdtemp(tmpl);
  if (!d) abort();
  return d;
}

struct ManualClock {
  std::atomic<int64_t> now{1700000000000};
  static int64_t fn(void *u) { return static_cast<ManualClock *>(u)->now.load(); }
};

// Records log lines (a wf_log_fn with `this` as user).
struct LogCapture {
  std::mutex mu;
  std::vector<std::string> lines;
  static void fn(void *u, int, const char *line) {
    auto *l = static_cast<LogCapture *>(u);
    std::lock_guard<std::mutex> g(l->mu);
    l->lines.emplace_back(line);
  }
  std::vector<std::string> snapshot() {
    std::lock_guard<std::mutex> g(mu);
    return lines;
  }
  // Lines whose "msg" is `msg`.
  size_t count(const std::string &msg) {
    size_t n = 0;
    for (auto &l : snapshot()) n += json::parse(l)["msg"] == msg;
    return n;
  }
};

// Records deliveries; each job is handled by `handler` (default: complete).
struct Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<json> seen;  // {"id","key","tenant","effect","attempt","payload"}
  std::vector<wf_job *> held;
  std::function<void(wf_job *)> handler;

  static void cb(void *user, wf_job *j) {
    auto *s = static_cast<Sink *>(user);
    s->entered.fetch_add(1);
    size_t len;
    const char *p = wf_job_payload(j, &len);
    json rec{{"id", wf_job_id(j)},
             {"key", wf_job_key(j)},
             {"tenant", wf_job_tenant(j)},
             {"effect", wf_job_effect(j)},
             {"attempt", wf_job_attempt(j)},
             {"payload", json::parse(std::string(p, len))},
             {"metadata", json::parse(wf_job_metadata(j))}};
    std::function<void(wf_job *)> h;
    {
      std::lock_guard<std::mutex> g(s->mu);
      s->seen.push_back(rec);
      h = s->handler;
    }
    if (h)
      h(j);
    else
      EXPECT_EQ(WF_OK, wf_job_complete(j, nullptr));
    std::lock_guard<std::mutex> g(s->mu);
    s->handled++;
    s->cv.notify_all();
  }
  size_t handled = 0;              // callbacks that returned
  std::atomic<size_t> entered{0};  // callbacks that started
  // A test's last step may observe a job (held, seen) while the loop thread is
  // still in the tail of cb: a Sink on the test's stack must not go away
  // before every callback that started has returned.
  ~Sink() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait_for(lk, std::chrono::seconds(10), [&] { return handled >= entered.load(); });
  }
  void hold(wf_job *j) {
    std::lock_guard<std::mutex> g(mu);
    held.push_back(j);
    cv.notify_all();
  }
  size_t count() {
    std::lock_guard<std::mutex> g(mu);
    return seen.size();
  }
  bool wait(const std::function<bool()> &pred, int ms = 10000) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, std::chrono::milliseconds(ms), pred);
  }
  // Waits until n callbacks have returned (their outcome is reported).
  bool wait_count(size_t n, int ms = 10000) {
    return wait([&] { return handled >= n; }, ms);
  }
};

class EngineTest : public ::testing::Test {
 protected:
  std::string dir, path;
  wf_engine *e = nullptr;
  ManualClock clock;

  void SetUp() override {
    dir = temp_dir();
    path = dir + "/t.db";
  }
  void TearDown() override {
    if (e) {
      EXPECT_EQ(WF_OK, wf_close(e));
    }
    e = nullptr;
    std::string cmd = "rm -rf '" + dir + "'";
    if (system(cmd.c_str()) != 0) ADD_FAILURE() << "cleanup failed";
  }
  void open(const char *opts = "{\"durability\":\"normal\"}", bool manual_clock = true) {
    ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts, &e)) << wf_last_error();
    if (manual_clock) {
      ASSERT_EQ(WF_OK, wf_set_clock(e, ManualClock::fn, &clock));
    }
  }
  std::string enqueue(const json &job, int expect = WF_OK) {
    char *id = nullptr;
    int rc = wf_enqueue(e, job.dump().c_str(), &id);
    EXPECT_EQ(expect, rc) << wf_last_error();
    std::string s = id ? id : "";
    wf_free(id);
    return s;
  }
  json stats(const char *filter = nullptr) {
    char *out = nullptr;
    EXPECT_EQ(WF_OK, wf_stats(e, filter, &out)) << wf_last_error();
    json j = json::parse(out);
    wf_free(out);
    return j;
  }
  json dead(const char *filter = nullptr) {
    char *out = nullptr;
    EXPECT_EQ(WF_OK, wf_dead_list(e, filter, &out)) << wf_last_error();
    json j = json::parse(out);
    wf_free(out);
    return j;
  }
  int64_t pending() {
    json s = stats();
    return s["outbox"]["ready"].get<int64_t>() + s["outbox"]["scheduled"].get<int64_t>() +
           s["outbox"]["running"].get<int64_t>();
  }
  void advance(int64_t ms) {
    clock.now += ms;
    ASSERT_EQ(WF_OK, wf_wake(e));
  }
  // All outcomes reported so far are committed.
  void sync() { ASSERT_EQ(WF_OK, wf_sync(e)) << wf_last_error(); }
};

}  // namespace wft
