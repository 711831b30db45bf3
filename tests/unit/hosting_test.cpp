// Rules for hosts (issue 8, items 5-8): calls racing with wf_close, the
// closed handle, host transactions used from several threads and abandoned,
// loggers that call the API, fork(), and wf_last_error.
#include <signal.h>
#include <sys/wait.h>

#include <future>
#include <thread>

#include "engine.h"
#include "helpers.h"

using namespace wft;

namespace {

// Runs `fn` in a forked child and returns its exit status, or -1 if it did
// not exit within `deadline_ms` (it is then killed): a hang fails the test
// instead of hanging the suite.
int run_child(const std::function<int()> &fn, int deadline_ms = 30000) {
  pid_t pid = fork();
  if (pid < 0) return -2;
  if (pid == 0) _exit(fn());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(deadline_ms);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (std::chrono::steady_clock::now() > deadline) {
      if (getenv("WF_TEST_GDB")) {
        // Debugging aid: the hung child's stacks (which mutex it waits on).
        std::string cmd = "gdb -p " + std::to_string(pid) +
                          " -batch -ex 'thread apply all bt' 2>&1 | grep -v '^\\[' >&2";
        if (system(cmd.c_str()) != 0) ADD_FAILURE() << "gdb failed";
      }
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a child: no signal
  }
}

// Runs `fn` on a new thread; true if it returned within `ms`. When it did
// not, `unblock` runs (e.g. rolls back the transaction it waits behind) and
// the thread is joined, so a deadlock on the old code fails instead of hanging.
bool finishes(const std::function<void()> &fn, const std::function<void()> &unblock,
              int ms = 20000) {
  std::promise<void> p;
  auto f = p.get_future();
  std::thread t([&] {
    fn();
    p.set_value();
  });
  bool ok = f.wait_for(std::chrono::milliseconds(ms)) == std::future_status::ready;
  if (!ok) unblock();
  t.join();
  return ok;
}

std::string job_doc(const std::string &effect, int n) {
  return json{{"effect", effect}, {"payload", {{"n", n}}}}.dump();
}

}  // namespace

// ------------------------------------------------------------------ close

