// Relay: dispatch, ordering, delays, retries and backoff, dead letters,
// timeouts, concurrency limits, circuit breaker, drain, recovery.
#include <signal.h>
#include <sys/wait.h>

#include <set>
#include <thread>

#include "helpers.h"

using namespace wft;

TEST_F(EngineTest, DispatchesAndCompletes) {
  open();
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "email", nullptr, Sink::cb, &s));
  EXPECT_EQ(WF_EEXIST, wf_effect_register(e, "email", nullptr, Sink::cb, &s));
  EXPECT_EQ(WF_EINVAL, wf_effect_register(e, "x", "{\"timeout\":1}", Sink::cb, &s));
  EXPECT_EQ(WF_EINVAL, wf_effect_register(e, "x", nullptr, nullptr, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  EXPECT_EQ(WF_ESTATE, wf_start(e));
  std::string id =
      enqueue({{"effect", "email"}, {"key", "k"}, {"tenant", "t1"}, {"payload", {1, 2}}});
  ASSERT_TRUE(s.wait_count(1));
  EXPECT_EQ(id, s.seen[0]["id"]);
  EXPECT_EQ("k", s.seen[0]["key"]);
  EXPECT_EQ("t1", s.seen[0]["tenant"]);
  EXPECT_EQ(1, s.seen[0]["attempt"]);
  EXPECT_EQ(json({1, 2}), s.seen[0]["payload"]);
  sync();
  EXPECT_EQ(0, pending());
  // A completed key stays deduplicated for the dedupe window.
  EXPECT_EQ(id, enqueue({{"effect", "email"}, {"key", "k"}, {"tenant", "t1"}}, WF_EEXIST));
}

TEST_F(EngineTest, DedupeWindowExpires) {
  open("{\"durability\":\"normal\",\"dedupe_window_ms\":1000}");
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}, {"key", "k"}});
  ASSERT_TRUE(s.wait_count(1));
  sync();
  clock.now += 999;
  enqueue({{"effect", "x"}, {"key", "k"}}, WF_EEXIST);
  clock.now += 2;
  enqueue({{"effect", "x"}, {"key", "k"}});
  ASSERT_TRUE(s.wait_count(2));
}

TEST_F(EngineTest, PriorityThenRunAtOrder) {
  open();
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"concurrency\":1}", Sink::cb, &s));
  enqueue({{"effect", "x"}, {"payload", "low-old"}, {"priority", 0}});
  clock.now += 1;
  enqueue({{"effect", "x"}, {"payload", "high"}, {"priority", 10}});
  clock.now += 1;
  enqueue({{"effect", "x"}, {"payload", "low-new"}, {"priority", 0}});
  enqueue({{"effect", "x"}, {"payload", "mid"}, {"priority", 5}});
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(4));
  std::vector<std::string> order;
  for (auto &r : s.seen) order.push_back(r["payload"]);
  EXPECT_EQ((std::vector<std::string>{"high", "mid", "low-old", "low-new"}), order);
}

TEST_F(EngineTest, DelayedJobWaitsForItsTime) {
  open();
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}, {"delay_ms", 5000}});
  enqueue({{"effect", "x"}, {"run_at", clock.now.load() + 8000}});
  sync();
  sync();
  EXPECT_EQ(0u, s.count());
  EXPECT_EQ(2, stats()["outbox"]["scheduled"]);
  advance(4999);
  sync();
  EXPECT_EQ(0u, s.count());
  advance(1);
  ASSERT_TRUE(s.wait_count(1));
  advance(3000);
  ASSERT_TRUE(s.wait_count(2));
}

