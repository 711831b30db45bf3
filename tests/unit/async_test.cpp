// Pipelined enqueue: wf_enqueue_async / wf_submit_async. Validation at the
// call, exactly one callback per accepted call, order per calling thread,
// back pressure, callbacks that call the API, wf_sync and wf_close, keys and
// failures inside one commit, and durability of acknowledged jobs (kill test).
#include <thread>

#include "../../src/outbox.h"
#include "helpers.h"

using namespace wft;

namespace {

// Records every callback (status, id, the wf_last_error text seen inside).
struct Acks {
  std::mutex mu;
  std::condition_variable cv;
  struct Ack {
    int rc;
    std::string id, err;
    bool id_null;
  };
  std::vector<Ack> got;
  std::vector<std::thread::id> threads;
  static void cb(void *u, int rc, const char *id) {
    auto *a = static_cast<Acks *>(u);
    Ack k{rc, id ? id : "", wf_last_error(), id == nullptr};
    std::lock_guard<std::mutex> g(a->mu);
    a->got.push_back(k);
    a->threads.push_back(std::this_thread::get_id());
    a->cv.notify_all();
  }
  size_t size() {
    std::lock_guard<std::mutex> g(mu);
    return got.size();
  }
  bool wait(size_t n) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, std::chrono::seconds(60), [&] { return got.size() >= n; });
  }
};

json job(int i, const char *key = nullptr, int priority = 0) {
  json j{{"effect", "x"}, {"payload", {{"i", i}}}};
  if (key) j["key"] = key;
  if (priority) j["priority"] = priority;
  return j;
}

class AsyncTest : public EngineTest {
 protected:
  int64_t jobs_in_db() {
    json s = stats();
    return s["outbox"]["ready"].get<int64_t>() + s["outbox"]["scheduled"].get<int64_t>();
  }
};

}  // namespace

// Bad input: the status comes back at once, no callback, nothing written.
TEST_F(AsyncTest, BadInputFailsAtOnceWithoutCallback) {
  open();
  Acks a;
  EXPECT_EQ(WF_EINVAL, wf_enqueue_async(e, "{not json", Acks::cb, &a));
  EXPECT_NE(std::string(wf_last_error()), "");
  EXPECT_EQ(WF_EINVAL, wf_enqueue_async(e, "{\"payload\":{}}", Acks::cb, &a));  // no effect
  EXPECT_NE(std::string(wf_last_error()).find("effect"), std::string::npos) << wf_last_error();
  EXPECT_EQ(WF_EINVAL, wf_enqueue_async(e, nullptr, Acks::cb, &a));
  EXPECT_EQ(WF_EINVAL, wf_submit_async(e, "{\"type\":1}", Acks::cb, &a));
  EXPECT_EQ(WF_EINVAL, wf_enqueue_async(nullptr, "{}", Acks::cb, &a));
  ASSERT_EQ(WF_OK, wf_sync(e));
  EXPECT_EQ(0u, a.size());
  EXPECT_EQ(0, jobs_in_db());
  EXPECT_EQ(0, stats()["engine"]["async_accepted"]);
}

// Many threads: every accepted call gets exactly one callback, on one engine
// thread, WF_OK with a distinct id, in submission order per calling thread.
TEST_F(AsyncTest, ManyThreadsExactlyOnceInOrderPerThread) {
  open();
  constexpr int kThreads = 8, kPer = 300;
  struct Rec {
    std::mutex mu;
    std::vector<std::pair<int, int>> order;  // (thread, seq) in callback order
    std::vector<std::string> ids;
    int bad = 0;
  } rec;
  struct Ctx {
    Rec *r;
    int t, i;
  };
  std::vector<std::unique_ptr<Ctx>> ctxs(kThreads * kPer);
  auto cb = [](void *u, int rc, const char *id) {
    auto *c = static_cast<Ctx *>(u);
    std::lock_guard<std::mutex> g(c->r->mu);
    if (rc != WF_OK || !id) ++c->r->bad;
    c->r->order.emplace_back(c->t, c->i);
    c->r->ids.emplace_back(id ? id : "");
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        ctxs[t * kPer + i] = std::make_unique<Ctx>(Ctx{&rec, t, i});
        ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(i).dump().c_str(), cb, ctxs[t * kPer + i].get()))
            << wf_last_error();
      }
    });
  for (auto &t : ts) t.join();
  ASSERT_EQ(WF_OK, wf_sync(e));  // waits for the callbacks too
  std::lock_guard<std::mutex> g(rec.mu);
  ASSERT_EQ(size_t(kThreads * kPer), rec.order.size());
  EXPECT_EQ(0, rec.bad);
  std::vector<int> next(kThreads, 0);
  for (auto &[t, i] : rec.order) {
    EXPECT_EQ(next[t], i) << "thread " << t;
    next[t] = i + 1;
  }
  std::set<std::string> uniq(rec.ids.begin(), rec.ids.end());
  EXPECT_EQ(rec.ids.size(), uniq.size());
  EXPECT_EQ(kThreads * kPer, jobs_in_db());
  EXPECT_EQ(kThreads * kPer, stats()["engine"]["async_accepted"]);
  EXPECT_EQ(0, stats()["engine"]["async_pending"]);
}

