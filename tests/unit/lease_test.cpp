// Leases and job handles (issue 8, items 1-4 and 13): liveness of other
// engines across PID namespaces, stale handles after a lost lease, handles
// held past their timeout, jobs that crash their process, clock steps.
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <thread>

#include "helpers.h"

using namespace wft;

namespace {

// Polls `pred` until it holds or `ms` pass (for conditions nothing signals).
template <typename F>
bool eventually(F &&pred, int ms = 20000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// Rows of a read-only query, through a host transaction.
json query(wf_engine *e, const char *sql) {
  wf_tx *t = nullptr;
  EXPECT_EQ(WF_OK, wf_tx_begin(e, &t)) << wf_last_error();
  if (!t) return json::array();
  char *rows = nullptr;
  EXPECT_EQ(WF_OK, wf_tx_exec(t, sql, nullptr, &rows)) << wf_last_error();
  json out = rows ? json::parse(rows) : json::array();
  wf_free(rows);
  EXPECT_EQ(WF_OK, wf_tx_rollback(t));
  return out;
}

json stats_of(wf_engine *e) {
  char *out = nullptr;
  EXPECT_EQ(WF_OK, wf_stats(e, nullptr, &out)) << wf_last_error();
  json j = out ? json::parse(out) : json::object();
  wf_free(out);
  return j;
}

}  // namespace

// ----------------------------------------------------- 1. liveness

// Helper run by LeaseTest.EngineInAnotherPidNamespaceDoesNotRecoverALiveJob
// under `unshare -p -f`: opens the database, reports what it saw, closes.
TEST(LeaseChild, DISABLED_OpenAndReport) {
  const char *db = getenv("WF_LEASE_CHILD_DB");
  const char *out = getenv("WF_LEASE_CHILD_OUT");
  const char *ppid = getenv("WF_LEASE_CHILD_PID");
  if (!db || !out || !ppid) GTEST_SKIP() << "helper process of the PID namespace test only";
  json rep;
  pid_t other = static_cast<pid_t>(atol(ppid));
  rep["kill_says_gone"] = kill(other, 0) != 0 && errno == ESRCH;
  rep["pid"] = getpid();
  wf_engine *c = nullptr;
  ASSERT_EQ(WF_OK, wf_open(db, "{\"durability\":\"normal\"}", &c)) << wf_last_error();
  json s = stats_of(c);
  rep["running"] = s["outbox"]["running"];
  rep["ready"] = s["outbox"]["ready"];
  ASSERT_EQ(WF_OK, wf_close(c));
  std::ofstream(out) << rep.dump();
}

// Two containers sharing a hostname and a volume but not a PID namespace:
// kill(pid, 0) cannot see the other engine, the liveness lock can.
TEST_F(EngineTest, EngineInAnotherPidNamespaceDoesNotRecoverALiveJob) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create a PID namespace (unshare -p)";
  if (system("unshare -p -f true >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "unshare -p -f is not available or not permitted here";
  char exe[PATH_MAX] = {0};
  ASSERT_GT(readlink("/proc/self/exe", exe, sizeof exe - 1), 0);
  open("{\"durability\":\"normal\"}", false);
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  sync();
  std::string out = dir + "/child.json";
  std::string cmd =
      "WF_LEASE_CHILD_DB='" + path + "' WF_LEASE_CHILD_OUT='" + out +
      "' WF_LEASE_CHILD_PID=" + std::to_string(getpid()) + " unshare -p -f '" + exe +
      "' --gtest_also_run_disabled_tests --gtest_filter=LeaseChild.DISABLED_OpenAndReport >'" +
      dir + "/child.log' 2>&1";
  int rc = system(cmd.c_str());
  std::string child_log;
  {
    std::ifstream lf(dir + "/child.log");
    child_log.assign(std::istreambuf_iterator<char>(lf), std::istreambuf_iterator<char>());
  }
  ASSERT_EQ(0, rc) << child_log;
  std::ifstream in(out);
  json rep = json::parse(in);
  // The case is real: from inside the namespace our pid looks gone.
  EXPECT_TRUE(rep["kill_says_gone"].get<bool>()) << rep.dump();
  EXPECT_EQ(1, rep["running"]) << rep.dump();
  EXPECT_EQ(0, rep["ready"]) << rep.dump();
  sync();
  EXPECT_EQ(1, stats()["outbox"]["running"]);
  EXPECT_EQ(1u, s.count());
  EXPECT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr)) << wf_last_error();
  sync();
  EXPECT_EQ(0, pending());
}

