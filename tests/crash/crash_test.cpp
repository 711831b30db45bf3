// Kill -9 test: guarantee 4 ("kill -9 at any instant loses no accepted item"),
// for jobs, saga events and schedules.
//
// A child process (wf_crash_child) runs three workloads and logs each item only
// after the engine acknowledged it (WF_OK): keyed jobs delivered to a provider
// that logs each delivery; events of the saga in crash_saga.h, whose reducer
// appends each applied event id to its instance's state; one-shot schedules due
// within 200 ms whose job goes to a provider that logs "<job key> <job id>".
// The parent SIGKILLs it at random moments, checks PRAGMA integrity_check after
// every kill, starts the next child on the same file, and finally drains
// everything in this process. Then:
//  - every acknowledged job key has been delivered at least once;
//  - every acknowledged event is in its instance's state exactly once (none
//    lost, none applied twice), and each submitting thread's events to one
//    instance are applied in submission order;
//  - every acknowledged schedule has fired at its due time, exactly once: one
//    job "schedule:<key>@<due>", and only one job id for it (the same job
//    delivered again after a kill is an at-least-once redelivery, counted
//    apart; a second job id or a second due time is a double firing).
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
#include <utility>
#include <vector>

#include "crash_saga.h"
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

// The files the children write next to the database.
struct Logs {
  std::string ack, delivered, event_ack, sched_ack, sched_delivered;
};