// Jobs queued together commit together: the same key twice in one batch is
// one job (the second gets WF_EEXIST with the first one's id), and a job
// failing in the writer fails alone, with its error text in the callback.
TEST_F(AsyncTest, KeysAndFailuresInsideOneCommit) {
  open();
  wf::g_fail_async_priority = 777;
  struct Reset {
    ~Reset() { wf::g_fail_async_priority = 0; }
  } reset;
  // Hold the writer with a host transaction so that everything below is
  // queued before it runs, then lands in one batch.
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  Acks a;
  std::thread producer([&] {
    for (int i = 0; i < 12; ++i) {
      const char *key = (i % 4 == 0) ? "same" : nullptr;
      int prio = (i % 3 == 1) ? 777 : 0;  // 4 failing jobs: more than one pass drops
      ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(i, key, prio).dump().c_str(), Acks::cb, &a));
    }
  });
  producer.join();
  int64_t commits = stats()["engine"]["commits"];
  EXPECT_EQ(0u, a.size());  // nothing committed while the writer is held
  ASSERT_EQ(WF_OK, wf_tx_commit(t));
  ASSERT_TRUE(a.wait(12));
  ASSERT_EQ(WF_OK, wf_sync(e));
  std::lock_guard<std::mutex> g(a.mu);
  std::string first_id;
  int ok = 0;
  for (int i = 0; i < 12; ++i) {
    auto &k = a.got[i];
    if (i % 3 == 1) {
      EXPECT_EQ(WF_EINTERNAL, k.rc) << i;
      EXPECT_TRUE(k.id_null) << i;
      EXPECT_NE(k.err.find("injected"), std::string::npos) << k.err;
      continue;
    }
    if (i == 0) {
      EXPECT_EQ(WF_OK, k.rc);
      first_id = k.id;
    } else if (i % 4 == 0) {
      EXPECT_EQ(WF_EEXIST, k.rc) << i;
      EXPECT_EQ(first_id, k.id) << i;
      continue;
    } else {
      EXPECT_EQ(WF_OK, k.rc) << i << " " << k.err;
    }
    EXPECT_EQ("", k.err);
    ++ok;
  }
  EXPECT_EQ(7, ok);  // 0, 2, 3, 5, 6, 9, 11 (1, 4, 7, 10 fail; 8 is a duplicate of 0)
  EXPECT_EQ(7, jobs_in_db());
  // tx commit + the batch (+ the sync barrier): the jobs shared one commit.
  EXPECT_LE(stats()["engine"]["commits"].get<int64_t>() - commits, 3);
}