// Threads keep calling the API while another thread closes the engine: every
// call returns a normal status or WF_ECLOSED, nothing crashes or hangs, and
// the calls after the close (on the closed handle) return WF_ECLOSED.
TEST_F(EngineTest, CallsRacingWithCloseGetClosedNeverCrash) {
  for (int round = 0; round < 30; ++round) {
    open("{\"durability\":\"normal\"}", false);
    Sink s;
    ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
    ASSERT_EQ(WF_OK, wf_start(e));
    std::atomic<int> calls{0};
    std::atomic<int> bad{0};
    std::string bad_msg;
    std::mutex bad_mu;
    auto check = [&](const char *what, int rc, bool &closed) {
      calls++;
      if (rc == WF_ECLOSED) {
        closed = true;
        return;
      }
      if (rc != WF_OK && rc != WF_EEXIST) {
        bad++;
        std::lock_guard<std::mutex> g(bad_mu);
        bad_msg = std::string(what) + " -> " + std::to_string(rc) + " " + wf_last_error();
      }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 5; ++t) {
      threads.emplace_back([&, t] {
        bool closed = false;
        for (int i = 0; !closed; ++i) {
          char *out = nullptr;
          switch ((t + i) % 5) {
            case 0:
              check("enqueue", wf_enqueue(e, job_doc("x", i).c_str(), &out), closed);
              break;
            case 1:
              check("stats", wf_stats(e, nullptr, &out), closed);
              break;
            case 2: {
              std::string ev = json{{"event_id", "r" + std::to_string(round) + "-" +
                                                     std::to_string(t) + "-" + std::to_string(i)},
                                    {"type", "nobody.listens"}}
                                   .dump();
              check("submit", wf_submit(e, ev.c_str()), closed);
              break;
            }
            case 3: {
              std::string sc = json{{"key", "k" + std::to_string(t)},
                                    {"delay_ms", 3600000},
                                    {"job", {{"effect", "x"}}}}
                                   .dump();
              check("schedule", wf_schedule(e, sc.c_str()), closed);
              break;
            }
            case 4:
              check("sync", wf_sync(e), closed);
              break;
          }
          wf_free(out);
        }
        // The handle is closed now: every later call says so.
        char *out = nullptr;
        if (wf_enqueue(e, job_doc("x", 0).c_str(), &out) != WF_ECLOSED) bad++;
        if (wf_stats(e, nullptr, &out) != WF_ECLOSED) bad++;
        wf_free(out);
      });
    }
    // Let every thread make some calls, then close under them.
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (calls.load() < 50 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    ASSERT_EQ(WF_OK, wf_close(e)) << wf_last_error();
    for (auto &t : threads) t.join();
    EXPECT_EQ(0, bad.load()) << bad_msg;
    EXPECT_EQ(WF_ECLOSED, wf_close(e));
    e = nullptr;
  }
}

TEST_F(EngineTest, SecondCloseAndCallsOnAClosedHandleReturnClosed) {
  open();
  wf_engine *h = e;
  ASSERT_EQ(WF_OK, wf_close(h));
  e = nullptr;
  EXPECT_EQ(WF_ECLOSED, wf_close(h));
  EXPECT_NE(std::string(wf_last_error()).find("closed"), std::string::npos) << wf_last_error();
  char *out = nullptr;
  EXPECT_EQ(WF_ECLOSED, wf_enqueue(h, "{\"effect\":\"x\"}", &out));
  EXPECT_EQ(nullptr, out);
  EXPECT_EQ(WF_ECLOSED, wf_stats(h, nullptr, &out));
  EXPECT_EQ(WF_ECLOSED, wf_start(h));
  EXPECT_EQ(WF_ECLOSED, wf_sync(h));
  EXPECT_EQ(WF_ECLOSED, wf_drain(h, 0));
  EXPECT_EQ(WF_ECLOSED, wf_wake(h));
  EXPECT_EQ(WF_ECLOSED, wf_set_logger(h, WF_LOG_INFO, nullptr, nullptr));
  wf_tx *t = nullptr;
  EXPECT_EQ(WF_ECLOSED, wf_tx_begin(h, &t));
  EXPECT_EQ(nullptr, t);
}

// A wf_drain waiting in another thread returns WF_ECLOSED when wf_close
// starts, instead of holding the close up until its own deadline.
TEST_F(EngineTest, CloseWakesADrainWaitingElsewhere) {
  open("{\"durability\":\"normal\",\"drain_timeout_ms\":60000}", false);
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  enqueue({{"effect", "x"}});
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  std::atomic<int> drain_rc{1};
  std::thread drainer([&] { drain_rc = wf_drain(e, 600000); });
  // The drain is waiting (the job is held); close must not wait for it.
  std::thread closer([&] { EXPECT_EQ(WF_OK, wf_close(e)); });
  drainer.join();
  EXPECT_EQ(WF_ECLOSED, drain_rc.load());
  // Close waits (drain_timeout_ms) for the held job; complete it.
  EXPECT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr));
  closer.join();
  e = nullptr;
}

// wf_close from a logger (or any engine callback) would wait for itself.
TEST_F(EngineTest, CloseFromALoggerIsBusy) {
  open();
  struct Ctx {
    wf_engine *e;
    std::atomic<int> rc{1};
  } ctx{e};
  ASSERT_EQ(WF_OK, wf_set_logger(
                       e, WF_LOG_INFO,
                       [](void *u, int, const char *) {
                         auto *c = static_cast<Ctx *>(u);
                         if (c->rc == 1) c->rc = wf_close(c->e);
                       },
                       &ctx));
  ASSERT_EQ(WF_OK, wf_start(e));  // logs "engine started"
  // Lines logged before wf_set_logger returns went to the previous logger.
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_INFO, nullptr, nullptr));
  EXPECT_EQ(WF_EBUSY, ctx.rc.load());
}

