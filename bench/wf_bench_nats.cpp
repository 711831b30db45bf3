// wf_bench_nats: NATS JetStream through the engine vs bare libnats, in the
// same run, against a nats-server -js the program starts on 127.0.0.1
// (docs/performance.md, "NATS JetStream").
//
//  1. publishes/s with PubAck and Nats-Msg-Id: bare libnats async publish
//     loop vs jobs of a {"type":"nats"} effect (enqueued first, then the
//     relay publishes them and completes each on its PubAck);
//  2. inbound events/s: a bare pull consumer (fetch + ack) vs a
//     {"type":"nats_consumer"} turning the same messages into events, each
//     starting a saga instance (the time until every instance took its step).
//
// Usage: wf_bench_nats [N=20000] [durability=full|normal]
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "../tests/nats/nats_server.h"
#include "wfengine.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

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

void need(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "wf_bench_nats: %s failed: %s\n", what, wf_last_error());
    std::exit(1);
  }
}

std::atomic<int64_t> g_acked{0};
void count_ack(jsCtx *, natsMsg *m, jsPubAck *pa, jsPubAckErr *, void *) {
  if (pa) ++g_acked;
  natsMsg_Destroy(m);
}

// Bare libnats: async publishes with Nats-Msg-Id, all PubAcks awaited.
double bare_publish(const std::string &url, int n) {
  natsConnection *nc = nullptr;
  jsCtx *js = nullptr;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 4096;
  jo.PublishAsync.AckHandler = count_ack;
  need(natsConnection_ConnectTo(&nc, url.c_str()) == NATS_OK &&
           natsConnection_JetStream(&js, nc, &jo) == NATS_OK,
       "connect");
  std::string payload = R"({"order":"o-123456","amount":4200,"currency":"EUR"})";
  g_acked = 0;
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    natsMsg *m = nullptr;
    natsMsg_Create(&m, "bare.t1", nullptr, payload.data(), static_cast<int>(payload.size()));
    std::string id = "bare-" + std::to_string(i);
    natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str());
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    need(js_PublishMsgAsync(js, &m, &po) == NATS_OK, "js_PublishMsgAsync");
    natsMsg_Destroy(m);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  need(js_PublishAsyncComplete(js, &po) == NATS_OK, "js_PublishAsyncComplete");
  double s = secs(t0);
  need(g_acked == n, "all PubAcks");
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return s;
}

double engine_publish(const std::string &url, const std::string &dir, const char *dur, int n) {
  std::string db = dir + "/pub.db";
  wf_engine *e = nullptr;
  std::string opts = std::string("{\"durability\":\"") + dur + "\"}";
  need(wf_open(db.c_str(), opts.c_str(), &e) == WF_OK, "wf_open");
  json cfg = {{"type", "nats"},
              {"url", url},
              {"subject", "eng.{tenant}"},
              {"timeout_ms", 10000},
              {"max_pending", 4096}};
  need(wf_effect_register_builtin(e, "pub", cfg.dump().c_str()) == WF_OK, "register");
  std::string payload = R"({"order":"o-123456","amount":4200,"currency":"EUR"})";
  for (int b = 0; b < n; b += 1000) {
    json batch = json::array();
    for (int i = b; i < std::min(n, b + 1000); ++i)
      batch.push_back({{"effect", "pub"},
                       {"tenant", "t1"},
                       {"key", "job-" + std::to_string(i)},
                       {"payload", json::parse(payload)}});
    need(wf_enqueue_batch(e, batch.dump().c_str(), nullptr) == WF_OK, "wf_enqueue_batch");
  }
  auto t0 = Clock::now();
  need(wf_start(e) == WF_OK, "wf_start");
  need(wfnats::wait_until([&] { return rows(db, "SELECT count(*) FROM wf_jobs") == 0; }, 600000),
       "all jobs done");
  double s = secs(t0);
  need(rows(db, "SELECT count(*) FROM wf_dead") == 0, "no dead letters");
  wf_close(e);
  return s;
}