// Two engines of one process on one file hold different lock slots and see
// each other alive.
TEST_F(EngineTest, EnginesInOneProcessSeeEachOtherAlive) {
  open("{\"durability\":\"normal\"}", false);
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  sync();
  wf_engine *e2 = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\"}", &e2));
  EXPECT_EQ(1, stats_of(e2)["outbox"]["running"]);
  json slots = query(e, "SELECT lock_slot FROM wf_boots ORDER BY lock_slot");
  ASSERT_EQ(2u, slots.size()) << slots.dump();
  EXPECT_NE(slots[0]["lock_slot"], slots[1]["lock_slot"]);
  EXPECT_FALSE(slots[0]["lock_slot"].is_null());
  ASSERT_EQ(WF_OK, wf_close(e2));
  EXPECT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr));
}

// A really dead engine (SIGKILLed) releases its lock: its job is recovered
// at once on open, long before its lease (30 s) or heartbeat would expire.
TEST_F(EngineTest, KilledEnginesJobIsRecoveredAtOnce) {
  kill_child_mid_attempt(path, nullptr, "{\"effect\":\"x\"}");
  open("{\"durability\":\"normal\"}", false);
  json s = stats();
  EXPECT_EQ(1, s["outbox"]["ready"]) << s.dump();
  EXPECT_EQ(0, s["outbox"]["running"]);
  json boots = query(e, "SELECT count(*) AS n FROM wf_boots");
  EXPECT_EQ(1, boots[0]["n"]);  // only ours
}

// ----------------------------------------------- 2. stale handles

// Another engine reclaims this engine's lease (its clock is a day ahead,
// like after a stall or a clock step) and the job becomes ready again while
// the provider still holds the first handle: the job is never dispatched
// twice at once here, and the first handle's completion is WF_ESTATE.
TEST_F(EngineTest, ReclaimedLeaseMakesTheHeldHandleStale) {
  // The other engine may reclaim more than once before it is closed: keep
  // those interruptions from dead-lettering the job.
  open("{\"durability\":\"normal\",\"poll_ms\":10,\"max_interruptions\":1000}", false);
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}, {"key", "once"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  wf_job *first = s.held[0];
  wf_engine *other = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\",\"lease_ms\":300}", &other));
  // A running clock a day ahead of ours.
  wf_clock_fn ahead = [](void *) -> int64_t {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count() +
           86400000;
  };
  ASSERT_EQ(WF_OK, wf_set_clock(other, ahead, nullptr));
  ASSERT_EQ(WF_OK, wf_start(other));  // renews after 100 ms: reclaims our lease
  ASSERT_TRUE(eventually([&] { return s.count() >= 2 || stats()["engine"]["leases_lost"] >= 1; }))
      << stats().dump();
  ASSERT_EQ(WF_OK, wf_close(other));
  EXPECT_EQ(1u, s.count()) << "dispatched again while the first handle is held";
  EXPECT_EQ(1, stats()["engine"]["held_stale"]);
  EXPECT_EQ(WF_ESTATE, wf_job_complete(first, nullptr));
  EXPECT_NE(std::string(wf_last_error()).find("lease"), std::string::npos) << wf_last_error();
  // The next attempt runs once the host let go of the first.
  ASSERT_TRUE(s.wait([&] { return s.held.size() >= 2; }));
  EXPECT_EQ(WF_OK, wf_job_complete(s.held.back(), nullptr)) << wf_last_error();
  sync();
  ASSERT_TRUE(eventually([&] { return pending() == 0; }));
  EXPECT_EQ(0, stats()["engine"]["held_stale"]);
}

// A handle the host still holds when the engine is closed stays valid memory;
// completing it afterwards returns WF_ESTATE and frees it.
TEST_F(EngineTest, HandleCompletedAfterCloseReturnsEstate) {
  open("{\"durability\":\"normal\",\"drain_timeout_ms\":10}");
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}, {"key", "k1"}, {"payload", {{"a", 1}}}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  wf_job *j = s.held[0];
  EXPECT_STREQ("k1", wf_job_key(j));  // still valid memory
  EXPECT_EQ(WF_ESTATE, wf_job_complete(j, "{\"ok\":true}"));
  EXPECT_NE(std::string(wf_last_error()).find("closed"), std::string::npos) << wf_last_error();
  open();
  EXPECT_EQ(1, stats()["outbox"]["ready"]);  // returned to the queue by close
}

// --------------------------------------- 3. held after timeout: bounded

