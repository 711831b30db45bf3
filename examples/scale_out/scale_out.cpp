// Scale-out over NATS JetStream: two engines, two databases, one broker.
//
//   order engine (orders.db)                     worker engine (worker.db)
//   saga "order"                                 saga "runner"
//     order.placed ─► job "commands" ──► CMDS ──► nats_consumer "cmds_in"
//                     (nats effect,      stream    │ event cmd.charge
//                      subject cmds.<tenant>)      ▼
//                                                job "execute" (C callback:
//                                                records the execution in
//                                                worker.db, idempotently)
//                                                  │ execute.completed
//     event cmd.result ◄─ nats_consumer ◄─ RESULTS ◄─ job "replies" (nats effect,
//     ─► saga done        "results_in"     stream     subject results.<tenant>)
//
// Every hop is at least once (jobs are retried, messages redelivered until
// acked) and every receiver deduplicates: JetStream by Nats-Msg-Id (the job
// key) within its duplicate window, the engines by event id (Nats-Msg-Id),
// and the executor by the command id in its own table, written in the same
// transaction that records the execution. So a worker killed at any point
// and restarted executes every command exactly once (docs/scale-out.md).
//
// Usage:
//   wf_scale_out setup  URL                 create the CMDS and RESULTS streams
//   wf_scale_out worker DB URL              run a worker until SIGTERM
//   wf_scale_out order  DB URL N [TIMEOUT]  place N orders, wait for every saga
//                                           (TIMEOUT ms, default 120000); exit 0
//                                           when all N are done
//   wf_scale_out freeport                   print a free TCP port on 127.0.0.1
#include <arpa/inet.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "wfengine.h"

using json = nlohmann::json;