// ------------------------------------------------------ host transactions

// A wf_tx begun on one thread is committed on another (Go moves goroutines
// between threads): the first thread is not locked out afterwards.
TEST_F(EngineTest, TxCommittedOnAnotherThreadFreesTheFirst) {
  open();
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_tx_exec(t, "CREATE TABLE orders(id INTEGER PRIMARY KEY)", nullptr, nullptr));
  std::thread other([&] {
    EXPECT_EQ(WF_OK, wf_tx_exec(t, "INSERT INTO orders(id) VALUES(1)", nullptr, nullptr));
    EXPECT_EQ(WF_OK, wf_tx_enqueue(t, "{\"effect\":\"x\"}", nullptr)) << wf_last_error();
    EXPECT_EQ(WF_OK, wf_tx_commit(t)) << wf_last_error();
  });
  other.join();
  // This thread began it; it is gone now.
  enqueue({{"effect", "x"}});
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t)) << wf_last_error();
  char *rows = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_exec(t, "SELECT count(*) AS n FROM orders", nullptr, &rows));
  EXPECT_EQ(1, json::parse(rows)[0]["n"]);
  wf_free(rows);
  ASSERT_EQ(WF_OK, wf_tx_rollback(t));
  EXPECT_EQ(2, pending());
}

// The thread that made the last call on the open transaction gets WF_EBUSY
// from every call that would wait on the writer (the transaction holds it);
// other threads wait for the commit as usual.
TEST_F(EngineTest, CallsThatWouldWaitForTheirOwnTxAreBusy) {
  open();
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t)) << wf_last_error();
  auto unblock = [&] { wf_tx_rollback(t); };
  std::atomic<int> other_rc{1};
  std::thread waiter;
  bool ok = finishes(
      [&] {
        // The new owner: it uses the transaction, then tries the non-tx API.
        EXPECT_EQ(WF_OK, wf_tx_enqueue(t, "{\"effect\":\"x\",\"key\":\"in-tx\"}", nullptr));
        EXPECT_EQ(WF_EBUSY, wf_enqueue(e, "{\"effect\":\"x\"}", nullptr));
        EXPECT_NE(std::string(wf_last_error()).find("wf_tx"), std::string::npos) << wf_last_error();
        EXPECT_EQ(WF_EBUSY, wf_sync(e));
        EXPECT_EQ(WF_EBUSY, wf_drain(e, 1000));
        EXPECT_EQ(WF_EBUSY, wf_close(e));
        wf_tx *t2 = nullptr;
        EXPECT_EQ(WF_EBUSY, wf_tx_begin(e, &t2));
        EXPECT_EQ(WF_EBUSY, wf_schedule(e,
                                        "{\"key\":\"s\",\"delay_ms\":1000,\"job\":{\"effect\":"
                                        "\"x\"}}"));
        EXPECT_EQ(WF_EBUSY, wf_submit(e, "{\"event_id\":\"e\",\"type\":\"t\"}"));
        // The main thread (it began the transaction but did not use it last)
        // waits for the commit like any other writer.
        waiter = std::thread([&] { other_rc = wf_enqueue(e, "{\"effect\":\"x\"}", nullptr); });
        EXPECT_EQ(WF_OK, wf_tx_commit(t));
      },
      unblock);
  EXPECT_TRUE(ok) << "a call waited for the caller's own transaction";
  if (waiter.joinable()) waiter.join();
  EXPECT_EQ(WF_OK, other_rc.load());
  EXPECT_EQ(2, pending());
}