TEST_F(EngineTest, HandleHeldPastTimeoutIsAbandonedAfterGrace) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x",
                                      "{\"timeout_ms\":100,\"abandon_after_ms\":300,"
                                      "\"backoff\":{\"base_ms\":0,\"jitter\":\"none\"}}",
                                      Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}, {"key", "stuck"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  ASSERT_TRUE(eventually([&] { return stats()["engine"]["timeouts"] == 1; }));
  EXPECT_EQ(1, stats()["engine"]["held_stale"]);
  // The next attempt is claimed but waits for the held handle, then gives up.
  ASSERT_TRUE(eventually([&] { return dead().size() == 1; })) << stats().dump();
  json d = dead()[0];
  EXPECT_EQ(0u, d["reason"].get<std::string>().find("abandoned")) << d.dump();
  EXPECT_EQ(1u, s.count());  // never twice at once
  EXPECT_EQ(1, stats()["engine"]["abandoned"]);
  char *m = nullptr;
  ASSERT_EQ(WF_OK, wf_metrics(e, &m));
  EXPECT_NE(std::string(m).find("wfengine_held_stale_handles 1"), std::string::npos);
  wf_free(m);
  // wf_drain does not report success while the host holds a handle.
  EXPECT_EQ(WF_ETIMEDOUT, wf_drain(e, 50));
  EXPECT_NE(std::string(wf_last_error()).find("1 job handles still held"), std::string::npos)
      << wf_last_error();
  EXPECT_EQ(WF_ESTATE, wf_job_complete(s.held[0], nullptr));
  ASSERT_TRUE(eventually([&] { return stats()["engine"]["held_stale"] == 0; }));
  EXPECT_EQ(WF_OK, wf_drain(e, 10000)) << wf_last_error();
}

// Default: the next attempt waits for the held handle and runs when it is
// released (within the grace).
TEST_F(EngineTest, NextAttemptWaitsForAHeldHandleWithinTheGrace) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) {
    if (wf_job_attempt(j) == 1)
      s.hold(j);
    else
      EXPECT_EQ(WF_OK, wf_job_complete(j, nullptr));
  };
  ASSERT_EQ(WF_OK,
            wf_effect_register(
                e, "x", "{\"timeout_ms\":100,\"backoff\":{\"base_ms\":0,\"jitter\":\"none\"}}",
                Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  ASSERT_TRUE(eventually([&] { return stats()["engine"]["timeouts"] == 1; }));
  sync();
  sync();
  EXPECT_EQ(1u, s.count());
  EXPECT_EQ(WF_ESTATE, wf_job_complete(s.held[0], nullptr));
  ASSERT_TRUE(s.wait_count(2));
  EXPECT_EQ(2, s.seen[1]["attempt"]);
  sync();
  EXPECT_EQ(0, pending());
  EXPECT_EQ(0u, dead().size());
}

// ------------------------------------------------------ 4. poison pills

// A job whose provider kills its process: each open recovers it (counting
// the interruption); after max_interruptions it is a dead letter instead of
// crashing the next process too.
// A graceful wf_close that cuts an attempt off (drain timeout) records it as
// interrupted but does not count it: a job held across several planned
// restarts (a rolling deploy) is not a poison pill.
TEST_F(EngineTest, GracefulCloseDoesNotCountAsAnInterruption) {
  const char *opts = "{\"durability\":\"normal\",\"max_interruptions\":1,\"drain_timeout_ms\":50}";
  for (int round = 0; round < 3; ++round) {
    Sink s;
    s.handler = [&](wf_job *j) { s.hold(j); };
    open(opts, false);
    ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
    ASSERT_EQ(WF_OK, wf_start(e));
    if (round == 0) enqueue({{"effect", "x"}, {"key", "long"}});
    ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; })) << "round " << round;
    ASSERT_EQ(WF_OK, wf_close(e));
    e = nullptr;
    EXPECT_EQ(WF_ESTATE, wf_job_complete(s.held[0], nullptr));  // frees the handle
  }
  Sink done;
  open(opts, false);
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &done));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(done.wait([&] { return done.handled == 1; }));
  sync();
  EXPECT_EQ(0u, dead().size());
  EXPECT_EQ(0, pending());
}

