// The host process of the wfctl tests: runs an engine on the database given
// as argv[1] with a known workload, prints "ready" once that workload is in
// the state the tests expect, and keeps the engine running until its stdin
// is closed. Everything it waits for is a callback or a committed state,
// never a sleep.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "wfengine.h"

using json = nlohmann::json;

namespace {
std::mutex mu;
std::condition_variable cv;
int done_mail = 0, failed = 0;
wf_job *held = nullptr;

void must(int rc, const char *what) {
  if (rc != WF_OK) {
    std::fprintf(stderr, "host: %s: %s\n", what, wf_last_error());
    std::exit(2);
  }
}

void on_mail(void *, wf_job *j) {
  wf_job_complete(j, nullptr);
  std::lock_guard<std::mutex> g(mu);
  ++done_mail;
  cv.notify_all();
}
void on_charge(void *, wf_job *j) {
  wf_job_fail(j, "card declined");
  std::lock_guard<std::mutex> g(mu);
  ++failed;
  cv.notify_all();
}
void on_flaky(void *, wf_job *j) {
  wf_job_retry(j, "upstream 503", 0);
  std::lock_guard<std::mutex> g(mu);
  ++failed;
  cv.notify_all();
}
void on_slow(void *, wf_job *j) {  // held: the job stays running
  std::lock_guard<std::mutex> g(mu);
  held = j;
  cv.notify_all();
}
// Starts an order and asks for "ship" (an effect nobody registers).
int order_reducer(void *, const char *input, size_t len, wf_buf *out) {
  json in = json::parse(std::string(input, len));
  json o{{"state", {{"step", "shipping"}}},
         {"commands", json::array({{{"effect", "ship"}, {"payload", in["event"]["payload"]}}})},
         {"done", false}};
  std::string s = o.dump();
  return wf_buf_set(out, s.data(), s.size());
}

json stats(wf_engine *e) {
  char *out = nullptr;
  must(wf_stats(e, nullptr, &out), "wf_stats");
  json s = json::parse(out);
  wf_free(out);
  return s;
}
}  // namespace

// Mode "circuit": an effect whose every attempt fails opens its circuit
// breaker after two attempts; three jobs then wait behind it.
int run_circuit(const char *path) {
  wf_engine *e = nullptr;
  must(wf_open(path, "{\"durability\":\"normal\"}", &e), "wf_open");
  must(wf_effect_register(e, "flaky",
                          "{\"max_attempts\":100,\"circuit\":{\"window\":2,\"min_attempts\":2,"
                          "\"failure_ratio\":0.5,\"cooldown_ms\":3600000}}",
                          on_flaky, nullptr),
       "register flaky");
  for (int i = 0; i < 3; i++)
    must(wf_enqueue(e, ("{\"effect\":\"flaky\",\"key\":\"f" + std::to_string(i) + "\"}").c_str(),
                    nullptr),
         "enqueue flaky");
  must(wf_start(e), "wf_start");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    // wf_sync returns after the commit that follows the failing outcomes,
    // and the circuit's row is written before them.
    must(wf_sync(e), "wf_sync");
    json s = stats(e);
    if (s["engine"]["effects"]["flaky"]["circuit"] == "open") break;
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "host: the circuit did not open: %s\n", s.dump().c_str());
      return 3;
    }
    std::unique_lock<std::mutex> lk(mu);
    cv.wait_for(lk, std::chrono::milliseconds(100), [] { return failed >= 2; });
  }
  must(wf_sync(e), "wf_sync");
  std::printf("ready\n");
  std::fflush(stdout);
  char buf[64];
  while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
  }
  must(wf_close(e), "wf_close");
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && std::strcmp(argv[2], "circuit") == 0) return run_circuit(argv[1]);
  if (argc != 2) {
    std::fprintf(stderr, "usage: wfctl_host DB [circuit]\n");
    return 2;
  }
  wf_engine *e = nullptr;
  must(wf_open(argv[1], "{\"durability\":\"normal\",\"poll_ms\":50}", &e), "wf_open");
  must(wf_effect_register(e, "mail", nullptr, on_mail, nullptr), "register mail");
  must(wf_effect_register(e, "charge", "{\"max_attempts\":1}", on_charge, nullptr),
       "register charge");
  must(wf_effect_register(e, "slow", "{\"timeout_ms\":3600000}", on_slow, nullptr),
       "register slow");
  must(wf_saga_register(e, "order", "{\"start\":[\"order.placed\"]}", order_reducer, nullptr),
       "register saga");
  must(wf_enqueue(
           e,
           "{\"effect\":\"mail\",\"tenant\":\"acme\",\"key\":\"m1\",\"payload\":{\"to\":\"a@x\"}}",
           nullptr),
       "enqueue mail");
  must(
      wf_enqueue(e, "{\"effect\":\"charge\",\"key\":\"bad1\",\"payload\":{\"amount\":1}}", nullptr),
      "enqueue charge 1");
  must(
      wf_enqueue(e, "{\"effect\":\"charge\",\"key\":\"bad2\",\"payload\":{\"amount\":2}}", nullptr),
      "enqueue charge 2");
  must(wf_enqueue(e, "{\"effect\":\"slow\",\"tenant\":\"acme\",\"key\":\"s1\"}", nullptr),
       "enqueue slow");
  must(wf_enqueue(e, "{\"effect\":\"mail\",\"key\":\"later\",\"delay_ms\":86400000}", nullptr),
       "enqueue later");
  must(wf_schedule(e, "{\"key\":\"nightly\",\"cron\":\"0 3 * * *\",\"job\":{\"effect\":\"mail\"}}"),
       "schedule");
  must(wf_submit(e,
                 "{\"event_id\":\"ev1\",\"type\":\"order.placed\",\"correlation_id\":\"o1\","
                 "\"payload\":{\"order\":\"o1\"}}"),
       "submit order");
  must(wf_submit(e, "{\"event_id\":\"ev2\",\"type\":\"nobody.listens\"}"), "submit unmatched");
  must(wf_start(e), "wf_start");
  {
    std::unique_lock<std::mutex> lk(mu);
    if (!cv.wait_for(lk, std::chrono::seconds(30),
                     [] { return done_mail >= 1 && failed >= 2 && held != nullptr; })) {
      std::fprintf(stderr, "host: workload did not settle\n");
      return 3;
    }
  }
  // The saga step commits after its reducer ran: wait for it through
  // barriers (each wf_sync returns after a commit), bounded.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    must(wf_sync(e), "wf_sync");
    json s = stats(e);
    if (s["dead"] == 2 && s["sagas"]["active"] == 1 && s["outbox"]["by_effect"].contains("ship"))
      break;
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "host: saga step did not commit: %s\n", s.dump().c_str());
      return 3;
    }
  }
  std::printf("ready\n");
  std::fflush(stdout);
  char buf[64];
  while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
  }
  wf_job_complete(held, nullptr);
  must(wf_close(e), "wf_close");
  return 0;
}