// An abandoned transaction is rolled back after tx_timeout_ms: writers go on,
// its handle returns WF_ESTATE and only needs freeing.
TEST_F(EngineTest, AbandonedTxIsRolledBackAfterTheTimeout) {
  open("{\"durability\":\"normal\",\"tx_timeout_ms\":300}");
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_tx_exec(t, "CREATE TABLE host(x INTEGER)", nullptr, nullptr));
  ASSERT_EQ(WF_OK, wf_tx_enqueue(t, "{\"effect\":\"x\"}", nullptr));
  // Another thread's write waits behind it, then proceeds.
  std::thread writer([&] { EXPECT_EQ(WF_OK, wf_enqueue(e, "{\"effect\":\"y\"}", nullptr)); });
  writer.join();
  EXPECT_EQ(WF_ESTATE, wf_tx_exec(t, "INSERT INTO host(x) VALUES(1)", nullptr, nullptr));
  EXPECT_NE(std::string(wf_last_error()).find("tx_timeout_ms"), std::string::npos)
      << wf_last_error();
  EXPECT_EQ(WF_ESTATE, wf_tx_enqueue(t, "{\"effect\":\"x\"}", nullptr));
  EXPECT_EQ(WF_ESTATE, wf_tx_submit(t, "{\"event_id\":\"e\",\"type\":\"t\"}"));
  EXPECT_EQ(WF_ESTATE,
            wf_tx_schedule(t, "{\"key\":\"s\",\"delay_ms\":1000,\"job\":{\"effect\":\"x\"}}"));
  EXPECT_EQ(WF_ESTATE, wf_tx_commit(t));  // and frees it
  EXPECT_EQ(1, stats()["engine"]["tx_timeouts"]);
  // Nothing of it was committed.
  EXPECT_EQ(1, pending());
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  EXPECT_EQ(WF_EINVAL, wf_tx_exec(t, "SELECT * FROM host", nullptr, nullptr));  // no such table
  ASSERT_EQ(WF_OK, wf_tx_rollback(t));
  // Abandoned again, then freed with wf_tx_rollback.
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  EXPECT_EQ(WF_EBUSY, wf_sync(e));                            // this thread owns it
  std::thread waiter([&] { EXPECT_EQ(WF_OK, wf_sync(e)); });  // returns after the rollback
  waiter.join();
  EXPECT_EQ(WF_ESTATE, wf_tx_exec(t, "SELECT 1", nullptr, nullptr));
  EXPECT_EQ(WF_OK, wf_tx_rollback(t));
  EXPECT_EQ(1, pending());
}

// wf_close does not wait on an abandoned transaction longer than
// tx_timeout_ms; the handle stays safe to free after the close.
TEST_F(EngineTest, CloseWaitsAtMostTheTxTimeout) {
  open("{\"durability\":\"normal\",\"tx_timeout_ms\":300}");
  wf_tx *t = nullptr;
  std::thread owner([&] { ASSERT_EQ(WF_OK, wf_tx_begin(e, &t)) << wf_last_error(); });
  owner.join();
  ASSERT_NE(nullptr, t);
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  EXPECT_EQ(WF_ESTATE, wf_tx_exec(t, "SELECT 1", nullptr, nullptr));
  EXPECT_EQ(WF_OK, wf_tx_rollback(t));
}

// The rollback at the timeout runs on the writer while the host may be in
// wf_tx_exec: they are serialised; every call before it succeeds, every call
// after returns WF_ESTATE.
TEST_F(EngineTest, TimeoutRollbackIsSerialisedWithExec) {
  open("{\"durability\":\"normal\",\"tx_timeout_ms\":200}");
  for (int round = 0; round < 3; ++round) {
    wf_tx *t = nullptr;
    ASSERT_EQ(WF_OK, wf_tx_begin(e, &t)) << wf_last_error();
    ASSERT_EQ(WF_OK, wf_tx_exec(t, "CREATE TABLE IF NOT EXISTS host(x INTEGER)", nullptr, nullptr));
    int ok = 0, rc = WF_OK;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (rc == WF_OK && std::chrono::steady_clock::now() < until) {
      rc =
          wf_tx_exec(t, "INSERT INTO host(x) VALUES(?)", json::array({ok}).dump().c_str(), nullptr);
      if (rc == WF_OK) ok++;
    }
    EXPECT_EQ(WF_ESTATE, rc) << wf_last_error();
    EXPECT_GT(ok, 0);
    EXPECT_EQ(WF_OK, wf_tx_rollback(t));
    enqueue({{"effect", "x"}});  // the writer is free again
  }
}

