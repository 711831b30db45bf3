// Kill -9 test: guarantee 4 ("kill -9 at any instant loses no accepted item").
//
// A child process (wf_crash_child) enqueues from several threads and logs each
// key only after wf_enqueue returned WF_OK, while its relay delivers jobs to a
// provider that logs each delivery. The parent SIGKILLs it at random moments,
// checks PRAGMA integrity_check after every kill, starts the next child on the
// same file, and finally drains everything in this process. Every acknowledged
// key must have been delivered at least once.
//
// Knobs (environment): WF_CRASH_KILLS (default 60), WF_CRASH_SEED (default
// random, printed), WF_CRASH_KEEP=1 keeps the temporary directory.

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "wfengine.h"

#ifndef WF_CRASH_CHILD_PATH
#error "WF_CRASH_CHILD_PATH must name the wf_crash_child executable"
#endif

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  return (v && *v) ? std::atoi(v) : def;
}

off_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A write cut short by SIGKILL leaves a line without '\n'. Cut it off so the
// next child's first line does not glue onto it. Returns whether it did.
bool truncate_torn_tail(const std::string& path) {
  std::string s = read_file(path);
  if (s.empty() || s.back() == '\n') return false;
  size_t keep = s.rfind('\n');
  keep = keep == std::string::npos ? 0 : keep + 1;
  EXPECT_EQ(::truncate(path.c_str(), static_cast<off_t>(keep)), 0) << path;
  return true;
}

// Complete lines only: a last line without '\n' is torn and ignored.
std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::string s = read_file(path);
  size_t start = 0;
  for (size_t nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1) {
    if (nl > start) lines.emplace_back(s.substr(start, nl - start));
  }
  return lines;
}

// Runs PRAGMA integrity_check with plain SQLite; returns its rows joined.
std::string integrity_check(const std::string& db) {
  sqlite3* conn = nullptr;
  int rc = sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READWRITE, nullptr);
  if (rc != SQLITE_OK) {
    std::string err = std::string("open failed: ") + (conn ? sqlite3_errmsg(conn) : "?");
    sqlite3_close(conn);
    return err;
  }
  sqlite3_busy_timeout(conn, 10000);
  sqlite3_stmt* st = nullptr;
  std::string out;
  rc = sqlite3_prepare_v2(conn, "PRAGMA integrity_check", -1, &st, nullptr);
  if (rc != SQLITE_OK) {
    out = std::string("prepare failed: ") + sqlite3_errmsg(conn);
  } else {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      if (!out.empty()) out += "\n";
      out += t ? reinterpret_cast<const char*>(t) : "(null)";
    }
    if (rc != SQLITE_DONE) out += std::string("\nstep failed: ") + sqlite3_errmsg(conn);
  }
  sqlite3_finalize(st);
  sqlite3_close(conn);
  return out;
}