// Consecutive async jobs of one commit are inserted together (eight rows per
// statement): ids follow submission order, a key already stored or given
// earlier in the group names that job, an async event in between splits the
// group, a synchronous job of the same commit keeps its own id, and the
// enqueued metric counts each new job (and each job of wf_enqueue_batch).
TEST_F(AsyncTest, JobsOfOneCommitAreInsertedTogether) {
  open();
  enqueue(job(-1, "old"));
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  Acks a;
  std::thread producer([&] {
    for (int i = 0; i < 21; ++i) {
      const char *key = i == 3 ? "old" : (i == 5 || i == 17) ? "k" : nullptr;
      if (i == 10) {
        json ev{{"event_id", "ev"}, {"type", "t"}};
        ASSERT_EQ(WF_OK, wf_submit_async(e, ev.dump().c_str(), Acks::cb, &a));
      }
      ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(i, key).dump().c_str(), Acks::cb, &a));
    }
  });
  producer.join();
  ASSERT_EQ(WF_OK, wf_tx_commit(t));
  ASSERT_TRUE(a.wait(22));
  ASSERT_EQ(WF_OK, wf_sync(e));
  std::lock_guard<std::mutex> g(a.mu);
  int64_t last = 1;  // the job "old"
  std::string k_id;
  for (size_t n = 0; n < a.got.size(); ++n) {
    auto &k = a.got[n];
    int i = static_cast<int>(n > 10 ? n - 1 : n);
    if (n == 10) {
      EXPECT_EQ(WF_OK, k.rc);
      EXPECT_EQ("ev", k.id);
      continue;
    }
    if (i == 3) {
      EXPECT_EQ(WF_EEXIST, k.rc);
      EXPECT_EQ("1", k.id);
      continue;
    }
    if (i == 17) {
      EXPECT_EQ(WF_EEXIST, k.rc);
      EXPECT_EQ(k_id, k.id);
      continue;
    }
    ASSERT_EQ(WF_OK, k.rc) << i << " " << k.err;
    int64_t id = std::stoll(k.id);
    EXPECT_EQ(last + 1, id) << i;
    last = id;
    if (i == 5) k_id = k.id;
  }
  EXPECT_EQ(20, jobs_in_db());  // "old" and 19 of the 21
  std::string after = enqueue(job(99));
  EXPECT_EQ(std::to_string(last + 1), after);
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, json::array({job(100), job(101)}).dump().c_str(), &ids));
  wf_free(ids);
  char *m = nullptr;
  ASSERT_EQ(WF_OK, wf_metrics(e, &m));
  std::string text = m;
  wf_free(m);
  EXPECT_NE(std::string::npos, text.find("wfengine_jobs_enqueued_total{effect=\"x\"} 23\n"))
      << text;
}

// Events: WF_OK with the event id, then WF_EEXIST for the same id.
TEST_F(AsyncTest, SubmitAsyncDeduplicates) {
  open();
  Acks a;
  json ev{{"event_id", "ev-1"}, {"type", "t"}, {"payload", json::object()}};
  ASSERT_EQ(WF_OK, wf_submit_async(e, ev.dump().c_str(), Acks::cb, &a)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_submit_async(e, ev.dump().c_str(), Acks::cb, &a));
  ASSERT_EQ(WF_OK, wf_sync(e));
  ASSERT_EQ(2u, a.size());
  EXPECT_EQ(WF_OK, a.got[0].rc);
  EXPECT_EQ("ev-1", a.got[0].id);
  EXPECT_EQ(WF_EEXIST, a.got[1].rc);
  EXPECT_EQ("ev-1", a.got[1].id);
  EXPECT_EQ(WF_EEXIST, wf_submit(e, ev.dump().c_str()));
}

// wf_sync returns only after the callbacks of calls accepted before it ran;
// callbacks run on one engine thread that is not the caller's.
TEST_F(AsyncTest, SyncWaitsForCallbacks) {
  open();
  Acks a;
  for (int i = 0; i < 500; ++i)
    ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(i).dump().c_str(), Acks::cb, &a));
  ASSERT_EQ(WF_OK, wf_sync(e));
  EXPECT_EQ(500u, a.size());
  std::set<std::thread::id> th(a.threads.begin(), a.threads.end());
  EXPECT_EQ(1u, th.size());
  EXPECT_EQ(0u, th.count(std::this_thread::get_id()));
  // NULL callback: fire and forget, still counted by wf_sync.
  ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(1).dump().c_str(), nullptr, nullptr));
  ASSERT_EQ(WF_OK, wf_sync(e));
  EXPECT_EQ(501, jobs_in_db());
}