pid_t spawn_child(const std::string& db, const Logs& logs, int number) {
  std::string num = std::to_string(number);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(WF_CRASH_CHILD_PATH, "wf_crash_child", db.c_str(), logs.ack.c_str(), num.c_str(),
            logs.delivered.c_str(), logs.event_ack.c_str(), logs.sched_ack.c_str(),
            logs.sched_delivered.c_str(), static_cast<char*>(nullptr));
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

// The final drain of schedule jobs: records "<job key> <job id>" like the
// children's "sched" provider does, then completes the job.
struct SchedSink {
  std::mutex mu;
  std::vector<std::string> lines;  // GUARDED_BY(mu)
  int complete_errors = 0;         // GUARDED_BY(mu)

  static void cb(void* user, wf_job* job) {
    auto* self = static_cast<SchedSink*>(user);
    std::string line = std::string(wf_job_key(job)) + " " + wf_job_id(job);
    int rc = wf_job_complete(job, nullptr);
    std::lock_guard<std::mutex> lock(self->mu);
    self->lines.push_back(std::move(line));
    if (rc != WF_OK) self->complete_errors++;
  }
};

int64_t json_int(const nlohmann::json& j, const char* a, const char* b) {
  if (!j.contains(a) || !j[a].is_object() || !j[a].contains(b) || !j[a][b].is_number_integer()) {
    return -1;
  }
  return j[a][b].get<int64_t>();
}

// Work left for the final drain according to wf_stats: outbox ready + running +
// scheduled, events not yet applied, schedules not yet fired; or -1 (with a
// failure). *raw receives the stats document.
int64_t pending_work(wf_engine* e, std::string* raw) {
  char* out = nullptr;
  int rc = wf_stats(e, nullptr, &out);
  if (rc != WF_OK) {
    ADD_FAILURE() << "wf_stats: " << wf_strerror(rc) << ": " << wf_last_error();
    return -1;
  }
  *raw = out;
  wf_free(out);
  nlohmann::json j = nlohmann::json::parse(*raw, nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "wf_stats is not JSON: " << *raw;
    return -1;
  }
  int64_t parts[] = {json_int(j, "outbox", "ready"), json_int(j, "outbox", "running"),
                     json_int(j, "outbox", "scheduled"), json_int(j, "events", "pending"),
                     json_int(j, "schedules", "pending")};
  int64_t sum = 0;
  for (int64_t p : parts) {
    if (p < 0) {
      ADD_FAILURE() << "wf_stats without outbox.ready/running/scheduled, events.pending or "
                       "schedules.pending: "
                    << *raw;
      return -1;
    }
    sum += p;
  }
  return sum;
}

// "<a> <b>" -> {a, b}; {line, ""} without a space.
std::pair<std::string, std::string> split2(const std::string& line) {
  size_t sp = line.find(' ');
  if (sp == std::string::npos) return {line, ""};
  return {line.substr(0, sp), line.substr(sp + 1)};
}

// ------------------------------------------------------------------ events

struct EventReport {
  size_t acked = 0;  // distinct acknowledged event ids
  size_t duplicate_ack_lines = 0;
  int64_t applied = 0;           // entries in all instance states
  int64_t lost = 0;              // acknowledged, not in its instance's state
  int64_t duplicated = 0;        // ids applied more than once (any instance)
  int64_t misrouted = 0;         // applied to an instance it was not sent to
  int64_t out_of_order = 0;      // a thread's events to one instance reordered
  int64_t version_mismatch = 0;  // instance version != number of applied events
  int64_t not_acked = 0;         // applied, acknowledgement lost with the child
  int64_t instances = 0;
  int64_t bad_instances = 0;  // pending or parked events, unreadable state
  std::vector<std::string> examples;
};

void note(std::vector<std::string>* ex, const std::string& s) {
  if (ex->size() < 20) ex->push_back(s);
}

// Reads every instance with wf_saga_get and compares with the ack log.
EventReport check_events(wf_engine* e, const std::string& event_ack) {
  EventReport r;
  std::map<std::string, std::string> acked;  // event id -> instance
  std::vector<std::string> lines = read_lines(event_ack);
  for (const auto& line : lines) {
    auto [id, inst] = split2(line);
    if (!acked.emplace(id, inst).second) r.duplicate_ack_lines++;
  }
  r.acked = acked.size();

  std::map<std::string, std::vector<std::string>> applied_to;  // event id -> instances
  for (int k = 0; k < crash::kSagaInstances; k++) {
    const std::string inst = crash::instance_id(k);
    char* out = nullptr;
    int rc = wf_saga_get(e, "", crash::kSagaName, inst.c_str(), &out);
    if (rc == WF_ENOTFOUND) continue;  // no event ever reached it
    if (rc != WF_OK) {
      ADD_FAILURE() << "wf_saga_get(" << inst << "): " << wf_strerror(rc) << ": "
                    << wf_last_error();
      r.bad_instances++;
      continue;
    }
    nlohmann::json doc = nlohmann::json::parse(out, nullptr, false);
    std::string raw = out;
    wf_free(out);
    r.instances++;
    if (doc.is_discarded() || !doc.contains("state") || !doc["state"].is_object() ||
        !doc["state"].contains("ids") || !doc["state"]["ids"].is_array()) {
      ADD_FAILURE() << "instance " << inst << " has an unexpected state: " << raw;
      r.bad_instances++;
      continue;
    }
    if (doc.value("pending", int64_t{-1}) != 0 || doc.value("parked", true)) {
      ADD_FAILURE() << "instance " << inst
                    << " still has pending or parked events: " << raw.substr(0, 300);
      r.bad_instances++;
    }
    const auto& ids = doc["state"]["ids"];
    if (doc.value("version", int64_t{-1}) != static_cast<int64_t>(ids.size())) {
      r.version_mismatch++;
      note(&r.examples, "instance " + inst + ": version " +
                            std::to_string(doc.value("version", int64_t{-1})) + " but " +
                            std::to_string(ids.size()) + " applied events");
    }
    // Events of one submitting thread ("c<child>-e<thread>-<n>") to this
    // instance were submitted one after the other: n must increase.
    std::map<std::string, long> last_n;
    for (const auto& v : ids) {
      std::string id = v.is_string() ? v.get<std::string>() : v.dump();
      r.applied++;
      applied_to[id].push_back(inst);
      size_t dash = id.rfind('-');
      if (dash == std::string::npos) continue;
      long n = std::atol(id.c_str() + dash + 1);
      auto [it, fresh] = last_n.emplace(id.substr(0, dash), n);
      if (!fresh) {
        if (n <= it->second) {
          r.out_of_order++;
          note(&r.examples,
               "instance " + inst + ": " + id + " applied after n=" + std::to_string(it->second));
        }
        it->second = n;
      }
    }
  }

  for (const auto& [id, insts] : applied_to) {
    if (insts.size() > 1) {
      r.duplicated++;
      std::string where;
      for (const auto& i : insts) where += " " + i;
      note(&r.examples,
           "applied " + std::to_string(insts.size()) + " times: " + id + " in" + where);
    }
    auto a = acked.find(id);
    if (a == acked.end()) {
      r.not_acked++;
    } else {
      for (const auto& i : insts) {
        if (i != a->second) {
          r.misrouted++;
          note(&r.examples, "misrouted: " + id + " sent to " + a->second + ", applied to " + i);
        }
      }
    }
  }
  for (const auto& [id, inst] : acked) {
    auto it = applied_to.find(id);
    if (it == applied_to.end() ||
        std::find(it->second.begin(), it->second.end(), inst) == it->second.end()) {
      r.lost++;
      note(&r.examples, "lost event: " + id + " (instance " + inst + ")");
    }
  }
  return r;
}

// --------------------------------------------------------------- schedules

struct ScheduleReport {
  size_t acked = 0;  // distinct acknowledged schedule keys
  size_t duplicate_ack_lines = 0;
  int64_t fired = 0;         // acknowledged schedules whose job was delivered
  int64_t lost = 0;          // acknowledged, no job "schedule:<key>@<due>" delivered
  int64_t double_fired = 0;  // two due times, or two job ids for one job key
  int64_t wrong_due = 0;     // fired at a due time other than the acknowledged one
  int64_t redelivered = 0;   // job keys delivered again with the same job id
  int64_t deliveries = 0;
  int64_t not_acked = 0;  // fired, acknowledgement lost with the child
  int64_t malformed = 0;  // delivered lines that are not "schedule:<key>@<due> <id>"
  std::vector<std::string> examples;
};

ScheduleReport check_schedules(const std::string& sched_ack, const std::string& sched_delivered,
                               const std::vector<std::string>& drained) {
  ScheduleReport r;
  std::map<std::string, std::string> acked;  // schedule key -> due ms
  for (const auto& line : read_lines(sched_ack)) {
    auto [key, due] = split2(line);
    if (!acked.emplace(key, due).second) r.duplicate_ack_lines++;
  }
  r.acked = acked.size();

  // schedule key -> due -> job id -> deliveries
  std::map<std::string, std::map<std::string, std::map<std::string, int>>> fired;
  std::vector<std::string> lines = read_lines(sched_delivered);
  lines.insert(lines.end(), drained.begin(), drained.end());
  const std::string prefix = "schedule:";
  for (const auto& line : lines) {
    r.deliveries++;
    auto [job_key, job_id] = split2(line);
    size_t at = job_key.rfind('@');
    if (job_key.compare(0, prefix.size(), prefix) != 0 || at == std::string::npos ||
        at < prefix.size() || job_id.empty()) {
      r.malformed++;
      note(&r.examples, "malformed schedule delivery: " + line);
      continue;
    }
    fired[job_key.substr(prefix.size(), at - prefix.size())][job_key.substr(at + 1)][job_id]++;
  }

  for (const auto& [key, dues] : fired) {
    size_t jobs = 0;
    for (const auto& [due, ids] : dues) {
      jobs += ids.size();
      for (const auto& [id, n] : ids) r.redelivered += n - 1;
    }
    if (jobs > 1) {
      r.double_fired++;
      std::string what;
      for (const auto& [due, ids] : dues) {
        for (const auto& [id, n] : ids) {
          what += " @" + due + " job " + id + " x" + std::to_string(n);
        }
      }
      note(&r.examples, "fired " + std::to_string(jobs) + " times: " + key + what);
    }
    auto a = acked.find(key);
    if (a == acked.end()) {
      r.not_acked++;
      continue;
    }
    if (dues.count(a->second) == 0 || dues.size() > 1) {
      r.wrong_due++;
      std::string at;
      for (const auto& d : dues) at += " " + d.first;
      note(&r.examples, "schedule " + key + " due " + a->second + " fired at" + at);
    }
  }
  for (const auto& [key, due] : acked) {
    auto it = fired.find(key);
    if (it == fired.end() || it->second.count(due) == 0) {
      r.lost++;
      note(&r.examples, "schedule never fired: " + key + " due " + due);
    } else {
      r.fired++;
    }
  }
  return r;
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
  const Logs logs{dir + "/ack.log", dir + "/delivered.log", dir + "/events_ack.log",
                  dir + "/schedules_ack.log", dir + "/schedules_delivered.log"};
  const std::string& ack = logs.ack;
  const std::string& delivered = logs.delivered;
  const auto t0 = Clock::now();

  int done_kills = 0;
  int torn = 0;
  for (int i = 0; i < kills; i++) {
    const off_t ack_before = std::max<off_t>(0, file_size(ack));
    pid_t pid = spawn_child(db, logs, i);
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

    for (const std::string* f :
         {&logs.ack, &logs.delivered, &logs.event_ack, &logs.sched_ack, &logs.sched_delivered}) {
      torn += truncate_torn_tail(*f) ? 1 : 0;
    }
    if (file_size(db) >= 0) {
      std::string ic = integrity_check(db);
      ASSERT_EQ(ic, "ok") << "PRAGMA integrity_check after kill " << done_kills;
    }
  }
  const auto t_kills = Clock::now();

  // Drain everything in this process: jobs, events still to apply, schedules
  // still to fire and the jobs they enqueue.
  Sink sink;
  SchedSink sched_sink;
  wf_engine* e = nullptr;
  ASSERT_EQ(wf_open(db.c_str(), "{\"durability\":\"full\",\"max_interruptions\":1000000}", &e),
            WF_OK)
      << wf_last_error();
  ASSERT_EQ(wf_effect_register(e, "sink", nullptr, &Sink::cb, &sink), WF_OK) << wf_last_error();
  ASSERT_EQ(wf_effect_register(e, crash::kSchedEffect, nullptr, &SchedSink::cb, &sched_sink), WF_OK)
      << wf_last_error();
  ASSERT_EQ(wf_saga_register(e, crash::kSagaName, crash::kSagaSpec, crash::saga_reducer, nullptr),
            WF_OK)
      << wf_last_error();
  ASSERT_EQ(wf_start(e), WF_OK) << wf_last_error();
  std::string final_stats;
  {
    const auto deadline = Clock::now() + std::chrono::seconds(300);
    std::unique_lock<std::mutex> lock(sink.mu);
    for (;;) {
      lock.unlock();
      int64_t pending = pending_work(e, &final_stats);
      lock.lock();
      if (pending <= 0) break;  // 0: drained; -1: failure already reported
      if (Clock::now() > deadline) {
        ADD_FAILURE() << "not drained within 300 s; last stats: " << final_stats;
        break;
      }
      sink.cv.wait_for(lock, milliseconds(50));
    }
  }
  const auto t_drained = Clock::now();
  EXPECT_EQ(wf_sync(e), WF_OK) << wf_last_error();
  const EventReport ev = check_events(e, logs.event_ack);
  std::string stats_after;
  pending_work(e, &stats_after);
  EXPECT_EQ(wf_close(e), WF_OK) << wf_last_error();
  EXPECT_EQ(integrity_check(db), "ok") << "after the final drain";
  {
    nlohmann::json st = nlohmann::json::parse(stats_after, nullptr, false);
    EXPECT_FALSE(st.is_discarded()) << stats_after;
    if (!st.is_discarded()) {
      EXPECT_EQ(st.value("dead", int64_t{-1}), 0) << "dead letters: " << stats_after;
      EXPECT_EQ(json_int(st, "sagas", "parked"), 0) << "parked saga events: " << stats_after;
      EXPECT_EQ(json_int(st, "events", "unmatched"), 0) << "events no saga took: " << stats_after;
    }
  }

  // Compare jobs.
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

  // Compare schedules.
  std::vector<std::string> sched_drained;
  {
    std::lock_guard<std::mutex> lock(sched_sink.mu);
    EXPECT_EQ(sched_sink.complete_errors, 0);
    sched_drained = sched_sink.lines;
  }
  const ScheduleReport sc = check_schedules(logs.sched_ack, logs.sched_delivered, sched_drained);

  const double kill_s = std::chrono::duration<double>(t_kills - t0).count();
  const double drain_s = std::chrono::duration<double>(t_drained - t_kills).count();
  const double total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "crash test: kills=%d jobs acked=%zu delivered=%lld lost=%lld redelivered=%lld "
      "(distinct delivered=%zu, delivered but not acked=%lld, duplicate ack lines=%zu, "
      "torn log lines=%d, final drain=%zu, %.1f s killing, %.1f s draining, %.1f s total)\n",
      done_kills, acked.size(), static_cast<long long>(delivered_total),
      static_cast<long long>(lost), static_cast<long long>(redelivered), deliveries.size(),
      static_cast<long long>(unacked), acked_lines.size() - acked.size(), torn, sink.seen.size(),
      kill_s, drain_s, total_s);
  std::printf(
      "crash test: events acked=%zu applied=%lld lost=%lld duplicated=%lld misrouted=%lld "
      "out_of_order=%lld (instances=%lld, applied but not acked=%lld, version mismatches=%lld, "
      "duplicate ack lines=%zu)\n",
      ev.acked, static_cast<long long>(ev.applied), static_cast<long long>(ev.lost),
      static_cast<long long>(ev.duplicated), static_cast<long long>(ev.misrouted),
      static_cast<long long>(ev.out_of_order), static_cast<long long>(ev.instances),
      static_cast<long long>(ev.not_acked), static_cast<long long>(ev.version_mismatch),
      ev.duplicate_ack_lines);
  std::printf(
      "crash test: schedules acked=%zu fired=%lld lost=%lld double_fired=%lld wrong_due=%lld "
      "redelivered=%lld (deliveries=%lld, fired but not acked=%lld, final drain=%zu, "
      "duplicate ack lines=%zu)\n",
      sc.acked, static_cast<long long>(sc.fired), static_cast<long long>(sc.lost),
      static_cast<long long>(sc.double_fired), static_cast<long long>(sc.wrong_due),
      static_cast<long long>(sc.redelivered), static_cast<long long>(sc.deliveries),
      static_cast<long long>(sc.not_acked), sched_drained.size(), sc.duplicate_ack_lines);
  std::fflush(stdout);
  for (const auto& k : lost_examples) std::printf("  lost job: %s\n", k.c_str());
  for (const auto& s : ev.examples) std::printf("  %s\n", s.c_str());
  for (const auto& s : sc.examples) std::printf("  %s\n", s.c_str());

  EXPECT_GE(done_kills, std::min(kills, 50));
  EXPECT_GT(acked.size(), 0u);
  EXPECT_EQ(acked_lines.size(), acked.size()) << "a key was acknowledged twice";
  EXPECT_EQ(lost, 0);

  EXPECT_GT(ev.acked, 0u);
  EXPECT_EQ(ev.duplicate_ack_lines, 0u) << "an event id was acknowledged twice";
  EXPECT_EQ(ev.lost, 0) << "acknowledged events missing from their saga state";
  EXPECT_EQ(ev.duplicated, 0) << "events applied more than once";
  EXPECT_EQ(ev.misrouted, 0) << "events applied to another instance";
  EXPECT_EQ(ev.out_of_order, 0) << "events of one instance applied out of submission order";
  EXPECT_EQ(ev.version_mismatch, 0) << "instance version differs from its applied events";
  EXPECT_EQ(ev.bad_instances, 0);

  EXPECT_GT(sc.acked, 0u);
  EXPECT_EQ(sc.duplicate_ack_lines, 0u) << "a schedule key was acknowledged twice";
  EXPECT_EQ(sc.lost, 0) << "acknowledged schedules that never fired";
  EXPECT_EQ(sc.double_fired, 0) << "schedules that fired more than once";
  EXPECT_EQ(sc.wrong_due, 0) << "schedules that fired at another due time";
  EXPECT_EQ(sc.malformed, 0);

  if (!::testing::Test::HasFailure() && env_int("WF_CRASH_KEEP", 0) == 0) {
    for (const char* f :
         {"/crash.db", "/crash.db-wal", "/crash.db-shm", "/crash.db-journal", "/ack.log",
          "/delivered.log", "/events_ack.log", "/schedules_ack.log", "/schedules_delivered.log"}) {
      ::unlink((dir + f).c_str());
    }
    ::rmdir(dir.c_str());
  } else {
    std::printf("crash test: files kept in %s\n", dir.c_str());
  }
}

}  // namespace
