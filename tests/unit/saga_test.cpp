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
      item.append(":").append(std::to_string(ev["payload"]["n"].get<int>()));
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
  // The provider sees the event's trace with a new span id for its attempt
  // (docs/tracing.md).
  std::string tp = sink.seen[0]["metadata"]["traceparent"];
  EXPECT_EQ(0u, tp.find("00-0af7651916cd43dd8448eb211c80319c-")) << tp;
  EXPECT_EQ("b7ad6b7169203331", sink.seen[0]["metadata"]["parent_span_id"]);
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
    submit({{"event_id", std::string("a").append(std::to_string(i))},
            {"type", "item"},
            {"correlation_id", "a"},
            {"payload", {{"n", i}}}});
    submit({{"event_id", std::string("b").append(std::to_string(i))},
            {"type", "item"},
            {"correlation_id", "b"},
            {"payload", {{"n", i}}}});
  }
  ASSERT_EQ(WF_OK, wf_start(e));
  for (const char *c : {"a", "b"}) {
    ASSERT_TRUE(wait_saga(c, [](const json &j) { return j["state"]["events"].size() >= 31; })) << c;
    json ev = get(c)["state"]["events"];
    EXPECT_EQ("order.placed", ev[0]);
    for (int i = 0; i < 30; ++i)
      EXPECT_EQ(std::string("item:").append(std::to_string(i)), ev[i + 1]);
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
  // One read: the reserve job may complete between two (state, then status).
  json g = get("o3");
  EXPECT_EQ(1u, g["state"]["events"].size() - (g["status"] == "done" ? 1 : 0));
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
    submit({{"event_id", std::string("i").append(std::to_string(i))},
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

namespace {

// Records every reducer input verbatim. The state folds all of each event:
// its type, payload and the running number of events per type.
struct RecordingReducer {
  std::mutex mu;
  std::vector<std::string> inputs;

  static int fn(void *user, const char *in, size_t len, wf_buf *out) {
    auto *r = static_cast<RecordingReducer *>(user);
    {
      std::lock_guard<std::mutex> g(r->mu);
      r->inputs.emplace_back(in, len);
    }
    json input = json::parse(std::string(in, len));
    json state = input["state"].is_null() ? json::object() : input["state"];
    const json &ev = input["event"];
    std::string type = ev["type"];
    state["log"].push_back(json{{"type", type}, {"payload", ev["payload"]}});
    json &count = state["count"][type];
    count = count.is_null() ? 1 : count.get<int>() + 1;
    state["who"] = input["tenant"].get<std::string>() + "/" + input["saga"].get<std::string>() +
                   "/" + input["correlation_id"].get<std::string>();
    json o{{"state", state}, {"done", type == "order.closed"}};
    if (type == "order.placed")
      o["commands"] = json::array(
          {{{"effect", "reserve"},
            {"key", std::string("reserve:").append(input["correlation_id"].get<std::string>())}}});
    std::string s = o.dump();
    return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
  }
  std::vector<std::string> take() {
    std::lock_guard<std::mutex> g(mu);
    return std::move(inputs);
  }
};

const char *kReplayKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

}  // namespace

class SagaReplayTest : public EngineTest, public ::testing::WithParamInterface<bool> {};

// Replay hands the reducer byte for byte the inputs the live steps got (so the
// spliced input equals the canonical dump of {saga, tenant, correlation_id,
// state, event}) and reaches the live state, with and without encryption.
TEST_P(SagaReplayTest, ReplayGivesTheLiveInputsAndState) {
  const bool encrypted = GetParam();
  std::string opts = encrypted ? std::string("{\"durability\":\"normal\",\"encryption_key\":\"") +
                                     kReplayKey + "\"}"
                               : std::string("{\"durability\":\"normal\"}");
  open(opts.c_str());
  RecordingReducer red;
  Sink sink;
  sink.handler = [](wf_job *j) {
    EXPECT_EQ(WF_OK,
              wf_job_complete(j, "{\"ok\":true,\"note\":\"r\\u00e9serv\\u00e9\",\"x\":2.5}"));
  };
  ASSERT_EQ(WF_OK, wf_saga_register(e, "ord\"er",
                                    "{\"start\":[\"order.placed\"],"
                                    "\"on\":[\"item\",\"order.paid\",\"order.closed\"]}",
                                    RecordingReducer::fn, &red));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "reserve", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  const char *tenant = "t\\1";
  const char *corr = "c\xc3\xa9/42 \"q\"";
  auto submit_ev = [&](const std::string &id, const std::string &type, const std::string &extra) {
    std::string doc = "{\"event_id\":\"" + id + "\",\"type\":\"" + type +
                      "\",\"tenant\":\"t\\\\1\",\"correlation_id\":\"c\\u00e9/42 \\\"q\\\"\"" +
                      extra + "}";
    EXPECT_EQ(WF_OK, wf_submit(e, doc.c_str())) << wf_last_error() << " " << doc;
  };
  submit_ev("p", "order.placed",
            ",\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\","
            "\"payload\":{\"secret\":\"replay-marker-7f3a\",\"z\":1,\"a\":[true,null,-0.0]}");
  ASSERT_TRUE(sink.wait_count(1));
  submit_ev("i1", "item", ",\"payload\":{\"n\":0.1,\"big\":18446744073709551615,\"neg\":-7}");
  submit_ev("i2", "item",
            ",\"payload\":{\"s\":\"tab\\tnl\\nnul\\u0000quote\\\"\\u2028\\ud83d\\ude00\","
            "\"e\":1e300,\"o\":{\"b\":{},\"a\":[]}},\"extra\":{\"kept\":true}");
  submit_ev("i3", "item", "");  // no payload: stored as null
  submit_ev("pay", "order.paid", ",\"occurred_at\":\"2030-01-02T03:04:05.678Z\"");
  submit_ev("close", "order.closed", ",\"payload\":\"bye\"");
  // Wait for the instance to be done (reserve.completed came back too).
  json live;
  for (int i = 0; i < 2000; ++i) {
    char *out = nullptr;
    if (wf_saga_get(e, tenant, "ord\"er", corr, &out) == WF_OK) {
      live = json::parse(out);
      wf_free(out);
      if (live["status"] == "done") break;
    }
    sink.wait([] { return false; }, 5);
  }
  ASSERT_EQ("done", live["status"]) << live.dump();
  sync();
  std::vector<std::string> live_inputs = red.take();
  ASSERT_EQ(live["version"].get<size_t>(), live_inputs.size());
  json counts = live["state"]["count"];
  EXPECT_EQ(1, counts["order.placed"]);
  EXPECT_EQ(3, counts["item"]);
  EXPECT_EQ(1, counts["order.paid"]);
  EXPECT_EQ(1, counts["order.closed"]);
  // reserve.completed is applied unless the close got there first.
  EXPECT_EQ(live_inputs.size(), size_t(6 + counts.value("reserve.completed", 0)));
  for (const auto &in : live_inputs) {
    json doc = json::parse(in);
    EXPECT_EQ(doc.dump(-1, ' ', false, json::error_handler_t::replace), in);
    EXPECT_EQ(tenant, doc["tenant"]);
    EXPECT_EQ("ord\"er", doc["saga"]);
    EXPECT_EQ(corr, doc["correlation_id"]);
    EXPECT_TRUE(doc["event"].is_object());
  }
  EXPECT_TRUE(json::parse(live_inputs[0])["state"].is_null());

  for (const char *opt : {static_cast<const char *>(nullptr), "{\"commit\":true}"}) {
    char *out = nullptr;
    ASSERT_EQ(WF_OK, wf_saga_replay(e, tenant, "ord\"er", corr, opt, &out)) << wf_last_error();
    std::string text = out;
    wf_free(out);
    json r = json::parse(text);
    EXPECT_EQ(r.dump(-1, ' ', false, json::error_handler_t::replace), text);
    EXPECT_EQ(live["state"], r["state"]);
    EXPECT_EQ(live["version"], r["events"]);
    EXPECT_TRUE(r["done"].get<bool>());
    std::vector<std::string> replay_inputs = red.take();
    ASSERT_EQ(live_inputs.size(), replay_inputs.size());
    for (size_t i = 0; i < live_inputs.size(); ++i)
      EXPECT_EQ(live_inputs[i], replay_inputs[i]) << "input " << i;
  }
  // The committed replay stored the same state.
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_saga_get(e, tenant, "ord\"er", corr, &out));
  json after = json::parse(out);
  wf_free(out);
  EXPECT_EQ(live["state"], after["state"]);
  EXPECT_EQ("done", after["status"]);
  // A committed replay is a state change: it bumps the version (docs/sagas.md).
  EXPECT_EQ(live["version"].get<int64_t>() + 1, after["version"].get<int64_t>());
  // Encryption at rest still covers envelopes and states.
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  std::string file = slurp(path) + slurp(path + "-wal");
  EXPECT_EQ(!encrypted, file.find("replay-marker-7f3a") != std::string::npos);
  // Reopened, the replay reads the stored texts the same way.
  open(opts.c_str());
  ASSERT_EQ(WF_OK, wf_saga_register(e, "ord\"er", "{\"start\":[\"order.placed\"]}",
                                    RecordingReducer::fn, &red));
  ASSERT_EQ(WF_OK, wf_saga_replay(e, tenant, "ord\"er", corr, nullptr, &out)) << wf_last_error();
  EXPECT_EQ(live["state"], json::parse(out)["state"]);
  wf_free(out);
  EXPECT_EQ(live_inputs, red.take());
}

INSTANTIATE_TEST_SUITE_P(Encryption, SagaReplayTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool> &i) {
                           return i.param ? std::string("Encrypted") : std::string("Plain");
                         });

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
  EXPECT_EQ(std::string("schedule:k@").append(std::to_string(due)), s.seen[0]["key"]);
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