// A callback may call the API: chain async enqueues, a synchronous enqueue,
// wf_sync; wf_close of its own engine is WF_EBUSY. With the queue full, an
// async call from a callback is WF_EBUSY at once (it cannot wait for room
// that only its own thread would free), never a deadlock.
TEST_F(AsyncTest, CallbacksCallTheApi) {
  open("{\"durability\":\"normal\",\"async_queue_max\":1}");
  struct Chain {
    wf_engine *e;
    std::mutex mu;
    std::condition_variable cv;
    int depth = 0;
    std::vector<int> busy_rcs, sync_rcs, close_rcs, enq_rcs;
    bool done = false;
  } c;
  c.e = e;
  static wf_done_fn chain_cb;
  chain_cb = [](void *u, int rc, const char *) {
    auto *c = static_cast<Chain *>(u);
    EXPECT_EQ(WF_OK, rc);
    // Own slot still held, queue max 1: full.
    int busy = wf_enqueue_async(c->e, job(0).dump().c_str(), chain_cb, c);
    int sy = wf_sync(c->e);
    int en = wf_enqueue(c->e, job(1).dump().c_str(), nullptr);
    int cl = wf_close(c->e);
    std::lock_guard<std::mutex> g(c->mu);
    c->busy_rcs.push_back(busy);
    c->sync_rcs.push_back(sy);
    c->enq_rcs.push_back(en);
    c->close_rcs.push_back(cl);
    c->done = true;
    c->cv.notify_all();
  };
  ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(0).dump().c_str(), chain_cb, &c));
  {
    std::unique_lock<std::mutex> lk(c.mu);
    ASSERT_TRUE(c.cv.wait_for(lk, std::chrono::seconds(60), [&] { return c.done; }));
  }
  ASSERT_EQ(WF_OK, wf_sync(e));
  std::lock_guard<std::mutex> g(c.mu);
  EXPECT_EQ(std::vector<int>{WF_EBUSY}, c.busy_rcs);
  EXPECT_EQ(std::vector<int>{WF_OK}, c.sync_rcs);
  EXPECT_EQ(std::vector<int>{WF_OK}, c.enq_rcs);
  EXPECT_EQ(std::vector<int>{WF_EBUSY}, c.close_rcs);
  EXPECT_EQ(2, jobs_in_db());
}

// With room, a callback chains the next async call: 200 links, each from
// the previous one's callback.
TEST_F(AsyncTest, CallbackChainsAsyncCalls) {
  open();
  struct Chain {
    wf_engine *e;
    std::mutex mu;
    std::condition_variable cv;
    int n = 0;
    int bad = 0;
  } c;
  c.e = e;
  static wf_done_fn cb;
  cb = [](void *u, int rc, const char *) {
    auto *c = static_cast<Chain *>(u);
    std::lock_guard<std::mutex> g(c->mu);
    if (rc != WF_OK) ++c->bad;
    if (++c->n < 200 && wf_enqueue_async(c->e, job(c->n).dump().c_str(), cb, c) != WF_OK) ++c->bad;
    c->cv.notify_all();
  };
  ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(0).dump().c_str(), cb, &c));
  std::unique_lock<std::mutex> lk(c.mu);
  ASSERT_TRUE(c.cv.wait_for(lk, std::chrono::seconds(60), [&] { return c.n >= 200; }));
  EXPECT_EQ(0, c.bad);
  lk.unlock();
  ASSERT_EQ(WF_OK, wf_sync(e));
  EXPECT_EQ(200, jobs_in_db());
}

// A full queue blocks a host thread until the writer and callbacks free a
// slot (async_waits counts it), and then every call completes.
TEST_F(AsyncTest, FullQueueBlocksHostThread) {
  open("{\"durability\":\"normal\",\"async_queue_max\":4}");
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));  // holds the writer
  Acks a;
  std::atomic<int> accepted{0};
  std::thread producer([&] {
    for (int i = 0; i < 10; ++i) {
      ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(i).dump().c_str(), Acks::cb, &a));
      accepted++;
    }
  });
  // The fifth call waits for room: wait until the engine says so.
  json s;
  for (;;) {
    s = stats();
    if (s["engine"]["async_waits"] == 1) break;
    std::this_thread::yield();
  }
  EXPECT_EQ(4, accepted.load());
  EXPECT_EQ(4, s["engine"]["async_pending"]);
  EXPECT_EQ(0u, a.size());
  ASSERT_EQ(WF_OK, wf_tx_commit(t));
  producer.join();
  ASSERT_EQ(WF_OK, wf_sync(e));
  EXPECT_EQ(10u, a.size());
  for (auto &k : a.got) EXPECT_EQ(WF_OK, k.rc);
  EXPECT_EQ(10, jobs_in_db());
}