TEST_F(EngineTest, JobThatKillsItsProcessBecomesADeadLetter) {
  const char *opts = "{\"durability\":\"normal\",\"max_interruptions\":3}";
  open(opts, false);
  enqueue({{"effect", "boom"}, {"key", "pill"}});
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  int kills = 0;
  for (int round = 0; round < 3; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(60);
      wf_engine *c = nullptr;
      if (wf_open(path.c_str(), opts, &c) != WF_OK) _exit(2);
      wf_effect_register(
          c, "boom", nullptr, [](void *, wf_job *) { raise(SIGKILL); }, nullptr);
      wf_start(c);
      pause();
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(pid, waitpid(pid, &status, 0));
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "round " << round;
    ++kills;
  }
  EXPECT_EQ(3, kills);
  open(opts, false);
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "boom", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(eventually([&] { return dead().size() == 1; })) << stats().dump();
  json d = dead()[0];
  EXPECT_EQ(0u, d["reason"].get<std::string>().find("interrupted")) << d.dump();
  int interrupted = 0;
  for (auto &a : d["history"]) interrupted += a["outcome"] == "interrupted";
  EXPECT_EQ(3, interrupted) << d.dump();
  EXPECT_EQ(0u, s.count());
  EXPECT_EQ(0, pending());
  // Re-queued (after the provider was fixed) it runs again: the interruption
  // count starts over like the failure count.
  int64_t n = 0;
  ASSERT_EQ(WF_OK, wf_dead_requeue(e, nullptr, &n));
  EXPECT_EQ(1, n);
  ASSERT_TRUE(s.wait_count(1));
  EXPECT_EQ("pill", s.seen[0]["key"]);
}

// Interruptions are counted apart from failures and the option is checked.
TEST_F(EngineTest, MaxInterruptionsIsValidated) {
  wf_engine *x = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{\"max_interruptions\":0}", &x));
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{\"abandon_after_ms\":-5}", &x));
  open();
  EXPECT_EQ(WF_EINVAL, wf_effect_register(e, "x", "{\"max_interruptions\":0}", Sink::cb, nullptr));
  EXPECT_EQ(WF_OK, wf_effect_register(e, "x", "{\"max_interruptions\":2,\"abandon_after_ms\":0}",
                                      Sink::cb, nullptr));
}

// ------------------------------------------------------------ 13. time

// After the clock steps back an hour, attempt timeouts still fire on time.
TEST_F(EngineTest, ClockStepBackDoesNotHoldTimeoutsBack) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"timeout_ms\":200}", Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  advance(-3600000);
  ASSERT_TRUE(eventually([&] { return stats()["engine"]["timeouts"] == 1; }));
  EXPECT_EQ(WF_ESTATE, wf_job_complete(s.held[0], nullptr));
}

// After the clock steps back an hour, leases are still renewed (and carry
// the new wall instants other engines compare with).
TEST_F(EngineTest, ClockStepBackDoesNotStopLeaseRenewal) {
  open("{\"durability\":\"normal\",\"lease_ms\":300}");
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"timeout_ms\":0}", Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  int64_t before = clock.now.load();
  advance(-3600000);
  ASSERT_TRUE(eventually([&] {
    json r = query(e, "SELECT lease_until, (SELECT heartbeat_at FROM wf_boots) AS hb FROM wf_jobs");
    return r.size() == 1 && r[0]["lease_until"].get<int64_t>() < before &&
           r[0]["hb"].get<int64_t>() < before;
  }));
  EXPECT_EQ(1, stats()["outbox"]["running"]);
  EXPECT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr));
}

// After the clock steps back an hour, the cross-process poll still runs: a
// job enqueued by another engine on the file is seen.
TEST_F(EngineTest, ClockStepBackDoesNotStopPolling) {
  open("{\"durability\":\"normal\",\"poll_ms\":20}");
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  wf_engine *writer = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\"}", &writer));
  ASSERT_EQ(WF_OK, wf_set_clock(writer, ManualClock::fn, &clock));
  advance(-3600000);
  sync();
  ASSERT_EQ(WF_OK, wf_enqueue(writer, "{\"effect\":\"x\"}", nullptr)) << wf_last_error();
  EXPECT_TRUE(s.wait_count(1, 20000));
  ASSERT_EQ(WF_OK, wf_close(writer));
}

// After the clock steps forward an hour, attempts in flight do not time out.
TEST_F(EngineTest, ClockStepForwardDoesNotTimeOutAttempts) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"timeout_ms\":600000}", Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  advance(3600000);
  sync();  // the loop has looked at its deadlines after the step
  sync();
  EXPECT_EQ(0, stats()["engine"]["timeouts"]);
  EXPECT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr)) << wf_last_error();
  sync();
  EXPECT_EQ(0, pending());
}
