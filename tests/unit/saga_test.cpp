// Scheduler and saga runtime through the public API.
#include <thread>

#include "engine.h"
#include "helpers.h"

using namespace wft;

namespace {

struct Reducer {
  std::atomic<bool> fail_bad{true};
  std::atomic<bool> with_timeout{false};
  std::atomic<int> calls{0};
  std::string tag = "v1";

  static int fn(void *user, const char *in, size_t len, wf_buf *out) {
    auto *r = static_cast<Reducer *>(user);
    r->calls++;
    json input = json::parse(std::string(in, len));
    json state = input["state"].is_null() ? json{{"events", json::array()}} : input["state"];
    const json &ev = input["event"];
    std::string type = ev["type"];
    std::string corr = input["correlation_id"];
    if (type == "bad" && r->fail_bad) return 7;
    if (type == "invalid") return wf_buf_set(out, "not json", 8) == WF_OK ? 0 : 1;
    std::string item = type;
    if (ev["payload"].is_object() && ev["payload"].contains("n"))
      item += ":" + std::to_string(ev["payload"]["n"].get<int>());
    state["events"].push_back(item);
    state["reducer"] = r->tag;
    json o{{"state", state}, {"done", false}};
    if (type == "order.placed") {
      o["commands"] = json::array({{{"effect", "reserve"}, {"payload", {{"order", corr}}}}});
      if (r->with_timeout)
        o["schedules"] =
            json::array({{{"key", "timeout-" + corr},
                          {"delay_ms", 5000},
                          {"event", {{"type", "order.timeout"}, {"correlation_id", corr}}}}});
    }
    if (type == "order.paid") o["cancel_schedules"] = json::array({"timeout-" + corr});
    if (type == "reserve.completed" || type == "reserve.failed" || type == "order.timeout")
      o["done"] = true;
    std::string s = o.dump();
    return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
  }
};

const char *kSpec =
    "{\"start\":[\"order.placed\"],\"on\":[\"order.paid\",\"item\",\"bad\",\"invalid\","
    "\"order.timeout\"]}";

}  // namespace

class SagaTest : public EngineTest {
 protected:
  Reducer red;
  Sink sink;
  void start_saga(bool start_loop = true) {
    open();
    ASSERT_EQ(WF_OK, wf_saga_register(e, "order", kSpec, Reducer::fn, &red));
    ASSERT_EQ(WF_OK, wf_effect_register(e, "reserve", nullptr, Sink::cb, &sink));
    if (start_loop) {
      ASSERT_EQ(WF_OK, wf_start(e));
    }
  }
  void submit(const json &ev, int expect = WF_OK) {
    EXPECT_EQ(expect, wf_submit(e, ev.dump().c_str())) << wf_last_error();
  }
  json get(const char *corr, int expect = WF_OK) {
    char *out = nullptr;
    int rc = wf_saga_get(e, "", "order", corr, &out);
    EXPECT_EQ(expect, rc) << wf_last_error();
    json j = out ? json::parse(out) : json();
    wf_free(out);
    return j;
  }
  // Waits until the instance satisfies pred; saga steps have no host signal,
  // so this re-reads the committed state between short waits.
  bool wait_saga(const char *corr, const std::function<bool(const json &)> &pred) {
    for (int i = 0; i < 2000; ++i) {
      char *out = nullptr;
      if (wf_saga_get(e, "", "order", corr, &out) == WF_OK) {
        json j = json::parse(out);
        wf_free(out);
        if (pred(j)) return true;
      }
      sink.wait([] { return false; }, 5);
    }
    return false;
  }
};

TEST_F(SagaTest, StartStepsEffectResultAndDone) {
  start_saga();
  submit({{"event_id", "e1"},
          {"type", "order.placed"},
          {"correlation_id", "o1"},
          {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}});
  ASSERT_TRUE(sink.wait_count(1));
  EXPECT_EQ("o1", sink.seen[0]["metadata"]["correlation_id"]);
  EXPECT_EQ("order", sink.seen[0]["metadata"]["saga"]);
  EXPECT_EQ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            sink.seen[0]["metadata"]["traceparent"]);
  ASSERT_TRUE(wait_saga("o1", [](const json &j) { return j["status"] == "done"; }));
  json j = get("o1");
  EXPECT_EQ(json({"order.placed", "reserve.completed"}), j["state"]["events"]);
  EXPECT_EQ(2, j["version"]);
  json s = stats();
  EXPECT_EQ(1, s["sagas"]["done"]);
  EXPECT_EQ(0, s["sagas"]["active"]);
  // Events for a done instance are consumed without being applied.
  submit({{"event_id", "e2"}, {"type", "order.paid"}, {"correlation_id", "o1"}});
  sync();
  EXPECT_EQ(2, get("o1")["version"]);
}