TEST_F(EngineTest, RetryWithBackoffThenDeadLetter) {
  open();
  Sink s;
  s.handler = [](wf_job *j) { wf_job_retry(j, "HTTP 503", -1); };
  ASSERT_EQ(WF_OK,
            wf_effect_register(e, "x",
                               "{\"max_attempts\":3,\"backoff\":{\"base_ms\":1000,\"multiplier\":2,"
                               "\"jitter\":\"none\"}}",
                               Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  std::string id = enqueue({{"effect", "x"}, {"key", "r"}});
  ASSERT_TRUE(s.wait_count(1));
  sync();
  EXPECT_EQ(1, stats()["outbox"]["scheduled"]);
  advance(999);
  sync();
  EXPECT_EQ(1u, s.count());
  advance(1);  // first backoff: 1000 ms
  ASSERT_TRUE(s.wait_count(2));
  EXPECT_EQ(2, s.seen[1]["attempt"]);
  sync();
  advance(1999);
  sync();
  EXPECT_EQ(2u, s.count());
  advance(1);  // second backoff: 2000 ms
  ASSERT_TRUE(s.wait_count(3));
  sync();
  json d = dead();
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(id, d[0]["id"]);
  EXPECT_NE(d[0]["reason"].get<std::string>().find("attempts exhausted"), std::string::npos);
  ASSERT_EQ(3u, d[0]["history"].size());
  EXPECT_EQ("retry", d[0]["history"][0]["outcome"]);
  EXPECT_EQ("HTTP 503", d[0]["history"][2]["error"]);
  EXPECT_EQ(0, pending());
  EXPECT_EQ(1, stats()["dead"]);
  // A dead key does not block a new job with the same key.
  enqueue({{"effect", "y"}, {"key", "r"}});
}

TEST_F(EngineTest, ExplicitRetryDelayOverridesPolicy) {
  open();
  Sink s;
  s.handler = [](wf_job *j) {
    if (wf_job_attempt(j) == 1)
      wf_job_retry(j, "later", 300);
    else
      wf_job_complete(j, nullptr);
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait_count(1));
  sync();
  advance(299);
  sync();
  EXPECT_EQ(1u, s.count());
  advance(1);
  ASSERT_TRUE(s.wait_count(2));
}

TEST_F(EngineTest, FailGoesStraightToDeadAndRequeueRunsAgain) {
  open();
  Sink s;
  std::atomic<bool> accept{false};
  s.handler = [&](wf_job *j) {
    if (accept)
      wf_job_complete(j, "{\"ok\":true}");
    else
      wf_job_fail(j, "card declined");
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "charge", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  std::string a = enqueue({{"effect", "charge"}, {"tenant", "t1"}});
  std::string b = enqueue({{"effect", "charge"}, {"tenant", "t2"}});
  ASSERT_TRUE(s.wait_count(2));
  sync();
  json d = dead();
  ASSERT_EQ(2u, d.size());
  EXPECT_EQ("card declined", d[0]["reason"]);
  EXPECT_EQ(1u, dead("{\"tenant\":\"t1\"}").size());
  EXPECT_EQ(0u, dead("{\"effect\":\"other\"}").size());
  EXPECT_EQ(1u, dead(("{\"ids\":[\"" + a + "\"]}").c_str()).size());
  EXPECT_EQ(2u, dead(("{\"since\":" + std::to_string(clock.now.load()) + "}").c_str()).size());
  EXPECT_EQ(0u, dead(("{\"until\":" + std::to_string(clock.now.load()) + "}").c_str()).size());
  EXPECT_EQ(1u, dead("{\"limit\":1}").size());
  accept = true;
  int64_t n = -1;
  ASSERT_EQ(WF_OK, wf_dead_requeue(e, "{\"tenant\":\"t1\"}", &n));
  EXPECT_EQ(1, n);
  ASSERT_TRUE(s.wait_count(3));
  EXPECT_EQ(a, s.seen[2]["id"]);
  EXPECT_EQ(2, s.seen[2]["attempt"]);
  sync();
  ASSERT_EQ(WF_OK, wf_dead_purge(e, nullptr, &n));
  EXPECT_EQ(1, n);
  EXPECT_EQ(0u, dead().size());
  EXPECT_EQ(WF_EINVAL, wf_dead_requeue(e, "{\"ids\":[\"x1\"]}", &n));
}

TEST_F(EngineTest, TimeoutCountsAsFailedAttemptAndLateCompletionIsRejected) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) {
    if (wf_job_attempt(j) == 1)
      s.hold(j);  // keep it past the timeout
    else
      wf_job_complete(j, nullptr);
  };
  ASSERT_EQ(WF_OK,
            wf_effect_register(
                e, "slow", "{\"timeout_ms\":100,\"backoff\":{\"base_ms\":10,\"jitter\":\"none\"}}",
                Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "slow"}});
  ASSERT_TRUE(s.wait([&] { return !s.held.empty(); }));
  // Timeouts are measured on the monotonic clock (not the injected one):
  // wait for it; the retry is then due 10 ms later on the injected clock.
  for (int i = 0; i < 4000 && stats()["engine"]["timeouts"] != 1; ++i)
    s.wait([] { return false; }, 5);
  ASSERT_EQ(1, stats()["engine"]["timeouts"]);
  sync();
  advance(10);
  sync();
  sync();
  // The second attempt must wait while the host still holds the first.
  EXPECT_EQ(1u, s.count());
  EXPECT_EQ(WF_ESTATE, wf_job_complete(s.held[0], nullptr));
  EXPECT_NE(std::string(wf_last_error()).find("timed out"), std::string::npos);
  ASSERT_TRUE(s.wait_count(2));
  EXPECT_EQ(2, s.seen[1]["attempt"]);
  sync();
  EXPECT_EQ(0, pending());
  EXPECT_EQ(1, stats()["engine"]["timeouts"]);
}