pid_t spawn_child(const std::string& db, const std::string& ack, const std::string& delivered,
                  int number) {
  std::string num = std::to_string(number);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(WF_CRASH_CHILD_PATH, "wf_crash_child", db.c_str(), ack.c_str(), num.c_str(),
            delivered.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// The final drain: records every delivered key and completes the job.
struct Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, int> seen;  // GUARDED_BY(mu)
  int complete_errors = 0;          // GUARDED_BY(mu)

  static void cb(void* user, wf_job* job) {
    auto* self = static_cast<Sink*>(user);
    std::string key = wf_job_key(job);
    int rc = wf_job_complete(job, nullptr);
    std::lock_guard<std::mutex> lock(self->mu);
    self->seen[key]++;
    if (rc != WF_OK) self->complete_errors++;
    self->cv.notify_all();
  }
};

// outbox.ready + running + scheduled from wf_stats, or -1 (with a failure).
int64_t pending_jobs(wf_engine* e, std::string* raw) {
  char* out = nullptr;
  int rc = wf_stats(e, nullptr, &out);
  if (rc != WF_OK) {
    ADD_FAILURE() << "wf_stats: " << wf_strerror(rc) << ": " << wf_last_error();
    return -1;
  }
  *raw = out;
  wf_free(out);
  nlohmann::json j = nlohmann::json::parse(*raw, nullptr, false);
  if (j.is_discarded() || !j.contains("outbox") || !j["outbox"].is_object() ||
      !j["outbox"].contains("ready") || !j["outbox"].contains("running")) {
    ADD_FAILURE() << "wf_stats without outbox.ready/running: " << *raw;
    return -1;
  }
  const auto& o = j["outbox"];
  return o["ready"].get<int64_t>() + o["running"].get<int64_t>() +
         o.value("scheduled", static_cast<int64_t>(0));
}

TEST(CrashTest, KillNinePreservesAckedJobs) {
  const int kills = std::max(1, env_int("WF_CRASH_KILLS", 60));
  const unsigned seed = static_cast<unsigned>(env_int("WF_CRASH_SEED", 0)) != 0
                            ? static_cast<unsigned>(env_int("WF_CRASH_SEED", 0))
                            : std::random_device{}();
  std::printf("crash test: seed=%u (set WF_CRASH_SEED to replay), kills=%d\n", seed, kills);
  std::fflush(stdout);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(20, 300);

  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/wf_crash_XXXXXX";
  std::vector<char> dirbuf(tmpl.begin(), tmpl.end());
  dirbuf.push_back('\0');
  ASSERT_NE(::mkdtemp(dirbuf.data()), nullptr);
  const std::string dir = dirbuf.data();
  const std::string db = dir + "/crash.db";
  const std::string ack = dir + "/ack.log";
  const std::string delivered = dir + "/delivered.log";
  const auto t0 = Clock::now();

  int done_kills = 0;
  int torn = 0;
  for (int i = 0; i < kills; i++) {
    const off_t ack_before = std::max<off_t>(0, file_size(ack));
    pid_t pid = spawn_child(db, ack, delivered, i);
    ASSERT_GT(pid, 0) << "fork failed";

    // The first child (and every other one) must have acknowledged a job before
    // it dies, so the test always has something to lose; the others are killed
    // counting from their start, which may hit open/recovery.
    if (i == 0 || i % 2 == 1) {
      const auto deadline = Clock::now() + std::chrono::seconds(30);
      int status = 0;
      while (file_size(ack) <= ack_before) {
        pid_t w = ::waitpid(pid, &status, WNOHANG);
        ASSERT_EQ(w, 0) << "child " << i
                        << " died before acknowledging a job: " << describe_status(status);
        if (Clock::now() > deadline) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, &status, 0);
          FAIL() << "child " << i << " acknowledged no job within 30 s";
        }
        std::this_thread::sleep_for(milliseconds(1));
      }
    }
    std::this_thread::sleep_for(milliseconds(delay_ms(rng)));

    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child " << i << " was not killed by us: " << describe_status(status);
    done_kills++;

    torn += truncate_torn_tail(ack) ? 1 : 0;
    torn += truncate_torn_tail(delivered) ? 1 : 0;
    if (file_size(db) >= 0) {
      std::string ic = integrity_check(db);
      ASSERT_EQ(ic, "ok") << "PRAGMA integrity_check after kill " << done_kills;
    }
  }
  const auto t_kills = Clock::now();

  // Drain everything in this process.
  Sink sink;
  wf_engine* e = nullptr;
  ASSERT_EQ(wf_open(db.c_str(), "{\"durability\":\"full\"}", &e), WF_OK) << wf_last_error();
  ASSERT_EQ(wf_effect_register(e, "sink", nullptr, &Sink::cb, &sink), WF_OK) << wf_last_error();
  ASSERT_EQ(wf_start(e), WF_OK) << wf_last_error();
  {
    const auto deadline = Clock::now() + std::chrono::seconds(300);
    std::string raw;
    std::unique_lock<std::mutex> lock(sink.mu);
    for (;;) {
      lock.unlock();
      int64_t pending = pending_jobs(e, &raw);
      lock.lock();
      if (pending <= 0) break;  // 0: drained; -1: failure already reported
      if (Clock::now() > deadline) {
        ADD_FAILURE() << "outbox not drained within 300 s; last stats: " << raw;
        break;
      }
      sink.cv.wait_for(lock, milliseconds(50));
    }
  }
  EXPECT_EQ(wf_close(e), WF_OK) << wf_last_error();
  EXPECT_EQ(integrity_check(db), "ok") << "after the final drain";

  // Compare.
  std::vector<std::string> acked_lines = read_lines(ack);
  std::set<std::string> acked(acked_lines.begin(), acked_lines.end());
  std::map<std::string, int> deliveries;  // key -> times delivered
  int64_t delivered_total = 0;
  for (const auto& k : read_lines(delivered)) {
    deliveries[k]++;
    delivered_total++;
  }
  {
    std::lock_guard<std::mutex> lock(sink.mu);
    EXPECT_EQ(sink.complete_errors, 0);
    for (const auto& [k, n] : sink.seen) {
      deliveries[k] += n;
      delivered_total += n;
    }
  }
  int64_t lost = 0, redelivered = 0, unacked = 0;
  std::vector<std::string> lost_examples;
  for (const auto& k : acked) {
    auto it = deliveries.find(k);
    if (it == deliveries.end()) {
      lost++;
      if (lost_examples.size() < 20) lost_examples.push_back(k);
    }
  }
  for (const auto& [k, n] : deliveries) {
    if (n > 1) redelivered++;
    if (!acked.count(k)) unacked++;
  }

  const double kill_s = std::chrono::duration<double>(t_kills - t0).count();
  const double total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "crash test: kills=%d acked=%zu delivered=%lld lost=%lld redelivered=%lld "
      "(distinct delivered=%zu, delivered but not acked=%lld, duplicate ack lines=%zu, "
      "torn log lines=%d, final drain=%zu, %.1f s killing, %.1f s total)\n",
      done_kills, acked.size(), static_cast<long long>(delivered_total),
      static_cast<long long>(lost), static_cast<long long>(redelivered), deliveries.size(),
      static_cast<long long>(unacked), acked_lines.size() - acked.size(), torn, sink.seen.size(),
      kill_s, total_s);
  std::fflush(stdout);
  for (const auto& k : lost_examples) std::printf("  lost: %s\n", k.c_str());

  EXPECT_GE(done_kills, std::min(kills, 50));
  EXPECT_GT(acked.size(), 0u);
  EXPECT_EQ(acked_lines.size(), acked.size()) << "a key was acknowledged twice";
  EXPECT_EQ(lost, 0);

  if (!::testing::Test::HasFailure() && env_int("WF_CRASH_KEEP", 0) == 0) {
    for (const char* f : {"/crash.db", "/crash.db-wal", "/crash.db-shm", "/crash.db-journal",
                          "/ack.log", "/delivered.log"}) {
      ::unlink((dir + f).c_str());
    }
    ::rmdir(dir.c_str());
  } else {
    std::printf("crash test: files kept in %s\n", dir.c_str());
  }
}

}  // namespace