TEST_F(SagaTest, FailedEffectRoutesBackAsFailedEvent) {
  sink.handler = [](wf_job *j) { wf_job_fail(j, "out of stock"); };
  start_saga();
  submit({{"event_id", "e1"}, {"type", "order.placed"}, {"correlation_id", "o2"}});
  ASSERT_TRUE(wait_saga("o2", [](const json &j) { return j["status"] == "done"; }));
  EXPECT_EQ("reserve.failed", get("o2")["state"]["events"][1]);
}

TEST_F(SagaTest, EventsApplyInSubmissionOrderPerInstance) {
  start_saga(false);
  submit({{"event_id", "p-a"}, {"type", "order.placed"}, {"correlation_id", "a"}});
  submit({{"event_id", "p-b"}, {"type", "order.placed"}, {"correlation_id", "b"}});
  for (int i = 0; i < 30; ++i) {
    submit({{"event_id", "a" + std::to_string(i)},
            {"type", "item"},
            {"correlation_id", "a"},
            {"payload", {{"n", i}}}});
    submit({{"event_id", "b" + std::to_string(i)},
            {"type", "item"},
            {"correlation_id", "b"},
            {"payload", {{"n", i}}}});
  }
  ASSERT_EQ(WF_OK, wf_start(e));
  for (const char *c : {"a", "b"}) {
    ASSERT_TRUE(wait_saga(c, [](const json &j) { return j["state"]["events"].size() >= 31; })) << c;
    json ev = get(c)["state"]["events"];
    EXPECT_EQ("order.placed", ev[0]);
    for (int i = 0; i < 30; ++i) EXPECT_EQ("item:" + std::to_string(i), ev[i + 1]);
  }
}

TEST_F(SagaTest, DuplicateEventIdIsRejectedAndAppliedOnce) {
  start_saga();
  json ev{{"event_id", "dup"}, {"type", "order.placed"}, {"correlation_id", "o3"}};
  submit(ev);
  submit(ev, WF_EEXIST);
  ev["tenant"] = "other";  // event ids are per tenant
  submit(ev);
  ASSERT_TRUE(wait_saga("o3", [](const json &j) { return j["version"] >= 1; }));
  sync();
  EXPECT_EQ(1u, get("o3")["state"]["events"].size() - (get("o3")["status"] == "done" ? 1 : 0));
}

TEST_F(SagaTest, UnmatchedEventsAreKeptAndCounted) {
  start_saga();
  submit({{"event_id", "u1"}, {"type", "nobody.cares"}});
  submit({{"event_id", "u2"}, {"type", "order.paid"}, {"correlation_id", "no-such-order"}});
  EXPECT_EQ(2, stats()["events"]["unmatched"]);
}

TEST_F(SagaTest, BadEnvelopesAreRejected) {
  start_saga();
  for (const char *doc :
       {"{\"type\":\"x\"}", "{\"event_id\":\"1\"}", "{\"event_id\":1,\"type\":\"x\"}", "[]",
        "{\"event_id\":\"1\",\"type\":\"x\",\"occurred_at\":\"soon\"}"})
    EXPECT_EQ(WF_EINVAL, wf_submit(e, doc)) << doc;
  EXPECT_EQ(WF_EINVAL, wf_saga_register(e, "s2", "{\"on\":[\"x\"]}", Reducer::fn, &red));
  EXPECT_EQ(WF_EINVAL,
            wf_saga_register(e, "s2", "{\"start\":[\"x\"],\"bogus\":1}", Reducer::fn, &red));
  EXPECT_EQ(WF_EEXIST, wf_saga_register(e, "order", kSpec, Reducer::fn, &red));
  EXPECT_EQ(0, stats()["events"]["unmatched"]);
}