// -------------------------------------------------------------- loggers

namespace {
int alert_reducer(void *, const char *, size_t, wf_buf *out) {
  static const char k[] = "{\"state\":{},\"done\":true}";
  return wf_buf_set(out, k, sizeof k - 1);
}
}  // namespace

// A logger that raises an alert with wf_enqueue on each line, on a line the
// writer thread logs (a saga step whose commit fails): no deadlock.
TEST_F(EngineTest, LoggerMayEnqueueOnALineFromTheWriter) {
  open("{\"durability\":\"normal\"}", false);
  struct Ctx {
    wf_engine *e;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int> rcs;
  } ctx{e, {}, {}, {}};
  ASSERT_EQ(WF_OK, wf_set_logger(
                       e, WF_LOG_ERROR,
                       [](void *u, int, const char *line) {
                         auto *c = static_cast<Ctx *>(u);
                         if (json::parse(line)["msg"] != "saga step not committed; will retry")
                           return;
                         int rc = wf_enqueue(c->e, "{\"effect\":\"alert\"}", nullptr);
                         std::lock_guard<std::mutex> g(c->mu);
                         c->rcs.push_back(rc);
                         c->cv.notify_all();
                       },
                       &ctx));
  ASSERT_EQ(WF_OK, wf_saga_register(e, "s", "{\"start\":[\"go\"]}", alert_reducer, nullptr));
  wf::g_fail_saga_step = 1;
  struct Reset {
    ~Reset() { wf::g_fail_saga_step = 0; }
  } reset;
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_EQ(WF_OK, wf_submit(e, "{\"event_id\":\"e1\",\"type\":\"go\",\"correlation_id\":\"c\"}"));
  std::unique_lock<std::mutex> lk(ctx.mu);
  if (!ctx.cv.wait_for(lk, std::chrono::seconds(20), [&] { return !ctx.rcs.empty(); })) {
    // Deadlocked (the old code): leave the engine, it cannot be closed.
    e = nullptr;
    FAIL() << "the logger's wf_enqueue did not return";
  }
  EXPECT_EQ(WF_OK, ctx.rcs[0]);
  lk.unlock();
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, nullptr, nullptr));
  EXPECT_GE(stats()["outbox"]["ready"].get<int64_t>(), 1);
}

// ----------------------------------------------------------------- fork

// An engine (and a wf_tx) inherited across fork() returns WF_EFORKED at once
// in the child; wf_close there only marks the handle closed.
TEST_F(EngineTest, InheritedEngineFailsFastInTheChild) {
  open("{\"durability\":\"normal\"}", false);
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  for (int i = 0; i < 20; ++i) enqueue({{"effect", "x"}});
  wf_tx *t = nullptr;
  std::thread owner([&] { ASSERT_EQ(WF_OK, wf_tx_begin(e, &t)); });
  owner.join();
  wf_engine *h = e;
  int rc = run_child([h, t] {
    int fails = 0;
    char *out = nullptr;
    fails += wf_enqueue(h, "{\"effect\":\"x\"}", &out) != WF_EFORKED;
    fails += std::string(wf_last_error()).find("fork") == std::string::npos;
    fails += wf_stats(h, nullptr, &out) != WF_EFORKED;
    fails += wf_sync(h) != WF_EFORKED;
    fails += wf_drain(h, 0) != WF_EFORKED;
    fails += wf_tx_exec(t, "SELECT 1", nullptr, nullptr) != WF_EFORKED;
    fails += wf_tx_commit(t) != WF_EFORKED;
    fails += std::string(wf_strerror(WF_EFORKED)).find("fork") == std::string::npos;
    fails += wf_close(h) != WF_OK;
    fails += wf_enqueue(h, "{\"effect\":\"x\"}", &out) != WF_EFORKED;
    return fails;
  });
  EXPECT_EQ(0, rc) << "-1: the child hung";
  // The parent's engine is untouched.
  ASSERT_EQ(WF_OK, wf_tx_rollback(t));
  ASSERT_TRUE(s.wait_count(20));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait_count(21));
  ASSERT_EQ(WF_OK, wf_close(e));  // before the sink (a local) goes
  e = nullptr;
}