TEST_F(EngineTest, ConcurrencyLimitPerEffect) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"concurrency\":2}", Sink::cb, &s));
  for (int i = 0; i < 5; ++i) enqueue({{"effect", "x"}});
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait([&] { return s.held.size() >= 2; }));
  sync();
  sync();
  EXPECT_EQ(2u, s.count());
  EXPECT_EQ(2, stats()["engine"]["effects"]["x"]["inflight"]);
  std::vector<wf_job *> h;
  {
    std::lock_guard<std::mutex> g(s.mu);
    h.swap(s.held);
  }
  s.handler = nullptr;
  for (auto *j : h) ASSERT_EQ(WF_OK, wf_job_complete(j, nullptr));
  ASSERT_TRUE(s.wait_count(3 + 2));
}

TEST_F(EngineTest, ConcurrencyLimitPerTenant) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"tenant_concurrency\":1}", Sink::cb, &s));
  for (int i = 0; i < 3; ++i) enqueue({{"effect", "x"}, {"tenant", "a"}});
  for (int i = 0; i < 3; ++i) enqueue({{"effect", "x"}, {"tenant", "b"}});
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait([&] { return s.held.size() >= 2; }));
  sync();
  sync();
  std::set<std::string> tenants;
  for (auto &r : s.seen) tenants.insert(r["tenant"]);
  EXPECT_EQ(2u, s.count());
  EXPECT_EQ((std::set<std::string>{"a", "b"}), tenants);
  std::vector<wf_job *> h;
  {
    std::lock_guard<std::mutex> g(s.mu);
    h.swap(s.held);
  }
  s.handler = nullptr;
  for (auto *j : h) ASSERT_EQ(WF_OK, wf_job_complete(j, nullptr));
  ASSERT_TRUE(s.wait_count(6));
}

// Slots granted to an idle effect for claims on insert never hold back a
// tenant_concurrency effect whose due jobs wait for a tenant's slot. (They
// did: every claim that found less than it asked for granted the free slots
// to the plain effect, until none was left for the next claim, and the jobs
// waited for a poll. With poll_ms 0 nothing else wakes the relay.)
TEST_F(EngineTest, GrantedSlotsDoNotStarveTenantLimitedEffect) {
  open("{\"durability\":\"normal\",\"poll_ms\":0,\"max_inflight\":64}", false);
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "y", "{\"tenant_concurrency\":1}", Sink::cb, &s));
  json batch = json::array();
  for (int i = 0; i < 40; ++i) {
    batch.push_back({{"effect", "y"}, {"tenant", i < 30 ? "hot" : "cold"}, {"payload", i}});
    batch.push_back({{"effect", "x"}, {"tenant", "hot"}, {"payload", i}});
  }
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &ids)) << wf_last_error();
  wf_free(ids);
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(80)) << s.count() << " of 80 handled";
  sync();
  EXPECT_EQ(0, pending());
}