TEST_F(SagaTest, FailedStepTransactionLeavesNoPartialState) {
  struct Log {
    std::mutex mu;
    std::condition_variable cv;
    int failures = 0;
    static void fn(void *u, int, const char *line) {
      auto *l = static_cast<Log *>(u);
      if (std::string(line).find("saga step not committed") == std::string::npos) return;
      std::lock_guard<std::mutex> g(l->mu);
      l->failures++;
      l->cv.notify_all();
    }
  } log;
  start_saga(false);
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, Log::fn, &log));
  wf::g_fail_saga_step = 1000000;
  struct Reset {
    ~Reset() { wf::g_fail_saga_step = 0; }
  } reset;
  ASSERT_EQ(WF_OK, wf_start(e));
  submit({{"event_id", "e1"}, {"type", "order.placed"}, {"correlation_id", "o4"}});
  {
    std::unique_lock<std::mutex> lk(log.mu);
    ASSERT_TRUE(log.cv.wait_for(lk, std::chrono::seconds(10), [&] { return log.failures >= 2; }));
  }
  // The step failed after writing state and before jobs: nothing is visible.
  get("o4", WF_ENOTFOUND);
  EXPECT_EQ(0, pending());
  EXPECT_EQ(1, stats()["events"]["pending"]);
  wf::g_fail_saga_step = 0;
  ASSERT_TRUE(sink.wait_count(1));
  ASSERT_TRUE(wait_saga("o4", [](const json &j) { return j["status"] == "done"; }));
  EXPECT_EQ(1u, sink.count());
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, nullptr, nullptr));
}

TEST_F(SagaTest, ParkedEventBlocksInstanceUntilRequeuedOrSkipped) {
  start_saga();
  submit({{"event_id", "e1"}, {"type", "order.placed"}, {"correlation_id", "o5"}});
  ASSERT_TRUE(wait_saga("o5", [](const json &j) { return j["version"] >= 1; }));
  sink.wait_count(1);
  ASSERT_TRUE(wait_saga("o5", [](const json &j) { return j["status"] == "done"; }));
  // A second instance for the parking scenario (o5 is done).
  sink.handler = [&](wf_job *j) { sink.hold(j); };
  submit({{"event_id", "e2"}, {"type", "order.placed"}, {"correlation_id", "o6"}});
  ASSERT_TRUE(sink.wait([&] { return sink.held.size() == 1; }));
  submit({{"event_id", "e3"}, {"type", "bad"}, {"correlation_id", "o6"}});
  submit({{"event_id", "e4"}, {"type", "item"}, {"correlation_id", "o6"}, {"payload", {{"n", 1}}}});
  ASSERT_TRUE(wait_saga("o6", [](const json &j) { return j["parked"] == true; }));
  sync();
  json g = get("o6");
  EXPECT_EQ(1u, g["state"]["events"].size());  // state untouched, later event waits
  EXPECT_EQ(1, g["pending"]);
  EXPECT_EQ(1, stats()["sagas"]["parked"]);
  json d = dead("{\"effect\":\"saga:order\"}");
  ASSERT_EQ(1u, d.size());
  EXPECT_NE(d[0]["reason"].get<std::string>().find("reducer returned 7"), std::string::npos);
  EXPECT_EQ("bad", d[0]["payload"]["type"]);
  // Re-queue after fixing the reducer: the event and the one behind it apply.
  red.fail_bad = false;
  int64_t n = 0;
  ASSERT_EQ(WF_OK, wf_dead_requeue(e, "{\"effect\":\"saga:order\"}", &n));
  EXPECT_EQ(1, n);
  ASSERT_TRUE(wait_saga("o6", [](const json &j) { return j["state"]["events"].size() == 3; }));
  EXPECT_EQ(json({"order.placed", "bad", "item:1"}), get("o6")["state"]["events"]);
  // Invalid output parks too; purging skips it.
  submit({{"event_id", "e5"}, {"type", "invalid"}, {"correlation_id", "o6"}});
  submit({{"event_id", "e6"}, {"type", "item"}, {"correlation_id", "o6"}, {"payload", {{"n", 2}}}});
  ASSERT_TRUE(wait_saga("o6", [](const json &j) { return j["parked"] == true; }));
  ASSERT_EQ(WF_OK, wf_dead_purge(e, "{\"effect\":\"saga:order\"}", &n));
  EXPECT_EQ(1, n);
  ASSERT_TRUE(wait_saga("o6", [](const json &j) { return j["state"]["events"].size() == 4; }));
  EXPECT_EQ("item:2", get("o6")["state"]["events"][3]);
  sink.handler = nullptr;
  for (auto *j : sink.held) wf_job_complete(j, nullptr);
}

