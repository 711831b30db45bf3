// Order saga: a durable, compensating workflow on wfengine.
//
//   order.placed ──► inventory.reserve ──► payment.charge (+ payment timeout)
//                                            │ completed          │ failed / timed out
//                                            ▼                    ▼
//                                      shipping.ship        inventory.release
//                                            │                    │
//                                            ▼                    ▼
//                                        "shipped"            "cancelled"
//
// The reducer below is the whole workflow: a pure function from (state, event)
// to (new state, commands, schedules, cancelled schedules, done). The engine
// commits each step in one transaction and feeds effect outcomes back to the
// saga as `<effect>.completed` / `<effect>.failed` events.
//
// The effect providers are simulated host callbacks: a card number ending in
// "0000" is declined (wf_job_fail), everything else succeeds.
//
// Usage: wf_order_saga [db-path] [payment-timeout-ms]
//   db-path             SQLite file (default order_saga.db)
//   payment-timeout-ms  how long the saga waits for the charge before it
//                       compensates (default 30000 = 30 s)
//
// Runs two orders: one ships, one has its card declined and is compensated
// (its inventory released). Exits 0 only if both end as expected.
#include <errno.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "wfengine.h"

using json = nlohmann::json;

namespace {

const char *kSaga = "order";
// `on` lists only the scheduled timeout: outcome events of jobs the saga
// emitted (inventory.reserve.completed, payment.charge.failed, ...) are always
// delivered to it.
const char *kSpec =
    R"({"start":["order.placed"],"on":["order.payment_timeout"],"correlation":"correlation_id"})";

struct Config {
  int64_t payment_timeout_ms;
};

std::string timeout_key(const std::string &order) { return "payment-timeout:" + order; }

// A string field of an effect's result ({"job_id","key","result"}), or "".
std::string result_field(const json &payload, const char *field) {
  const json &r = payload.value("result", json(nullptr));
  return r.is_object() ? r.value(field, "") : "";
}

// A job document for a command. Keys are derived from the order, so a step
// that is re-run never creates a second job.
json command(const std::string &effect, const std::string &order, json payload) {
  return json{{"effect", effect}, {"key", effect + ":" + order}, {"payload", std::move(payload)}};
}

// The saga's decision for one event. Pure and deterministic: it reads only its
// input and the configured timeout (no clock, no I/O, no randomness).
json decide(const Config &cfg, const json &input) {
  const std::string order = input.at("correlation_id").get<std::string>();
  const json &event = input.at("event");
  const std::string type = event.at("type").get<std::string>();
  json payload = event.value("payload", json::object());
  if (!payload.is_object()) payload = json::object();
  json state = input.at("state");
  json out{{"done", false}};
  json commands = json::array(), schedules = json::array(), cancels = json::array();

  const std::string status = state.is_object() ? state.value("status", "") : "";
  auto note = [&](const std::string &what) {
    if (state.is_object()) state["history"].push_back(what);
  };

  if (type == "order.placed" && state.is_null()) {
    state = json{{"order_id", order},
                 {"items", payload.value("items", json::array())},
                 {"amount_cents", payload.value("amount_cents", 0)},
                 {"card", payload.value("card", "")},
                 {"status", "reserving"},
                 {"history", json::array({type})}};
    commands.push_back(
        command("inventory.reserve", order, {{"order_id", order}, {"items", state["items"]}}));
  } else if (type == "inventory.reserve.completed" && status == "reserving") {
    note(type);
    state["status"] = "charging";
    state["reservation"] = result_field(payload, "reservation");
    commands.push_back(command(
        "payment.charge", order,
        {{"order_id", order}, {"amount_cents", state["amount_cents"]}, {"card", state["card"]}}));
    schedules.push_back(
        {{"key", timeout_key(order)},
         {"delay_ms", cfg.payment_timeout_ms},
         {"event", {{"type", "order.payment_timeout"}, {"correlation_id", order}}}});
  } else if (type == "inventory.reserve.failed" && status == "reserving") {
    note(type);  // nothing was reserved: nothing to compensate
    state["status"] = "cancelled";
    state["reason"] = payload.value("error", "");
    out["done"] = true;
  } else if (type == "payment.charge.completed" && status == "charging") {
    note(type);
    state["status"] = "shipping";
    state["charge_id"] = result_field(payload, "charge_id");
    cancels.push_back(timeout_key(order));
    commands.push_back(command("shipping.ship", order,
                               {{"order_id", order}, {"reservation", state["reservation"]}}));
  } else if ((type == "payment.charge.failed" || type == "order.payment_timeout") &&
             status == "charging") {
    // Compensation: give back what was reserved.
    note(type);
    state["status"] = "compensating";
    state["reason"] = type == "order.payment_timeout" ? json("payment timed out")
                                                      : json(payload.value("error", ""));
    cancels.push_back(timeout_key(order));
    commands.push_back(command("inventory.release", order,
                               {{"order_id", order}, {"reservation", state["reservation"]}}));
    // A real shop would also void a charge that completes after a timeout
    // (payment.charge.completed while "compensating"); left out here.
  } else if (type == "shipping.ship.completed" && status == "shipping") {
    note(type);
    state["status"] = "shipped";
    state["tracking"] = result_field(payload, "tracking");
    out["done"] = true;
  } else if (type == "inventory.release.completed" && status == "compensating") {
    note(type);
    state["status"] = "cancelled";
    out["done"] = true;
  } else {
    // Stale or unexpected (e.g. a timeout that lost the race against the
    // charge): record it, change nothing else.
    note("ignored " + type);
  }
  out["state"] = std::move(state);
  if (!commands.empty()) out["commands"] = std::move(commands);
  if (!schedules.empty()) out["schedules"] = std::move(schedules);
  if (!cancels.empty()) out["cancel_schedules"] = std::move(cancels);
  return out;
}

// The wf_saga_fn: a non-zero return would park the event as a dead letter.
int order_reducer(void *user, const char *input_json, size_t len, wf_buf *out) {
  try {
    json input = json::parse(input_json, input_json + len);
    std::string s = decide(*static_cast<const Config *>(user), input).dump();
    return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
  } catch (const std::exception &ex) {
    std::fprintf(stderr, "reducer: %s\n", ex.what());
    return 1;
  }
}

// ------------------------------------------------- simulated effect providers
// Called on the engine's loop thread; each answers at once (none blocks).

json job_payload(wf_job *job) {
  size_t len;
  const char *p = wf_job_payload(job, &len);
  return json::parse(p, p + len, nullptr, false);
}

void log_job(wf_job *job, const json &payload, const char *outcome) {
  std::printf("  %-18s %-11s -> %s\n", wf_job_effect(job), payload.value("order_id", "?").c_str(),
              outcome);
}

void reserve_inventory(void *, wf_job *job) {
  json p = job_payload(job);
  log_job(job, p, "reserved");
  std::string r = json{{"reservation", "res-" + p.value("order_id", "")}}.dump();
  wf_job_complete(job, r.c_str());
}

void charge_payment(void *, wf_job *job) {
  json p = job_payload(job);
  std::string card = p.value("card", "");
  if (card.size() >= 4 && card.compare(card.size() - 4, 4, "0000") == 0) {
    log_job(job, p, "card declined");
    wf_job_fail(job, "card declined");  // permanent: payment.charge.failed
    return;
  }
  log_job(job, p, "charged");
  std::string r = json{{"charge_id", "ch-" + p.value("order_id", "")}}.dump();
  wf_job_complete(job, r.c_str());
}

void ship_order(void *, wf_job *job) {
  json p = job_payload(job);
  log_job(job, p, "shipped");
  std::string r = json{{"tracking", "TRK-" + p.value("order_id", "")}}.dump();
  wf_job_complete(job, r.c_str());
}

void release_inventory(void *, wf_job *job) {
  json p = job_payload(job);
  log_job(job, p, "released");
  wf_job_complete(job, nullptr);
}

// ------------------------------------------------------------------- host

bool check(int rc, const char *what) {
  if (rc == WF_OK || rc == WF_EEXIST) return true;
  std::fprintf(stderr, "%s failed: %s: %s\n", what, wf_strerror(rc), wf_last_error());
  return false;
}

void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

// Polls wf_saga_get until the instance is done (or parked, or the deadline
// passes). Sagas have no completion callback; an example may poll.
json wait_done(wf_engine *e, const char *order, int64_t deadline_ms) {
  json last;
  for (int64_t waited = 0; waited <= deadline_ms; waited += 5) {
    char *out = nullptr;
    if (wf_saga_get(e, "", kSaga, order, &out) == WF_OK) {
      last = json::parse(out);
      wf_free(out);
      if (last["status"] == "done" || last["parked"] == true) break;
    }
    sleep_ms(5);
  }
  return last;
}

int run(const char *path, int64_t payment_timeout_ms) {
  static Config cfg;
  cfg.payment_timeout_ms = payment_timeout_ms;
  std::printf("wfengine %s, database %s, payment timeout %lld ms\n", wf_version(), path,
              static_cast<long long>(payment_timeout_ms));
  wf_engine *e = nullptr;
  if (!check(wf_open(path, R"({"durability":"full"})", &e), "wf_open")) return 1;
  bool ok = check(wf_saga_register(e, kSaga, kSpec, order_reducer, &cfg), "wf_saga_register") &&
            check(wf_effect_register(e, "inventory.reserve", nullptr, reserve_inventory, nullptr),
                  "register inventory.reserve") &&
            check(wf_effect_register(e, "payment.charge", nullptr, charge_payment, nullptr),
                  "register payment.charge") &&
            check(wf_effect_register(e, "shipping.ship", nullptr, ship_order, nullptr),
                  "register shipping.ship") &&
            check(wf_effect_register(e, "inventory.release", nullptr, release_inventory, nullptr),
                  "register inventory.release") &&
            check(wf_start(e), "wf_start");

  struct Order {
    const char *id, *card, *expect;
    int amount_cents;
  };
  const Order orders[] = {{"order-1001", "4242424242424242", "shipped", 2599},
                          {"order-1002", "4000000000000000", "cancelled", 1250}};
  for (const Order &o : orders) {
    if (!ok) break;
    json ev{{"event_id", std::string(o.id) + ":placed"},
            {"type", "order.placed"},
            {"correlation_id", o.id},
            {"payload",
             {{"items", json::array({{{"sku", "SKU-1"}, {"qty", 1}}})},
              {"amount_cents", o.amount_cents},
              {"card", o.card}}}};
    int rc = wf_submit(e, ev.dump().c_str());  // durable on return
    ok = check(rc, "wf_submit");
    std::printf("submitted order.placed for %s (card ...%s)%s\n", o.id,
                o.card + std::strlen(o.card) - 4,
                rc == WF_EEXIST ? " [already in this database]" : "");
  }

  for (const Order &o : orders) {
    if (!ok) break;
    json s = wait_done(e, o.id, payment_timeout_ms + 10000);
    std::string status =
        s.is_object() && s["state"].is_object() ? s["state"].value("status", "") : "";
    bool good = s.is_object() && s["status"] == "done" && status == o.expect;
    std::printf("saga %s: %s\n  %s\n", o.id, good ? "as expected" : "UNEXPECTED",
                s.is_null() ? "(no instance)" : s.dump().c_str());
    ok = ok && good;
  }

  char *stats = nullptr;
  if (check(wf_sync(e), "wf_sync") && check(wf_stats(e, nullptr, &stats), "wf_stats")) {
    std::printf("stats: %s\n", stats);
    wf_free(stats);
  }
  // The declined charge stays a dead letter of payment.charge for the operator
  // (wf_dead_list); the saga already compensated for it.
  std::printf(
      "note: the declined charge is kept as a dead letter of payment.charge (\"dead\": 1)\n");
  if (!check(wf_close(e), "wf_close")) ok = false;
  std::printf("%s\n",
              ok ? "OK: order-1001 shipped, order-1002 cancelled (inventory released)" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "order_saga.db";
  int64_t timeout_ms = 30000;
  if (argc > 2) {
    char *end = nullptr;
    long long v = std::strtoll(argv[2], &end, 10);
    if (!*argv[2] || *end || v < 0) {
      std::fprintf(stderr, "usage: %s [db-path] [payment-timeout-ms]\n", argv[0]);
      return 2;
    }
    timeout_ms = v;
  }
  return run(path, timeout_ms);
}