// Bare pull consumer: fetch batches and ack each message until n are acked.
double bare_consume(const std::string &url, int n) {
  natsConnection *nc = nullptr;
  jsCtx *js = nullptr;
  need(natsConnection_ConnectTo(&nc, url.c_str()) == NATS_OK &&
           natsConnection_JetStream(&js, nc, nullptr) == NATS_OK,
       "connect");
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = "EV";
  natsSubscription *sub = nullptr;
  jsErrCode je;
  need(js_PullSubscribe(&sub, js, "ev.>", "bare", nullptr, &so, &je) == NATS_OK, "subscribe");
  auto t0 = Clock::now();
  int got = 0;
  while (got < n) {
    natsMsgList l{};
    if (natsSubscription_Fetch(&l, sub, 256, 2000, &je) != NATS_OK) continue;
    for (int i = 0; i < l.Count; ++i) natsMsg_Ack(l.Msgs[i], nullptr);
    got += l.Count;
    natsMsgList_Destroy(&l);
  }
  natsConnection_Flush(nc);
  double s = secs(t0);
  natsSubscription_Destroy(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return s;
}

int step(void *, const char *in, size_t len, wf_buf *out) {
  (void)in;
  (void)len;
  static const char o[] = R"({"state":{"seen":true}})";
  return wf_buf_set(out, o, sizeof o - 1) == WF_OK ? 0 : 1;
}

double engine_consume(const std::string &url, const std::string &dir, const char *dur, int n,
                      double *events_s) {
  std::string db = dir + "/in.db";
  wf_engine *e = nullptr;
  std::string opts = std::string("{\"durability\":\"") + dur + "\"}";
  need(wf_open(db.c_str(), opts.c_str(), &e) == WF_OK, "wf_open");
  need(wf_saga_register(e, "s", R"({"start":["placed"]})", step, nullptr) == WF_OK, "saga");
  json cfg = {{"type", "nats_consumer"},
              {"url", url},
              {"stream", "EV"},
              {"durable", "eng"},
              {"subject", "ev.>"},
              {"event_type", "header:Wf-Type"},
              {"tenant", "token:1"},
              {"correlation", "token:2"},
              {"batch", 256}};
  need(wf_effect_register_builtin(e, "in", cfg.dump().c_str()) == WF_OK, "register");
  auto t0 = Clock::now();
  need(wf_start(e) == WF_OK, "wf_start");
  need(wfnats::wait_until([&] { return rows(db, "SELECT count(*) FROM wf_events") == n; }, 600000),
       "all events");
  *events_s = secs(t0);
  need(wfnats::wait_until(
           [&] {
             return rows(db, "SELECT count(*) FROM wf_saga_inbox") == 0 &&
                    rows(db, "SELECT count(*) FROM wf_sagas") == n;
           },
           600000),
       "all saga steps");
  double s = secs(t0);
  wf_close(e);
  return s;
}

}  // namespace

int main(int argc, char **argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  const char *dur = argc > 2 ? argv[2] : "full";
  wfnats::Server srv;
  need(srv.start(), "nats-server -js");
  wfnats::Client cl(srv.url());
  need(cl.ok() && cl.add_stream("BARE", {"bare.>"}) && cl.add_stream("ENG", {"eng.>"}) &&
           cl.add_stream("EV", {"ev.>"}),
       "streams");
  char tmpl[] = "/tmp/wfbenchnats-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::printf("wf_bench_nats: N=%d durability=%s nats-server on %s\n", n, dur, srv.url().c_str());

  double bare = bare_publish(srv.url(), n);
  double eng = engine_publish(srv.url(), dir, dur, n);
  need(cl.stream_msgs("ENG") == n, "stream holds N");
  std::printf("publish  bare libnats async + PubAck : %8.0f msg/s\n", n / bare);
  std::printf(
      "publish  engine nats effect (job->PubAck->completion committed): %8.0f jobs/s  "
      "(%.2f of bare)\n",
      n / eng, bare / eng);

  // The inbound stream: N messages, one saga instance each.
  for (int i = 0; i < n; ++i)
    need(cl.publish("ev.t1.o" + std::to_string(i), R"({"amount":42})",
                    {{"Wf-Type", "placed"}, {"Nats-Msg-Id", "m" + std::to_string(i)}}),
         "publish inbound");
  double bare_in = bare_consume(srv.url(), n);
  double ev_s = 0;
  double eng_in = engine_consume(srv.url(), dir, dur, n, &ev_s);
  std::printf("inbound  bare pull consumer fetch+ack  : %8.0f msg/s\n", n / bare_in);
  std::printf(
      "inbound  engine nats_consumer -> events committed: %8.0f events/s (%.2f of bare); "
      "-> saga steps committed: %8.0f /s\n",
      n / ev_s, bare_in / ev_s, n / eng_in);
  std::string cmd = "rm -rf '" + dir + "'";
  if (system(cmd.c_str()) != 0) return 1;
  return 0;
}