TEST_F(SagaTest, ReplayRebuildsStateWithoutEffects) {
  start_saga();
  submit({{"event_id", "e1"}, {"type", "order.placed"}, {"correlation_id", "o7"}});
  for (int i = 0; i < 3; ++i)
    submit({{"event_id", "i" + std::to_string(i)},
            {"type", "item"},
            {"correlation_id", "o7"},
            {"payload", {{"n", i}}}});
  ASSERT_TRUE(wait_saga("o7", [](const json &j) { return j["status"] == "done"; }));
  sync();
  json before = get("o7");
  int64_t jobs_before = stats()["engine"]["enqueued"];
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_saga_replay(e, "", "order", "o7", nullptr, &out)) << wf_last_error();
  json r = json::parse(out);
  wf_free(out);
  EXPECT_EQ(before["state"], r["state"]);
  EXPECT_EQ(before["version"], r["events"]);
  EXPECT_TRUE(r["done"].get<bool>());
  // An upgraded reducer, committed.
  red.tag = "v2";
  ASSERT_EQ(WF_OK, wf_saga_replay(e, "", "order", "o7", "{\"commit\":true}", &out));
  wf_free(out);
  EXPECT_EQ("v2", get("o7")["state"]["reducer"]);
  EXPECT_EQ(jobs_before, stats()["engine"]["enqueued"].get<int64_t>());
  EXPECT_EQ(WF_ENOTFOUND, wf_saga_replay(e, "", "order", "nope", nullptr, &out));
  EXPECT_EQ(WF_EINVAL, wf_saga_replay(e, "", "order", "o7", "{\"commit\":1}", &out));
}

TEST_F(SagaTest, TransactionalSubmitCommitsOrVanishes) {
  start_saga();
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  ASSERT_EQ(
      WF_OK,
      wf_tx_submit(t, "{\"event_id\":\"t1\",\"type\":\"order.placed\",\"correlation_id\":\"o8\"}"));
  ASSERT_EQ(WF_OK, wf_tx_rollback(t));
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  ASSERT_EQ(
      WF_OK,
      wf_tx_submit(t, "{\"event_id\":\"t2\",\"type\":\"order.placed\",\"correlation_id\":\"o9\"}"));
  ASSERT_EQ(WF_OK, wf_tx_commit(t));
  ASSERT_TRUE(wait_saga("o9", [](const json &j) { return j["version"] >= 1; }));
  get("o8", WF_ENOTFOUND);
}

// ------------------------------------------------------------ scheduler

TEST_F(EngineTest, OneShotScheduleFiresOnceAtItsTime) {
  open();
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  int64_t due = clock.now + 5000;
  ASSERT_EQ(WF_OK, wf_schedule(e, "{\"key\":\"k\",\"delay_ms\":5000,\"job\":{\"effect\":\"x\"}}"))
      << wf_last_error();
  json st = stats();
  EXPECT_EQ(1, st["schedules"]["pending"]);
  EXPECT_EQ(due, st["schedules"]["next_due_ms"]);
  advance(4999);
  sync();
  sync();
  EXPECT_EQ(0u, s.count());
  advance(1);
  ASSERT_TRUE(s.wait_count(1));
  EXPECT_EQ("schedule:k@" + std::to_string(due), s.seen[0]["key"]);
  sync();
  EXPECT_EQ(0, stats()["schedules"]["pending"]);
  // Firing the same (key, due) again cannot double it: the derived key dedupes.
  ASSERT_EQ(WF_OK, wf_schedule(e, ("{\"key\":\"k\",\"at\":" + std::to_string(due) +
                                   ",\"job\":{\"effect\":\"x\"}}")
                                      .c_str()));
  wf_wake(e);
  sync();
  sync();
  EXPECT_EQ(0, stats()["schedules"]["pending"]);
  EXPECT_EQ(1u, s.count());
}

TEST_F(EngineTest, CronScheduleRepeatsAndCanBeReplacedOrRemoved) {
  open();
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  clock.now = 1700000000000;  // 2023-11-14T22:13:20Z
  ASSERT_EQ(
      WF_OK,
      wf_schedule(
          e,
          "{\"key\":\"c\",\"cron\":\"*/10 * * * * *\",\"job\":{\"effect\":\"x\",\"payload\":1}}"))
      << wf_last_error();
  for (int i = 1; i <= 3; ++i) {
    advance(10000);
    ASSERT_TRUE(s.wait_count(i)) << i;
  }
  // Replace: now every minute, payload 2.
  ASSERT_EQ(
      WF_OK,
      wf_schedule(
          e, "{\"key\":\"c\",\"cron\":\"0 * * * * *\",\"job\":{\"effect\":\"x\",\"payload\":2}}"));
  advance(60000);
  ASSERT_TRUE(s.wait_count(4));
  EXPECT_EQ(2, s.seen[3]["payload"]);
  ASSERT_EQ(WF_OK, wf_unschedule(e, nullptr, "c"));
  EXPECT_EQ(WF_ENOTFOUND, wf_unschedule(e, nullptr, "c"));
  advance(120000);
  sync();
  sync();
  EXPECT_EQ(4u, s.count());
}