namespace {

int die(const char *what) {
  std::fprintf(stderr, "wf_scale_out: %s: %s\n", what, wf_last_error());
  return 1;
}

int reply(wf_buf *out, const json &o) {
  std::string s = o.dump();
  return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
}

// ------------------------------------------------------------------ setup

int setup(const char *url) {
  natsConnection *nc = nullptr;
  jsCtx *js = nullptr;
  if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
      natsConnection_JetStream(&js, nc, nullptr) != NATS_OK) {
    std::fprintf(stderr, "wf_scale_out: cannot connect to %s\n", url);
    return 1;
  }
  int rc = 0;
  for (auto [name, subj] : {std::pair{"CMDS", "cmds.>"}, std::pair{"RESULTS", "results.>"}}) {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = name;
    const char *subjects[] = {subj};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = int64_t{10} * 60 * 1000 * 1000000;  // 10 min duplicate window
    jsStreamInfo *si = nullptr;
    jsErrCode je;
    if (js_AddStream(&si, js, &sc, nullptr, &je) != NATS_OK) {
      std::fprintf(stderr, "wf_scale_out: cannot create stream %s (%d)\n", name, int(je));
      rc = 1;
    }
    jsStreamInfo_Destroy(si);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return rc;
}

// ------------------------------------------------------------------ order

// order.placed -> command; commands.completed (published) -> waiting;
// cmd.result -> done.
int order_reducer(void *, const char *in, size_t len, wf_buf *out) {
  json i = json::parse(std::string(in, len));
  const json &ev = i["event"];
  std::string type = ev.value("type", "");
  std::string corr = i.value("correlation_id", "");
  json st = i["state"].is_object() ? i["state"] : json::object();
  if (type == "order.placed") {
    st["status"] = "commanded";
    return reply(out,
                 {{"state", st},
                  {"commands",
                   {{{"effect", "commands"},
                     {"key", corr + ":charge"},
                     {"payload", {{"order", corr}, {"amount", ev["payload"].value("amount", 0)}}},
                     {"metadata", {{"type", "cmd.charge"}}}}}}});
  }
  if (type == "commands.completed") {
    if (st.value("status", "") == "commanded") st["status"] = "published";
    return reply(out, {{"state", st}});
  }
  if (type == "cmd.result") {
    st["status"] = "done";
    st["result"] = ev["payload"];
    return reply(out, {{"state", st}, {"done", true}});
  }
  if (type == "commands.failed") {
    st["status"] = "failed";
    return reply(out, {{"state", st}, {"done", true}});
  }
  return reply(out, {{"state", st}});
}

int order(const char *db, const std::string &url, int n, int64_t timeout_ms) {
  wf_engine *e = nullptr;
  if (wf_open(db, "{\"poll_ms\":100}", &e) != WF_OK) return die("wf_open");
  if (wf_saga_register(e, "order", R"({"start":["order.placed"],"on":["cmd.result"]})",
                       order_reducer, nullptr) != WF_OK)
    return die("wf_saga_register");
  json pub = {
      {"type", "nats"},
      {"url", url},
      {"subject", "cmds.{tenant}"},
      {"headers", {{"Wf-Type", "{meta.type}"}, {"Wf-Correlation", "{meta.correlation_id}"}}},
      {"timeout_ms", 5000},
      {"max_attempts", 1000},
      {"backoff", {{"base_ms", 100}, {"cap_ms", 2000}}}};
  if (wf_effect_register_builtin(e, "commands", pub.dump().c_str()) != WF_OK)
    return die("register commands");
  json in = {{"type", "nats_consumer"},
             {"url", url},
             {"stream", "RESULTS"},
             {"durable", "orders"},
             {"subject", "results.>"},
             {"event_type", "header:Wf-Type"},
             {"correlation", "header:Wf-Correlation"},
             {"tenant", "token:1"},
             {"ack_wait_ms", 5000}};
  if (wf_effect_register_builtin(e, "results_in", in.dump().c_str()) != WF_OK)
    return die("register results_in");
  if (wf_start(e) != WF_OK) return die("wf_start");
  for (int i = 0; i < n; ++i) {
    json ev = {{"event_id", "placed-" + std::to_string(i)},
               {"type", "order.placed"},
               {"tenant", "shop"},
               {"correlation_id", "o" + std::to_string(i)},
               {"payload", {{"amount", 10 + i}}}};
    int rc = wf_submit(e, ev.dump().c_str());
    if (rc != WF_OK && rc != WF_EEXIST) return die("wf_submit");
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int done = 0;
  while (true) {
    done = 0;
    for (int i = 0; i < n; ++i) {
      char *s = nullptr;
      std::string corr = "o" + std::to_string(i);
      if (wf_saga_get(e, "shop", "order", corr.c_str(), &s) == WF_OK) {
        json st = json::parse(s);
        wf_free(s);
        if (st["status"] == "done" && st["state"].value("status", "") == "done") ++done;
      }
    }
    if (done == n || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::printf("orders done: %d of %d\n", done, n);
  wf_close(e);
  return done == n ? 0 : 1;
}

// ----------------------------------------------------------------- worker

std::atomic<bool> g_stop{false};
void on_term(int) { g_stop = true; }

// The "execute" effect: runs each command on an executor thread (the effect
// callback must not block). The execution and its idempotency check are one
// host transaction in the worker's database, so a command whose job runs
// again (the worker died before the completion was committed) is found
// executed and not run twice.
struct Executor {
  wf_engine *e = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<wf_job *> q;
  bool stop = false;

  static void effect(void *u, wf_job *j) {
    auto *x = static_cast<Executor *>(u);
    std::lock_guard<std::mutex> g(x->mu);
    x->q.push_back(j);
    x->cv.notify_one();
  }

  void run() {
    while (true) {
      wf_job *j = nullptr;
      {
        std::unique_lock<std::mutex> g(mu);
        cv.wait(g, [&] { return stop || !q.empty(); });
        if (q.empty()) return;
        j = q.front();
        q.pop_front();
      }
      execute(j);
    }
  }

  void execute(wf_job *j) {
    size_t len = 0;
    const char *text = wf_job_payload(j, &len);
    json p = json::parse(std::string(text, len));
    std::string cmd = std::string(wf_job_tenant(j)) + "/" + p.value("order", "");
    wf_tx *t = nullptr;
    if (wf_tx_begin(e, &t) != WF_OK) {
      wf_job_retry(j, wf_last_error(), 200);
      return;
    }
    char *rows = nullptr;
    json params = json::array({cmd});
    int rc = wf_tx_exec(t, "SELECT count(*) AS n FROM executions WHERE cmd = ?1",
                        params.dump().c_str(), &rows);
    bool done_before = rc == WF_OK && json::parse(rows)[0]["n"].get<int>() > 0;
    wf_free(rows);
    if (rc == WF_OK) {
      // The effect itself (charging a card, say) would happen here, keyed by
      // `cmd` at the provider; this example records it.
      rc = done_before ? wf_tx_exec(t, "INSERT INTO skipped(cmd) VALUES (?1)",
                                    params.dump().c_str(), nullptr)
                       : wf_tx_exec(t, "INSERT INTO executions(cmd, pid) VALUES (?1, ?2)",
                                    json::array({cmd, getpid()}).dump().c_str(), nullptr);
    }
    if (rc != WF_OK || wf_tx_commit(t) != WF_OK) {
      if (rc != WF_OK) wf_tx_rollback(t);
      wf_job_retry(j, "executor transaction failed", 200);
      return;
    }
    json result = {{"order", p.value("order", "")}, {"charged", p.value("amount", 0)}};
    wf_job_complete(j, result.dump().c_str());
  }
};

// cmd.charge -> job "execute"; execute.completed -> job "replies" carrying
// the result; done.
int runner_reducer(void *, const char *in, size_t len, wf_buf *out) {
  json i = json::parse(std::string(in, len));
  const json &ev = i["event"];
  std::string type = ev.value("type", "");
  std::string corr = i.value("correlation_id", "");
  if (type == "cmd.charge")
    return reply(
        out, {{"state", {{"status", "executing"}}},
              {"commands",
               {{{"effect", "execute"}, {"key", corr + ":exec"}, {"payload", ev["payload"]}}}}});
  if (type == "execute.completed")
    return reply(out, {{"state", {{"status", "replying"}}},
                       {"commands",
                        {{{"effect", "replies"},
                          {"key", corr + ":result"},
                          {"payload", ev["payload"].value("result", json())},
                          {"metadata", {{"type", "cmd.result"}}}}}}});
  if (type == "replies.completed")
    return reply(out, {{"state", {{"status", "done"}}}, {"done", true}});
  return reply(out, {{"state", i["state"]}});
}

int worker(const char *db, const std::string &url) {
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  wf_engine *e = nullptr;
  if (wf_open(db, "{\"poll_ms\":100}", &e) != WF_OK) return die("wf_open");
  wf_tx *t = nullptr;
  if (wf_tx_begin(e, &t) != WF_OK ||
      wf_tx_exec(t,
                 "CREATE TABLE IF NOT EXISTS executions(n INTEGER PRIMARY KEY, cmd TEXT NOT NULL, "
                 "pid INTEGER)",
                 nullptr, nullptr) != WF_OK ||
      wf_tx_exec(t, "CREATE TABLE IF NOT EXISTS skipped(n INTEGER PRIMARY KEY, cmd TEXT)", nullptr,
                 nullptr) != WF_OK ||
      wf_tx_commit(t) != WF_OK)
    return die("create tables");
  Executor x;
  x.e = e;
  std::thread exec([&] { x.run(); });
  if (wf_saga_register(e, "runner", R"({"start":["cmd.charge"]})", runner_reducer, nullptr) !=
      WF_OK)
    return die("wf_saga_register");
  if (wf_effect_register(e, "execute",
                         R"({"max_attempts":100,"backoff":{"base_ms":50,"cap_ms":1000}})",
                         Executor::effect, &x) != WF_OK)
    return die("register execute");
  json pub = {
      {"type", "nats"},
      {"url", url},
      {"subject", "results.{tenant}"},
      {"headers", {{"Wf-Type", "{meta.type}"}, {"Wf-Correlation", "{meta.correlation_id}"}}},
      {"timeout_ms", 5000},
      {"max_attempts", 1000},
      {"backoff", {{"base_ms", 100}, {"cap_ms", 2000}}}};
  if (wf_effect_register_builtin(e, "replies", pub.dump().c_str()) != WF_OK)
    return die("register replies");
  json in = {{"type", "nats_consumer"},
             {"url", url},
             {"stream", "CMDS"},
             {"durable", "workers"},
             {"subject", "cmds.>"},
             {"event_type", "header:Wf-Type"},
             {"correlation", "header:Wf-Correlation"},
             {"tenant", "token:1"},
             {"batch", 32},
             {"ack_wait_ms", 2000}};
  if (wf_effect_register_builtin(e, "cmds_in", in.dump().c_str()) != WF_OK)
    return die("register cmds_in");
  if (wf_start(e) != WF_OK) return die("wf_start");
  std::printf("worker %d running\n", int(getpid()));
  std::fflush(stdout);
  while (!g_stop) pause();
  wf_close(e);  // first, so no completion is pending on the executor
  {
    std::lock_guard<std::mutex> g(x.mu);
    x.stop = true;
    // Jobs still queued: the engine is closed, completing them returns
    // WF_ESTATE and frees the handle; they run again at the next start.
    for (wf_job *j : x.q) wf_job_retry(j, "worker stopping", 0);
    x.q.clear();
  }
  x.cv.notify_all();
  exec.join();
  return 0;
}

int freeport() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&a), &l) != 0)
    return 1;
  std::printf("%d\n", ntohs(a.sin_port));
  close(fd);
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "setup" && argc == 3) return setup(argv[2]);
  if (mode == "worker" && argc == 4) return worker(argv[2], argv[3]);
  if (mode == "order" && (argc == 5 || argc == 6))
    return order(argv[2], argv[3], std::atoi(argv[4]), argc == 6 ? std::atoll(argv[5]) : 120000);
  if (mode == "freeport") return freeport();
  std::fprintf(stderr,
               "usage: wf_scale_out setup URL | worker DB URL | order DB URL N [TIMEOUT_MS] | "
               "freeport\n");
  return 2;
}
