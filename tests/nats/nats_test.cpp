// NATS JetStream providers against a real nats-server -js started by the
// test on 127.0.0.1 (tests/nats/nats_server.h): outbound publish with PubAck
// and Nats-Msg-Id dedupe, publish failures retried, inbound consumer events
// committed before the ack, redeliveries deduplicated, several engines on one
// durable consumer.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>
#include <string>

#include "nats_server.h"
#include "wfengine.h"

namespace {

using json = nlohmann::json;
using wfnats::wait_until;

int64_t rows(const std::string &path, const char *sql) {
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

std::string header(natsMsg *m, const char *name) {
  const char *v = nullptr;
  return natsMsgHeader_Get(m, name, &v) == NATS_OK && v ? v : "";
}

// Counts the events of its instance in the state: {"n": k}.
int count_reducer(void *, const char *in, size_t len, wf_buf *out) {
  json i = json::parse(std::string(in, len));
  int n = i["state"].is_object() ? i["state"].value("n", 0) : 0;
  json o = {{"state", {{"n", n + 1}}}};
  std::string s = o.dump();
  return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
}

class NatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (system("command -v nats-server >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "nats-server is not installed (scripts/deps.sh)";
    char tmpl[] = "/tmp/wfnatstest-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    for (auto *e : engines_) wf_close(e);
    if (!dir_.empty()) {
      std::string cmd = "rm -rf '" + dir_ + "'";
      if (system(cmd.c_str()) != 0) {
      }
    }
  }
  wf_engine *open(const std::string &name) {
    wf_engine *e = nullptr;
    std::string path = dir_ + "/" + name + ".db";
    EXPECT_EQ(WF_OK, wf_open(path.c_str(), "{\"poll_ms\":50}", &e)) << wf_last_error();
    engines_.push_back(e);
    return e;
  }
  std::string db(const std::string &name) { return dir_ + "/" + name + ".db"; }

  std::string dir_;
  std::vector<wf_engine *> engines_;
};

TEST_F(NatsTest, PublishCompletesOnPubAckWithMsgIdAndHeaders) {
  wfnats::Server srv;
  ASSERT_TRUE(srv.start());
  wfnats::Client cl(srv.url());
  ASSERT_TRUE(cl.ok());
  ASSERT_TRUE(cl.add_stream("CMD", {"cmd.>"}));
  wf_engine *e = open("a");
  json cfg = {{"type", "nats"},
              {"url", srv.url()},
              {"subject", "cmd.{tenant}.{meta.kind}"},
              {"headers", {{"Wf-Type", "{meta.kind}"}, {"Wf-Key", "{key}"}}},
              {"timeout_ms", 3000},
              {"max_attempts", 5}};
  ASSERT_EQ(WF_OK, wf_effect_register_builtin(e, "pub", cfg.dump().c_str())) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  const std::string tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  json job = {{"effect", "pub"},
              {"tenant", "t1"},
              {"key", "k-1"},
              {"payload", {{"a", 1}}},
              {"metadata", {{"kind", "charge"}, {"traceparent", tp}, {"tracestate", "x=1"}}}};
  ASSERT_EQ(WF_OK, wf_enqueue(e, job.dump().c_str(), nullptr)) << wf_last_error();
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_jobs") == 0; }));
  EXPECT_EQ(0, rows(db("a"), "SELECT count(*) FROM wf_dead"));
  EXPECT_EQ(1, cl.stream_msgs("CMD"));
  natsMsg *m = nullptr;
  jsErrCode je;
  ASSERT_EQ(NATS_OK, js_GetMsg(&m, cl.js(), "CMD", 1, nullptr, &je));
  EXPECT_STREQ("cmd.t1.charge", natsMsg_GetSubject(m));
  EXPECT_EQ(json({{"a", 1}}),
            json::parse(std::string(natsMsg_GetData(m), natsMsg_GetDataLength(m))));
  EXPECT_EQ("k-1", header(m, "Nats-Msg-Id"));
  EXPECT_EQ("charge", header(m, "Wf-Type"));
  EXPECT_EQ("k-1", header(m, "Wf-Key"));
  // The attempt's own span in the caller's trace (docs/tracing.md): same
  // version, trace id and flags, a new span id.
  std::string got_tp = header(m, "traceparent");
  ASSERT_EQ(tp.size(), got_tp.size()) << got_tp;
  EXPECT_EQ(tp.substr(0, 36), got_tp.substr(0, 36));
  EXPECT_NE(tp.substr(36, 16), got_tp.substr(36, 16));
  EXPECT_EQ(tp.substr(52), got_tp.substr(52));
  EXPECT_EQ("x=1", header(m, "tracestate"));
  natsMsg_Destroy(m);
}

TEST_F(NatsTest, SameKeyTwiceIsStoredOnce) {
  wfnats::Server srv;
  ASSERT_TRUE(srv.start());
  wfnats::Client cl(srv.url());
  ASSERT_TRUE(cl.ok());
  ASSERT_TRUE(cl.add_stream("CMD", {"cmd.>"}));
  wf_engine *e = open("a");
  json cfg = {{"type", "nats"}, {"url", srv.url()}, {"subject", "cmd.fixed"}};
  ASSERT_EQ(WF_OK, wf_effect_register_builtin(e, "pub", cfg.dump().c_str())) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  // Two jobs (two tenants, so the engine holds both) with the same key: the
  // stream's duplicate window keeps one message.
  for (const char *t : {"t1", "t2"}) {
    json job = {{"effect", "pub"}, {"tenant", t}, {"key", "same"}, {"payload", {{"t", t}}}};
    ASSERT_EQ(WF_OK, wf_enqueue(e, job.dump().c_str(), nullptr));
  }
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_jobs") == 0; }));
  EXPECT_EQ(0, rows(db("a"), "SELECT count(*) FROM wf_dead"));
  EXPECT_EQ(1, cl.stream_msgs("CMD"));
}

TEST_F(NatsTest, ServerDownPublishFailsIntoRetryThenDeadLetter) {
  int port = wfnats::free_port();
  wf_engine *e = open("a");
  json cfg = {{"type", "nats"},     {"url", "nats://127.0.0.1:" + std::to_string(port)},
              {"subject", "cmd.x"}, {"timeout_ms", 200},
              {"max_attempts", 2},  {"backoff", {{"base_ms", 10}, {"cap_ms", 10}}}};
  ASSERT_EQ(WF_OK, wf_effect_register_builtin(e, "pub", cfg.dump().c_str())) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_EQ(WF_OK, wf_enqueue(e, R"({"effect":"pub","key":"k"})", nullptr));
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_dead") == 1; }));
  EXPECT_EQ(2, rows(db("a"), "SELECT count(*) FROM wf_attempts"));
}

TEST_F(NatsTest, NoStreamForTheSubjectIsRetriedThenDeadLetter) {
  wfnats::Server srv;
  ASSERT_TRUE(srv.start());
  wf_engine *e = open("a");
  // The server is up but no stream takes "nostream.x": no PubAck comes.
  json cfg = {{"type", "nats"},          {"url", srv.url()},
              {"subject", "nostream.x"}, {"timeout_ms", 300},
              {"max_attempts", 2},       {"backoff", {{"base_ms", 10}, {"cap_ms", 10}}}};
  ASSERT_EQ(WF_OK, wf_effect_register_builtin(e, "pub", cfg.dump().c_str())) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_EQ(WF_OK, wf_enqueue(e, R"({"effect":"pub","key":"k"})", nullptr));
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_dead") == 1; }));
  EXPECT_EQ(1, rows(db("a"), "SELECT count(*) FROM wf_dead WHERE reason LIKE '%nats publish:%'"));
}

TEST_F(NatsTest, PublishRetriedUntilServerComesUp) {
  wfnats::Server srv;
  srv.set_port(wfnats::free_port());
  wf_engine *e = open("a");
  json cfg = {{"type", "nats"},       {"url", srv.url()},
              {"subject", "cmd.x"},   {"timeout_ms", 300},
              {"max_attempts", 1000}, {"backoff", {{"base_ms", 20}, {"cap_ms", 50}}}};
  ASSERT_EQ(WF_OK, wf_effect_register_builtin(e, "pub", cfg.dump().c_str())) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_EQ(WF_OK, wf_enqueue(e, R"({"effect":"pub","key":"k","payload":1})", nullptr));
  // Attempts fail while nothing listens.
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_attempts") >= 2; }));
  ASSERT_TRUE(srv.start());
  wfnats::Client cl(srv.url());
  ASSERT_TRUE(cl.ok());
  ASSERT_TRUE(cl.add_stream("CMD", {"cmd.>"}));
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_jobs") == 0; }));
  EXPECT_EQ(0, rows(db("a"), "SELECT count(*) FROM wf_dead"));
  EXPECT_EQ(1, cl.stream_msgs("CMD"));  // buffered copies of retries deduplicated
}

json consumer_cfg(const std::string &url, const std::string &durable) {
  return {{"type", "nats_consumer"},
          {"url", url},
          {"stream", "EV"},
          {"durable", durable},
          {"subject", "ev.>"},
          {"event_type", "header:Wf-Type"},
          {"tenant", "token:1"},
          {"correlation", "token:2"},
          {"batch", 16}};
}

TEST_F(NatsTest, ConsumerCommitsEventsThenAcks) {
  wfnats::Server srv;
  ASSERT_TRUE(srv.start());
  wfnats::Client cl(srv.url());
  ASSERT_TRUE(cl.ok());
  ASSERT_TRUE(cl.add_stream("EV", {"ev.>"}));
  wf_engine *e = open("a");
  ASSERT_EQ(WF_OK, wf_saga_register(e, "s", R"({"start":["placed"]})", count_reducer, nullptr));
  ASSERT_EQ(WF_OK,
            wf_effect_register_builtin(e, "in", consumer_cfg(srv.url(), "eng").dump().c_str()))
      << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(cl.publish(
        "ev.t1.o" + std::to_string(i), "{\"i\":" + std::to_string(i) + "}",
        {{"Wf-Type", "placed"}, {"Nats-Msg-Id", "m" + std::to_string(i)}, {"traceparent", tp}}));
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_events") == 20; }));
  // Every message acked once its event was committed.
  ASSERT_TRUE(wait_until(
      [&] { return cl.consumer_pending("EV", "eng") == std::make_pair<int64_t, int64_t>(0, 0); }));
  EXPECT_EQ(20, rows(db("a"),
                     "SELECT count(*) FROM wf_events WHERE tenant = 't1' AND "
                     "event_id LIKE 'm%' AND type = 'placed'"));
  ASSERT_TRUE(wait_until([&] {
    char *out = nullptr;
    if (wf_saga_get(e, "t1", "s", "o7", &out) != WF_OK) return false;
    json st = json::parse(out);
    wf_free(out);
    return st["state"].value("n", 0) == 1;
  }));
  EXPECT_EQ(1, rows(db("a"),
                    "SELECT count(*) FROM wf_events WHERE event_id = 'm7' AND "
                    "json_extract(envelope, '$.payload.i') = 7 AND "
                    "json_extract(envelope, '$.traceparent') IS NOT NULL"));
}

TEST_F(NatsTest, RedeliveryOfCommittedEventIsDeduplicatedAndAcked) {
  wfnats::Server srv;
  ASSERT_TRUE(srv.start());
  wfnats::Client cl(srv.url());
  ASSERT_TRUE(cl.ok());
  ASSERT_TRUE(cl.add_stream("EV", {"ev.>"}));
  wf_engine *e = open("a");
  ASSERT_EQ(WF_OK, wf_saga_register(e, "s", R"({"start":["placed"]})", count_reducer, nullptr));
  // The event was committed before (as when an engine dies between the
  // commit and the ack): the message delivered again must not apply twice.
  ASSERT_EQ(
      WF_OK,
      wf_submit(e, R"({"event_id":"dup","type":"placed","tenant":"t1","correlation_id":"o9"})"));
  ASSERT_EQ(WF_OK,
            wf_effect_register_builtin(e, "in", consumer_cfg(srv.url(), "eng").dump().c_str()));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(cl.publish("ev.t1.o9", "{}", {{"Wf-Type", "placed"}, {"Nats-Msg-Id", "dup"}}));
  // The same event id under another JetStream id: the engine dedupes it too.
  ASSERT_TRUE(
      cl.publish("ev.t1.o9", "{}", {{"Wf-Type", "placed"}, {"Nats-Msg-Id", "dup"}, {"X", "1"}}));
  ASSERT_TRUE(
      cl.publish("ev.t1.o9", "{}", {{"Wf-Type", "placed"}}));  // id from the stream sequence
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_events") == 2; }));
  ASSERT_TRUE(wait_until(
      [&] { return cl.consumer_pending("EV", "eng") == std::make_pair<int64_t, int64_t>(0, 0); }));
  EXPECT_EQ(1, rows(db("a"), "SELECT count(*) FROM wf_events WHERE event_id = 'dup'"));
  EXPECT_EQ(1, rows(db("a"), "SELECT count(*) FROM wf_events WHERE event_id LIKE 'nats:EV:%'"));
  ASSERT_TRUE(wait_until([&] {
    char *out = nullptr;
    if (wf_saga_get(e, "t1", "s", "o9", &out) != WF_OK) return false;
    json st = json::parse(out);
    wf_free(out);
    return st["state"].value("n", 0) == 2 && st.value("pending", 1) == 0;
  }));
}

TEST_F(NatsTest, UnmappableMessageIsTerminatedNotRedelivered) {
  wfnats::Server srv;
  ASSERT_TRUE(srv.start());
  wfnats::Client cl(srv.url());
  ASSERT_TRUE(cl.ok());
  ASSERT_TRUE(cl.add_stream("EV", {"ev.>"}));
  wf_engine *e = open("a");
  ASSERT_EQ(WF_OK,
            wf_effect_register_builtin(e, "in", consumer_cfg(srv.url(), "eng").dump().c_str()));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(cl.publish("ev.t1.o1", "{}", {{"Nats-Msg-Id", "a"}}));  // no type
  ASSERT_TRUE(cl.publish("ev.t1.o2", "not json", {{"Wf-Type", "x"}, {"Nats-Msg-Id", "b"}}));
  ASSERT_TRUE(cl.publish("ev.t1.o3", "{}", {{"Wf-Type", "x"}, {"Nats-Msg-Id", "c"}}));  // fine
  ASSERT_TRUE(wait_until([&] { return rows(db("a"), "SELECT count(*) FROM wf_events") == 1; }));
  ASSERT_TRUE(wait_until(
      [&] { return cl.consumer_pending("EV", "eng") == std::make_pair<int64_t, int64_t>(0, 0); }));
  EXPECT_EQ(1, rows(db("a"), "SELECT count(*) FROM wf_events WHERE event_id = 'c'"));
}

TEST_F(NatsTest, TwoEnginesShareOneDurableConsumer) {
  wfnats::Server srv;
  ASSERT_TRUE(srv.start());
  wfnats::Client cl(srv.url());
  ASSERT_TRUE(cl.ok());
  ASSERT_TRUE(cl.add_stream("EV", {"ev.>"}));
  wf_engine *a = open("a");
  wf_engine *b = open("b");
  for (auto *e : {a, b}) {
    ASSERT_EQ(WF_OK, wf_effect_register_builtin(e, "in",
                                                consumer_cfg(srv.url(), "shared").dump().c_str()));
    ASSERT_EQ(WF_OK, wf_start(e));
  }
  const int n = 300;
  for (int i = 0; i < n; ++i)
    ASSERT_TRUE(cl.publish("ev.t1.o" + std::to_string(i), "{}",
                           {{"Wf-Type", "placed"}, {"Nats-Msg-Id", "m" + std::to_string(i)}}));
  auto total = [&] {
    return rows(db("a"), "SELECT count(*) FROM wf_events") +
           rows(db("b"), "SELECT count(*) FROM wf_events");
  };
  ASSERT_TRUE(wait_until([&] { return total() == n; }));
  ASSERT_TRUE(wait_until([&] {
    return cl.consumer_pending("EV", "shared") == std::make_pair<int64_t, int64_t>(0, 0);
  }));
  EXPECT_EQ(n, total());  // each message became one event, in one of the two engines
}

TEST_F(NatsTest, BadConfigsNameTheKey) {
  wf_engine *e = open("a");
  struct Case {
    const char *cfg, *needle;
  } cases[] = {
      {R"({"type":"nats","subject":"a"})", "\"url\""},
      {R"({"type":"nats","url":"http://x","subject":"a"})", "\"url\""},
      {R"({"type":"nats","url":"nats://127.0.0.1:1","subject":"a.*"})", "\"subject\""},
      {R"({"type":"nats","url":"nats://127.0.0.1:1","subject":"a.{nope}"})", "{nope}"},
      {R"({"type":"nats","url":"nats://127.0.0.1:1","subject":"a","bogus":1})", "\"bogus\""},
      {R"({"type":"nats","url":"nats://127.0.0.1:1","subject":"a","headers":{"Nats-Msg-Id":"x"}})",
       "Nats-Msg-Id"},
      {R"({"type":"nats_consumer","url":"nats://127.0.0.1:1","stream":"S","durable":"d"})",
       "\"event_type\""},
      {R"({"type":"nats_consumer","url":"nats://127.0.0.1:1","stream":"S.x","durable":"d","event_type":"header:T"})",
       "\"stream\""},
      {R"({"type":"nats_consumer","url":"nats://127.0.0.1:1","stream":"S","durable":"d","event_type":"hdr:T"})",
       "\"event_type\""},
      {R"({"type":"nats_consumer","url":"nats://127.0.0.1:1","stream":"S","durable":"d","event_type":"header:T","batch":0})",
       "\"batch\""},
  };
  for (const auto &c : cases) {
    EXPECT_EQ(WF_EINVAL, wf_effect_register_builtin(e, "x", c.cfg)) << c.cfg;
    EXPECT_NE(std::string::npos, std::string(wf_last_error()).find(c.needle))
        << c.cfg << " -> " << wf_last_error();
  }
  // Policy keys are taken from the same document.
  EXPECT_EQ(
      WF_OK,
      wf_effect_register_builtin(
          e, "ok",
          R"({"type":"nats","url":"nats://127.0.0.1:1","subject":"a","max_attempts":3,"concurrency":4,"backoff":{"base_ms":5}})"))
      << wf_last_error();
}

}  // namespace