TEST_F(EngineTest, CatchUpPolicies) {
  open();
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  clock.now = 1700000000000;
  for (const char *p : {"latest", "all", "none"}) {
    json d{{"key", p},
           {"cron", "0 * * * *"},
           {"catch_up", p},
           {"catch_up_max", 3},
           {"job", {{"effect", "x"}, {"payload", p}}}};
    ASSERT_EQ(WF_OK, wf_schedule(e, d.dump().c_str())) << wf_last_error();
  }
  // Down for 5 h 30 min: 5 hourly fires were missed, the last 30 min ago.
  clock.now += (5 * 60 + 30) * 60000;
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(4));
  sync();
  sync();
  std::map<std::string, int> by;
  for (auto &r : s.seen) by[r["payload"]]++;
  EXPECT_EQ(1, by["latest"]);
  EXPECT_EQ(3, by["all"]);
  EXPECT_EQ(0, by["none"]);
  EXPECT_EQ(4u, s.count());
  EXPECT_EQ(3, stats()["schedules"]["pending"]);  // all rescheduled
}

TEST_F(EngineTest, ScheduledEventReachesSaga) {
  open();
  Reducer red;
  red.with_timeout = true;
  Sink s;
  s.handler = [&](wf_job *j) { s.hold(j); };  // reservation never completes
  ASSERT_EQ(WF_OK, wf_saga_register(e, "order", kSpec, Reducer::fn, &red));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "reserve", "{\"timeout_ms\":0}", Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_EQ(
      WF_OK,
      wf_submit(e, "{\"event_id\":\"e1\",\"type\":\"order.placed\",\"correlation_id\":\"t1\"}"));
  ASSERT_TRUE(s.wait_count(1));
  sync();
  EXPECT_EQ(1, stats()["schedules"]["pending"]);
  advance(5000);  // the payment timeout fires into the saga
  char *out = nullptr;
  bool done = false;
  for (int i = 0; i < 2000 && !done; ++i) {
    ASSERT_EQ(WF_OK, wf_saga_get(e, "", "order", "t1", &out));
    done = json::parse(out)["status"] == "done";
    wf_free(out);
    if (!done) s.wait([] { return false; }, 5);
  }
  ASSERT_TRUE(done);
  for (auto *j : s.held) wf_job_complete(j, nullptr);
}

TEST_F(EngineTest, BadSchedulesAreRejected) {
  open();
  struct Case {
    const char *doc, *mention;
  } cases[] = {
      {"{\"delay_ms\":1,\"job\":{\"effect\":\"x\"}}", "key"},
      {"{\"key\":\"k\",\"job\":{\"effect\":\"x\"}}", "exactly one"},
      {"{\"key\":\"k\",\"delay_ms\":1,\"cron\":\"* * * * *\",\"job\":{\"effect\":\"x\"}}",
       "exactly one"},
      {"{\"key\":\"k\",\"cron\":\"61 * * * *\",\"job\":{\"effect\":\"x\"}}", "61"},
      {"{\"key\":\"k\",\"cron\":\"* * * * *\",\"tz\":\"Mars/Olympus\",\"job\":{\"effect\":\"x\"}}",
       "Mars/Olympus"},
      {"{\"key\":\"k\",\"delay_ms\":1}", "job"},
      {"{\"key\":\"k\",\"delay_ms\":1,\"job\":{\"effect\":\"x\"},\"event\":{\"type\":\"y\"}}",
       "job"},
      {"{\"key\":\"k\",\"delay_ms\":1,\"job\":{\"payload\":1}}", "effect"},
      {"{\"key\":\"k\",\"delay_ms\":1,\"event\":{\"event_id\":\"e\"}}", "type"},
      {"{\"key\":\"k\",\"delay_ms\":1,\"catch_up\":\"some\",\"job\":{\"effect\":\"x\"}}",
       "catch_up"},
      {"{\"key\":\"k\",\"tenant\":\"a\",\"delay_ms\":1,\"job\":{\"effect\":\"x\",\"tenant\":\"b\"}"
       "}",
       "tenant"},
      {"{\"key\":\"k\",\"delay_ms\":1,\"job\":{\"effect\":\"x\"},\"extra\":1}", "extra"},
  };
  for (auto &c : cases) {
    EXPECT_EQ(WF_EINVAL, wf_schedule(e, c.doc)) << c.doc;
    EXPECT_NE(std::string(wf_last_error()).find(c.mention), std::string::npos)
        << c.doc << " -> " << wf_last_error();
  }
  EXPECT_EQ(0, stats()["schedules"]["pending"]);
}