// A fresh wf_open in a child forked while engines run (writer, loop,
// checkpointer and host threads all busy in SQLite and in our own mutexes)
// works every time.
TEST_F(EngineTest, FreshOpenInAForkedChildWorksWhileTheParentIsBusy) {
  if (kSanitizer) GTEST_SKIP() << "sanitizers cannot run an engine in a child of a threaded fork";
  LogCapture log;
  ASSERT_EQ(WF_OK, wf_set_default_logger(WF_LOG_DEBUG, LogCapture::fn, &log));
  open("{\"durability\":\"normal\",\"checkpoint_pages\":4}", false);
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 2; ++t)
    busy.emplace_back([&] {
      for (int i = 0; !stop; ++i) {
        EXPECT_EQ(WF_OK, wf_enqueue(e, job_doc("x", i).c_str(), nullptr));
        char *out = nullptr;
        EXPECT_EQ(WF_OK, wf_stats(e, nullptr, &out));
        wf_free(out);
      }
    });
  busy.emplace_back([&] {
    // Engines opened and closed in the parent meanwhile (default logger,
    // live-boot registry, SQLite's open and VFS mutexes).
    for (int i = 0; !stop; ++i) {
      wf_engine *x = nullptr;
      std::string p = dir + "/side.db";
      EXPECT_EQ(WF_OK, wf_open(p.c_str(), "{\"durability\":\"normal\"}", &x));
      EXPECT_EQ(WF_OK, wf_close(x));
    }
  });
  int hung = 0, failed = 0;
  for (int i = 0; i < 50; ++i) {
    std::string p = dir + "/child" + std::to_string(i) + ".db";
    int rc = run_child([p] {
      // The default logger is inherited; its capture's mutex may have been
      // held by the parent's logger thread at the fork (the host's own lock).
      if (wf_set_default_logger(WF_LOG_DEBUG, nullptr, nullptr) != WF_OK) return 7;
      wf_engine *c = nullptr;
      if (wf_open(p.c_str(), "{\"durability\":\"normal\"}", &c) != WF_OK) return 2;
      if (wf_enqueue(c, "{\"effect\":\"x\"}", nullptr) != WF_OK) return 3;
      char *out = nullptr;
      if (wf_stats(c, nullptr, &out) != WF_OK) return 4;
      int ready = json::parse(out)["outbox"]["ready"];
      wf_free(out);
      if (ready != 1) return 5;
      if (wf_close(c) != WF_OK) return 6;
      return 0;
    });
    hung += rc == -1;
    failed += rc != 0 && rc != -1;
    EXPECT_EQ(0, rc) << "fork " << i << " (-1: the child hung)";
  }
  stop = true;
  for (auto &t : busy) t.join();
  ASSERT_EQ(WF_OK, wf_set_default_logger(WF_LOG_DEBUG, nullptr, nullptr));
  ASSERT_EQ(WF_OK, wf_close(e));  // its logger is `log`, a local
  e = nullptr;
  EXPECT_EQ(0, hung);
  EXPECT_EQ(0, failed);
}

// ---------------------------------------------------------- last error