TEST_F(EngineTest, CircuitBreakerOpensJobsWaitThenProbeCloses) {
  open();
  Sink s;
  std::atomic<bool> healthy{false};
  s.handler = [&](wf_job *j) {
    if (healthy)
      wf_job_complete(j, nullptr);
    else
      wf_job_retry(j, "down", 0);
  };
  ASSERT_EQ(WF_OK, wf_effect_register(
                       e, "x",
                       "{\"max_attempts\":100,\"concurrency\":1,\"circuit\":{\"failure_ratio\":"
                       "0.5,\"window\":4,\"min_attempts\":4,\"cooldown_ms\":60000}}",
                       Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait_count(4));
  sync();
  sync();
  EXPECT_EQ(4u, s.count());  // open: no more attempts, the job is not burnt
  EXPECT_EQ("open", stats()["engine"]["effects"]["x"]["circuit"]);
  EXPECT_EQ(1, pending());
  healthy = true;
  advance(60000);  // cool-down over: one probe
  ASSERT_TRUE(s.wait_count(5));
  sync();
  EXPECT_EQ("closed", stats()["engine"]["effects"]["x"]["circuit"]);
  EXPECT_EQ(0, pending());
}

TEST_F(EngineTest, JobForUnregisteredEffectWaits) {
  open();
  enqueue({{"effect", "later"}});
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "other", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  sync();
  EXPECT_EQ(1, stats()["outbox"]["by_effect"]["later"]["ready"]);
  ASSERT_EQ(WF_OK, wf_effect_register(e, "later", nullptr, Sink::cb, &s));
  ASSERT_TRUE(s.wait_count(1));
}

TEST_F(EngineTest, CompleteFromAnotherThreadAndApiInsideCallback) {
  open();
  Sink s;
  std::vector<std::thread> threads;
  std::mutex tm;
  s.handler = [&](wf_job *j) {
    if (std::string(wf_job_effect(j)) == "first") {
      // Calling the API from inside a callback works.
      EXPECT_EQ(WF_OK, wf_enqueue(e, "{\"effect\":\"second\"}", nullptr));
      char *st = nullptr;
      EXPECT_EQ(WF_OK, wf_stats(e, nullptr, &st));
      wf_free(st);
      EXPECT_EQ(WF_EBUSY, wf_drain(e, 0));
      EXPECT_EQ(WF_EBUSY, wf_sync(e));
    }
    std::lock_guard<std::mutex> g(tm);
    threads.emplace_back([j] { EXPECT_EQ(WF_OK, wf_job_complete(j, nullptr)); });
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "first", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "second", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "first"}});
  ASSERT_TRUE(s.wait_count(2));
  {
    std::lock_guard<std::mutex> g(tm);
    for (auto &t : threads) t.join();
  }
  sync();
  EXPECT_EQ(0, pending());
}

TEST_F(EngineTest, DrainWaitsForInflightThenRejectsWork) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  EXPECT_EQ(WF_ETIMEDOUT, wf_drain(e, 20));
  std::thread t([&] { EXPECT_EQ(WF_OK, wf_drain(e, 10000)); });
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr));
  t.join();
  EXPECT_EQ(0, pending());
  EXPECT_EQ(WF_ECLOSED, wf_enqueue(e, "{\"effect\":\"x\"}", nullptr));
}

TEST_F(EngineTest, CloseReturnsHeldJobsToTheQueue) {
  open("{\"durability\":\"normal\",\"drain_timeout_ms\":10}");
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  open();
  EXPECT_EQ(1, stats()["outbox"]["ready"]);
  Sink s2;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s2));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s2.wait_count(1));
  EXPECT_EQ(2, s2.seen[0]["attempt"]);
}

// A process that dies mid-attempt: on reopen its job is ready again, the
// attempt is recorded as interrupted, and it is not counted as a failure.
TEST_F(EngineTest, RecoversJobsOfAKilledProcess) {
  kill_child_mid_attempt(path, "{\"max_attempts\":1}", "{\"effect\":\"x\",\"key\":\"survivor\"}");
  open("{\"durability\":\"normal\"}", false);  // the child used the real clock
  EXPECT_EQ(1, stats()["outbox"]["ready"]);
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"max_attempts\":1}", Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(1));
  EXPECT_EQ("survivor", s.seen[0]["key"]);
  EXPECT_EQ(2, s.seen[0]["attempt"]);
  sync();
  EXPECT_EQ(0, pending());
  EXPECT_EQ(0, stats()["dead"]);
}