// wf_close racing with producers: every call returns WF_OK (then exactly
// one callback ran before wf_close returned) or WF_ECLOSED (no callback);
// every acknowledged job is in the file afterwards.
TEST_F(AsyncTest, CloseRunsEveryAcceptedCallback) {
  open();
  Acks a;
  std::atomic<int> accepted{0}, refused{0}, other{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      while (!go) std::this_thread::yield();
      for (int i = 0; i < 100000; ++i) {
        int rc = wf_enqueue_async(e, job(i).dump().c_str(), Acks::cb, &a);
        if (rc == WF_OK)
          accepted++;
        else if (rc == WF_ECLOSED)
          refused++;
        else
          other++;
        if (rc == WF_ECLOSED) break;
      }
    });
  go = true;
  // Close once the producers have some callbacks through.
  ASSERT_TRUE(a.wait(200));
  ASSERT_EQ(WF_OK, wf_close(e));
  size_t at_close = a.size();
  for (auto &t : ts) t.join();
  wf_engine *closed = e;
  e = nullptr;
  EXPECT_EQ(WF_ECLOSED, wf_enqueue_async(closed, job(0).dump().c_str(), Acks::cb, &a));
  EXPECT_EQ(0, other.load());
  EXPECT_EQ(size_t(accepted.load()), at_close);  // all ran before wf_close returned
  EXPECT_EQ(at_close, a.size());                 // and none after
  int ok = 0;
  for (auto &k : a.got) ok += k.rc == WF_OK;
  EXPECT_EQ(accepted.load(), ok);
  open();
  EXPECT_EQ(ok, jobs_in_db());
}

// Durability: a child enqueues asynchronously (durability full) and writes
// each acknowledged id to a pipe from the callback; the parent kills it
// mid-stream. Every acknowledged id is in the file after reopening.
TEST_F(AsyncTest, AcknowledgedJobsSurviveKill) {
  int pipefd[2];
  ASSERT_EQ(0, pipe(pipefd));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipefd[0]);
    alarm(60);
    wf_engine *c = nullptr;
    if (wf_open(path.c_str(), "{\"durability\":\"full\"}", &c) != WF_OK) _exit(2);
    static int fd;
    fd = pipefd[1];
    auto cb = [](void *, int rc, const char *id) {
      if (rc != WF_OK) _exit(5);
      std::string line = std::string(id) + "\n";
      if (write(fd, line.data(), line.size()) != ssize_t(line.size())) _exit(3);
    };
    for (int i = 0;; ++i)
      if (wf_enqueue_async(c, job(i).dump().c_str(), cb, nullptr) != WF_OK) _exit(4);
  }
  close(pipefd[1]);
  std::vector<std::string> acked;
  std::string buf;
  char chunk[4096];
  while (acked.size() < 3000) {
    ssize_t n = read(pipefd[0], chunk, sizeof chunk);
    ASSERT_GT(n, 0) << "child died early";
    buf.append(chunk, size_t(n));
    size_t pos;
    while ((pos = buf.find('\n')) != std::string::npos) {
      acked.push_back(buf.substr(0, pos));
      buf.erase(0, pos + 1);
    }
  }
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  // Lines the child wrote before the kill are acknowledged too.
  for (;;) {
    ssize_t n = read(pipefd[0], chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, size_t(n));
  }
  close(pipefd[0]);
  size_t pos;
  while ((pos = buf.find('\n')) != std::string::npos) {
    acked.push_back(buf.substr(0, pos));
    buf.erase(0, pos + 1);
  }
  open();
  // Every acknowledged id is a job in the file (wf_cancel finds it by id).
  int64_t n = jobs_in_db();
  EXPECT_GE(n, int64_t(acked.size()));
  for (auto &id : acked) {
    int rc = wf_cancel(e, nullptr, id.c_str());
    EXPECT_EQ(WF_OK, rc) << "acknowledged job " << id << " missing: " << wf_last_error();
  }
}

// A synchronous call that finds the writer idle and nothing queued runs its
// transaction on its own thread (caller_commits), and mixing that with the
// writer's group commits from many threads loses nothing.
TEST_F(AsyncTest, IdleWriterCallerCommitsAndMixedLoad) {
  open();
  ASSERT_EQ(0, stats()["engine"]["caller_commits"]);
  enqueue(job(0));
  EXPECT_EQ(1, stats()["engine"]["caller_commits"]);
  Acks a;
  std::vector<std::thread> ts;
  std::atomic<int> sync_ok{0};
  for (int t = 0; t < 6; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (t % 2 == 0) {
          if (wf_enqueue(e, job(i).dump().c_str(), nullptr) == WF_OK) sync_ok++;
        } else {
          ASSERT_EQ(WF_OK, wf_enqueue_async(e, job(i).dump().c_str(), Acks::cb, &a));
        }
      }
    });
  for (auto &t : ts) t.join();
  ASSERT_EQ(WF_OK, wf_sync(e));
  EXPECT_EQ(600, sync_ok.load());
  ASSERT_EQ(600u, a.size());
  for (auto &k : a.got) EXPECT_EQ(WF_OK, k.rc);
  EXPECT_EQ(1201, jobs_in_db());
}