TEST_F(EngineTest, LastErrorIsClearedBySuccessfulCalls) {
  open();
  EXPECT_EQ(WF_EINVAL, wf_enqueue(e, "{\"payload\":1}", nullptr));
  EXPECT_STRNE("", wf_last_error());
  EXPECT_EQ(WF_OK, wf_enqueue(e, "{\"effect\":\"x\"}", nullptr));
  EXPECT_STREQ("", wf_last_error());
  EXPECT_EQ(WF_EINVAL, wf_open("", nullptr, nullptr));
  EXPECT_STRNE("", wf_last_error());
  char *out = nullptr;
  EXPECT_EQ(WF_OK, wf_stats(e, nullptr, &out));
  wf_free(out);
  EXPECT_STREQ("", wf_last_error());
  EXPECT_EQ(WF_EINVAL, wf_tx_exec(nullptr, "SELECT 1", nullptr, nullptr));
  EXPECT_EQ(WF_OK, wf_tx_rollback(nullptr));
  EXPECT_STREQ("", wf_last_error());
}

// A child that inherited an engine on a file cannot open that file again
// (SQLite's per-file lock bookkeeping in the inherited memory describes locks
// the child does not hold: the open failed or hung at random): it gets
// WF_EFORKED at once; another file works.
TEST_F(EngineTest, ChildCannotReopenTheInheritedFile) {
  if (kSanitizer) GTEST_SKIP() << "sanitizers cannot run an engine in a child of a threaded fork";
  open("{\"durability\":\"normal\",\"checkpoint_pages\":4}", false);
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    for (int i = 0; !stop; ++i) EXPECT_EQ(WF_OK, wf_enqueue(e, job_doc("x", i).c_str(), nullptr));
  });
  std::string p = path, other = dir + "/other.db";
  for (int i = 0; i < 10; ++i) {
    int rc = run_child([p, other] {
      wf_engine *c = nullptr;
      if (wf_open(p.c_str(), nullptr, &c) != WF_EFORKED) return 2;
      if (std::string(wf_last_error()).find("fork") == std::string::npos) return 3;
      if (wf_open(other.c_str(), "{\"durability\":\"normal\"}", &c) != WF_OK) return 4;
      if (wf_enqueue(c, "{\"effect\":\"y\"}", nullptr) != WF_OK) return 5;
      if (wf_close(c) != WF_OK) return 6;
      return 0;
    });
    EXPECT_EQ(0, rc) << "fork " << i << " (-1: the child hung)";
  }
  stop = true;
  busy.join();
  ASSERT_EQ(WF_OK, wf_close(e));  // before the sink (a local) goes
  e = nullptr;
}

// A logger slower than the engine never blocks it: past 4096 queued lines,
// lines are dropped and counted, and the logger is told how many.
TEST_F(EngineTest, FullLogQueueDropsAndCounts) {
  open("{\"durability\":\"normal\",\"max_attempts\":1000000}", false);
  struct Slow {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    bool dropped_told = false;
  } slow;
  ASSERT_EQ(WF_OK, wf_set_logger(
                       e, WF_LOG_INFO,
                       [](void *u, int, const char *line) {
                         auto *s = static_cast<Slow *>(u);
                         std::unique_lock<std::mutex> lk(s->mu);
                         s->cv.wait(lk, [&] { return s->open; });  // blocked until released
                         if (json::parse(line)["msg"] == "log lines dropped (logger too slow)")
                           s->dropped_told = true;
                       },
                       &slow));
  Sink s;
  s.handler = [](wf_job *j) { EXPECT_EQ(WF_OK, wf_job_retry(j, "again", 0)); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  json batch = json::array();
  for (int i = 0; i < 100; ++i) batch.push_back({{"effect", "x"}});
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), nullptr));
  ASSERT_EQ(WF_OK, wf_start(e));
  // Each retry logs a line; the logger is stuck on the first one, yet the
  // engine goes on well past the queue's 4096 lines.
  ASSERT_TRUE(s.wait_count(5000, 120000));
  EXPECT_GT(stats()["engine"]["log_dropped"].get<int64_t>(), 0);
  {
    std::lock_guard<std::mutex> g(slow.mu);
    slow.open = true;
  }
  slow.cv.notify_all();
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_INFO, nullptr, nullptr));  // delivers the queue
  EXPECT_TRUE(slow.dropped_told);
  ASSERT_EQ(WF_OK, wf_close(e));  // before the sink (a local) goes: the jobs retry for ever
  e = nullptr;
}