// Two engines on one file: every job is delivered, none twice.
TEST_F(EngineTest, TwoEnginesShareOneDatabase) {
  open("{\"durability\":\"normal\",\"poll_ms\":5}", false);
  wf_engine *e2 = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\",\"poll_ms\":5}", &e2));
  Sink s;  // shared by both engines
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_effect_register(e2, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_EQ(WF_OK, wf_start(e2));
  std::thread p1([&] {
    for (int i = 0; i < 300; ++i)
      wf_enqueue(e, json{{"effect", "x"}, {"key", "a" + std::to_string(i)}}.dump().c_str(),
                 nullptr);
  });
  std::thread p2([&] {
    for (int i = 0; i < 300; ++i)
      wf_enqueue(e2, json{{"effect", "x"}, {"key", "b" + std::to_string(i)}}.dump().c_str(),
                 nullptr);
  });
  p1.join();
  p2.join();
  ASSERT_TRUE(s.wait_count(600));
  std::set<std::string> keys;
  for (auto &r : s.seen) EXPECT_TRUE(keys.insert(r["key"]).second) << r["key"] << " twice";
  EXPECT_EQ(600u, keys.size());
  ASSERT_EQ(WF_OK, wf_close(e2));
}

// ------------------------------------------------------------ claim on insert

namespace {
int64_t claimed_on_insert(wf_engine *e) {
  char *out = nullptr;
  EXPECT_EQ(WF_OK, wf_stats(e, nullptr, &out)) << wf_last_error();
  json s = json::parse(out);
  wf_free(out);
  return s["engine"]["claimed_on_insert"].get<int64_t>();
}
// Waits (one wf_sync round trip through the loop and the writer at a time)
// until the relay has granted `n` slots of `effect` for claims on insert.
bool await_insert_slots(wf_engine *e, const char *effect, int n) {
  for (int i = 0; i < 1000; ++i) {
    char *out = nullptr;
    EXPECT_EQ(WF_OK, wf_stats(e, nullptr, &out));
    json s = json::parse(out);
    wf_free(out);
    if (s["engine"]["effects"][effect]["insert_slots"] == n) return true;
    if (wf_sync(e) != WF_OK) return false;
  }
  return false;
}
}  // namespace

// A ready job of an effect with free slots is written claimed and handed to
// the relay after the commit; once the slots are taken, jobs wait as ready
// ones and are claimed in claim order (priority first), never overtaken by a
// newer job claimed on insert.
TEST_F(EngineTest, ClaimOnInsertTakesFreeSlotsAndKeepsClaimOrder) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"concurrency\":2}", Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  // The relay's first claim found nothing: it grants the two free slots.
  ASSERT_TRUE(await_insert_slots(e, "x", 2));
  std::string a = enqueue({{"effect", "x"}, {"payload", "a"}});
  EXPECT_EQ(1, claimed_on_insert(e));
  json st = stats();
  EXPECT_EQ(0, st["outbox"]["ready"]);
  EXPECT_EQ(1, st["outbox"]["running"]);  // running as soon as wf_enqueue returned
  enqueue({{"effect", "x"}, {"payload", "b"}});
  EXPECT_EQ(2, claimed_on_insert(e));
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 2; }));
  EXPECT_EQ(a, s.seen[0]["id"]);
  EXPECT_EQ(1, s.seen[0]["attempt"]);
  EXPECT_EQ("a", s.seen[0]["payload"]);
  // Both slots are taken: these two wait.
  enqueue({{"effect", "x"}, {"payload", "c"}});
  enqueue({{"effect", "x"}, {"payload", "d"}, {"priority", 10}});
  EXPECT_EQ(2, claimed_on_insert(e));
  EXPECT_EQ(2, stats()["outbox"]["ready"]);
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr));
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 3; }));
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[1], nullptr));
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 4; }));
  EXPECT_EQ("d", s.seen[2]["payload"]);
  EXPECT_EQ("c", s.seen[3]["payload"]);
  EXPECT_EQ(2, claimed_on_insert(e));
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[2], nullptr));
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[3], nullptr));
  // Drained again: the claim after the last completion found nothing, and
  // granted the slots anew.
  ASSERT_TRUE(await_insert_slots(e, "x", 2));
  enqueue({{"effect", "x"}, {"payload", "e"}});
  EXPECT_EQ(3, claimed_on_insert(e));
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 5; }));
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[4], nullptr));
  sync();
  EXPECT_EQ(0, pending());
}

// A job a host transaction inserted (never claimed on insert) is ahead of a
// newer job: the newer one is not claimed on insert past it.
TEST_F(EngineTest, ClaimOnInsertNeverOvertakesAReadyJob) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"concurrency\":1}", Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(await_insert_slots(e, "x", 1));
  wf_tx *tx = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
  ASSERT_EQ(WF_OK, wf_tx_enqueue(tx, R"({"effect":"x","payload":"t"})", nullptr))
      << wf_last_error();
  ASSERT_EQ(WF_OK, wf_tx_commit(tx));
  enqueue({{"effect", "x"}, {"payload", "u"}});
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  EXPECT_EQ("t", s.seen[0]["payload"]);
  EXPECT_EQ(0, claimed_on_insert(e));
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr));
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 2; }));
  EXPECT_EQ("u", s.seen[1]["payload"]);
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[1], nullptr));
}

// Completions that reach the writer together are deleted together (eight
// rows per statement): a keyed job and a retry between them run on their
// own, the counts stay equal to the rows, and a completed key stays
// deduplicated.
TEST_F(EngineTest, CompletionsOfOneCommitAreDeletedTogether) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"concurrency\":30}", Sink::cb, &s));
  json batch = json::array();
  for (int i = 0; i < 21; ++i) {
    json j{{"effect", "x"}, {"payload", i}};
    if (i == 7) j["key"] = "k7";
    batch.push_back(j);
  }
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &ids)) << wf_last_error();
  wf_free(ids);
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 21; }));
  // Hold the writer so that every outcome below lands in one batch.
  wf_tx *tx = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
  for (size_t i = 0; i < 21; ++i) {
    if (s.seen[i]["payload"] == 12)
      ASSERT_EQ(WF_OK, wf_job_retry(s.held[i], "later", 60000));
    else
      ASSERT_EQ(WF_OK, wf_job_complete(s.held[i], nullptr));
  }
  ASSERT_EQ(WF_OK, wf_tx_commit(tx));
  sync();
  EXPECT_EQ(1, pending());  // the retried job, waiting for its backoff
  json st = stats();
  EXPECT_EQ(20, st["engine"]["completed"]);
  EXPECT_EQ(0, st["outbox"]["running"]);
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_check(e, nullptr, &out));
  json chk = json::parse(out);
  wf_free(out);
  EXPECT_TRUE(chk["ok"].get<bool>()) << chk.dump();
  char *id = nullptr;
  EXPECT_EQ(WF_EEXIST, wf_enqueue(e, R"({"effect":"x","key":"k7"})", &id));
  wf_free(id);
}

// A transaction that rolls back gives its slots back: the batch below is
// abandoned at its last job (after the writer inserted its first one,
// claimed), and the next job still finds the slot.
TEST_F(EngineTest, ClaimOnInsertRollbackGivesTheSlotBack) {
  open();
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"concurrency\":1}", Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(await_insert_slots(e, "x", 1));
  json batch = json::array();
  for (int i = 0; i < 300; ++i) batch.push_back({{"effect", "x"}, {"payload", i}});
  batch.push_back({{"effect", "x"}, {"delay_ms", "soon"}});  // invalid
  char *ids = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_enqueue_batch(e, batch.dump().c_str(), &ids));
  EXPECT_EQ(nullptr, ids);
  EXPECT_EQ(0, pending());
  EXPECT_EQ(0, claimed_on_insert(e));
  enqueue({{"effect", "x"}, {"payload", "after"}});
  EXPECT_EQ(1, claimed_on_insert(e));
  ASSERT_TRUE(s.wait([&] { return s.held.size() == 1; }));
  EXPECT_EQ("after", s.seen[0]["payload"]);
  ASSERT_EQ(WF_OK, wf_job_complete(s.held[0], nullptr));
  sync();
  EXPECT_EQ(1u, s.count());  // none of the abandoned batch ran
}

// The option turns it off; jobs are then claimed by the relay only.
TEST_F(EngineTest, ClaimOnInsertCanBeTurnedOff) {
  wf_engine *bad = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), R"({"claim_on_insert":1})", &bad));
  EXPECT_NE(std::string::npos, std::string(wf_last_error()).find("claim_on_insert"));
  open(R"({"durability":"normal","claim_on_insert":false})");
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  sync();
  for (int i = 0; i < 5; ++i) enqueue({{"effect", "x"}, {"payload", i}});
  ASSERT_TRUE(s.wait_count(5));
  EXPECT_EQ(0, claimed_on_insert(e));
  EXPECT_EQ(0, stats()["engine"]["effects"]["x"]["insert_slots"]);
}
