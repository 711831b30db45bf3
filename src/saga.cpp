// Events and the saga runtime. Events are durable rows first; routing to saga
// instances happens in the submitting transaction (wf_saga_inbox). The loop
// takes the head event of each instance that is not busy, calls the reducer,
// and the writer commits state + jobs + schedules + the consumed event in one
// transaction, compare-and-set on the instance's version.
#include <algorithm>
#include <array>

#include "failpoint.h"
#include "outbox.h"
#include "trace.h"

namespace wf {

// The saga pass's reads (pump_sagas), each one index seek or range.
const char *const kSagaFirstInstance =
    "SELECT tenant, saga, correlation_id FROM wf_saga_inbox INDEXED BY wf_saga_inbox_inst "
    "ORDER BY tenant, saga, correlation_id LIMIT 1";
const char *const kSagaNextInstance =
    "SELECT tenant, saga, correlation_id FROM wf_saga_inbox INDEXED BY wf_saga_inbox_inst "
    "WHERE (tenant, saga, correlation_id) > (?1, ?2, ?3) "
    "ORDER BY tenant, saga, correlation_id LIMIT 1";
const char *const kSagaInstanceEvents =
    "SELECT i.seq, i.event_seq, i.start, i.state, e.envelope FROM wf_saga_inbox i "
    "INDEXED BY wf_saga_inbox_inst JOIN wf_events e ON e.seq = i.event_seq WHERE "
    "i.tenant = ?1 AND i.saga = ?2 AND i.correlation_id = ?3 ORDER BY i.seq LIMIT ?4";
const char *const kSagaInstanceState =
    "SELECT state, version, status FROM wf_sagas WHERE tenant = ?1 AND saga = ?2 AND "
    "correlation_id = ?3";

std::atomic<int> g_fail_saga_step{0};

namespace {

const char *kSep = "\x1f";

std::string instance_key(const std::string &t, const std::string &s, const std::string &c) {
  return t + kSep + s + kSep + c;
}

std::string extract_correlation(const json &env, const std::vector<std::string> &path) {
  const json *cur = &env;
  for (const auto &p : path) {
    if (!cur->is_object()) return "";
    auto it = cur->find(p);
    if (it == cur->end()) return "";
    cur = &*it;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_number_integer()) return std::to_string(cur->get<int64_t>());
  return "";
}

json saga_ref(const std::string &saga, const std::string &tenant, const std::string &corr) {
  return json{{"saga", saga}, {"tenant", tenant}, {"correlation_id", corr}};
}

}  // namespace

NewEvent decode_event(const json &doc, const Options &opt, int64_t now, const char *what) {
  if (!doc.is_object()) fail(WF_EINVAL, std::string(what) + " must be a JSON object");
  NewEvent ev;
  ev.event_id = get_string(doc, "event_id", what, true);
  if (ev.event_id.empty() || ev.event_id.size() > 512)
    fail(WF_EINVAL, std::string(what) + ": \"event_id\" must be 1 to 512 bytes");
  check_no_nul(ev.event_id, "event_id", what);
  ev.type = get_string(doc, "type", what, true);
  check_no_nul(ev.type, "type", what);
  if (ev.type.empty() || ev.type.size() > 200)
    fail(WF_EINVAL, std::string(what) + ": \"type\" must be 1 to 200 bytes");
  ev.tenant = get_string(doc, "tenant", what, false, "");
  if (ev.tenant.size() > 200)
    fail(WF_EINVAL, std::string(what) + ": \"tenant\" is longer than 200 bytes");
  check_no_nul(ev.tenant, "tenant", what);
  ev.correlation_id = get_string(doc, "correlation_id", what, false, "");
  check_no_nul(ev.correlation_id, "correlation_id", what);
  if (ev.correlation_id.size() > 1024)
    fail(WF_EINVAL, std::string(what) + ": \"correlation_id\" is longer than 1024 bytes");
  trace::check_fields(doc, what);
  int64_t occurred = get_time(doc, "occurred_at", what, now);
  ev.envelope = doc;
  ev.envelope["tenant"] = ev.tenant;
  ev.envelope["occurred_at"] = occurred;
  if (!ev.envelope.contains("payload")) ev.envelope["payload"] = nullptr;
  std::string p = ev.envelope["payload"].dump();
  if (p.size() > opt.limits.max_payload_bytes)
    fail(WF_ETOOBIG, std::string(what) + ": \"payload\" is " + std::to_string(p.size()) +
                         " bytes, over max_payload_bytes " +
                         std::to_string(opt.limits.max_payload_bytes));
  return ev;
}

bool Engine::insert_event(WriteCtx &w, const NewEvent &ev) {
  {
    auto st = w.db.prepare(
        "INSERT INTO wf_events(tenant, event_id, type, correlation_id, envelope, received_at, "
        "routed) VALUES(?1, ?2, ?3, ?4, ?5, ?6, 0) ON CONFLICT DO NOTHING");
    st->bind(1, ev.tenant).bind(2, ev.event_id).bind(3, ev.type).bind(4, ev.correlation_id);
    st->bind(5, seal(ev.envelope.dump(), "wf_events.envelope")).bind(6, w.now).exec();
    if (w.db.changes() == 0) return false;
  }
  int64_t seq = w.db.last_rowid();
  std::vector<std::shared_ptr<SagaDef>> defs;
  {
    std::shared_lock<std::shared_mutex> g(reg_mu);
    for (auto &kv : sagas) defs.push_back(kv.second);
  }
  int64_t routed = 0;
  for (auto &d : defs) {
    bool start = d->start.count(ev.type) != 0;
    bool on = d->on.count(ev.type) != 0;
    if (!start && !on) continue;
    std::string corr = extract_correlation(ev.envelope, d->correlation);
    if (corr.empty()) continue;
    if (!start) {
      // `on` events go only to instances that exist or are about to.
      bool exists = false;
      {
        auto st = w.db.prepare(
            "SELECT status FROM wf_sagas WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3");
        st->bind(1, ev.tenant).bind(2, d->name).bind(3, corr);
        if (st->step()) exists = st->col_text(0) == "active";
      }
      if (!exists) {
        auto st = w.db.prepare(
            "SELECT 1 FROM wf_saga_inbox WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3 "
            "AND start = 1 LIMIT 1");
        st->bind(1, ev.tenant).bind(2, d->name).bind(3, corr);
        exists = st->step();
      }
      if (!exists) continue;
    }
    auto ins = w.db.prepare(
        "INSERT INTO wf_saga_inbox(tenant, saga, correlation_id, event_seq, start) "
        "VALUES(?1, ?2, ?3, ?4, ?5)");
    ins->bind(1, ev.tenant).bind(2, d->name).bind(3, corr).bind(4, seq).bind(5, start ? 1 : 0);
    ins->exec();
    ++routed;
  }
  ++w.events_submitted;
  if (routed) {
    auto up = w.db.prepare("UPDATE wf_events SET routed = ?2 WHERE seq = ?1");
    up->bind(1, seq).bind(2, routed).exec();
    w.saga_ready = true;
  } else {
    ++w.events_unmatched;
  }
  return true;
}

void Engine::emit_outcome_event(WriteCtx &w, const std::string &origin, const std::string &effect,
                                int64_t job_id, const std::string &key, bool ok,
                                const std::string &text, int attempts,
                                const std::string &traceparent, const std::string &tracestate) {
  json ref = json::parse(origin, nullptr, false);
  if (!ref.is_object() || !ref.contains("saga")) return;
  std::string tenant = ref.value("tenant", ""), saga = ref.value("saga", ""),
              corr = ref.value("correlation_id", "");
  json payload{{"job_id", std::to_string(job_id)},
               {"key", key.empty() ? json(nullptr) : json(key)}};
  if (ok) {
    json r = text.empty() ? json(nullptr) : json::parse(text, nullptr, false);
    payload["result"] = r.is_discarded() ? json(text) : r;
  } else {
    payload["error"] = text;
  }
  std::string event_id =
      "job:" + std::to_string(job_id) + (ok ? ":completed" : ":failed:" + std::to_string(attempts));
  json env{{"event_id", event_id}, {"type", effect + (ok ? ".completed" : ".failed")},
           {"tenant", tenant},     {"correlation_id", corr},
           {"payload", payload},   {"occurred_at", w.now}};
  // The job's trace context goes on with the outcome, so the saga's next
  // jobs stay in the trace.
  if (!traceparent.empty()) env["traceparent"] = traceparent;
  if (!tracestate.empty()) env["tracestate"] = tracestate;
  auto st = w.db.prepare(
      "INSERT INTO wf_events(tenant, event_id, type, correlation_id, envelope, received_at, "
      "routed) VALUES(?1, ?2, ?3, ?4, ?5, ?6, 1) ON CONFLICT DO NOTHING");
  st->bind(1, tenant).bind(2, event_id).bind(3, env["type"].get<std::string>()).bind(4, corr);
  // Never throws on text: an error text or key that is not UTF-8 (a provider's
  // exception message) is stored with U+FFFD, not allowed to fail the batch.
  st->bind(5, seal(env.dump(-1, ' ', false, json::error_handler_t::replace), "wf_events.envelope"))
      .bind(6, w.now)
      .exec();
  if (w.db.changes() == 0) return;
  int64_t seq = w.db.last_rowid();
  auto ins = w.db.prepare(
      "INSERT INTO wf_saga_inbox(tenant, saga, correlation_id, event_seq, start) "
      "VALUES(?1, ?2, ?3, ?4, 0)");
  ins->bind(1, tenant).bind(2, saga).bind(3, corr).bind(4, seq).exec();
  w.saga_ready = true;
}

bool submit_event(Engine &e, const char *event_json) {
  check_writable(e);
  if (!event_json) fail(WF_EINVAL, "event: NULL document");
  json doc =
      parse_json(event_json, e.opt.limits, "event", e.opt.limits.max_payload_bytes + 65536 + 1024);
  NewEvent ev = decode_event(doc, e.opt, e.now(), "event");
  bool inserted = false;
  submit_or_raise(e, [&](WriteCtx &w) { inserted = e.insert_event(w, ev); });
  return inserted;
}

bool tx_submit(HostTx *tx, const char *event_json) {
  auto lk = tx_enter(tx, "wf_tx_submit");
  Engine &e = *tx->engine;
  if (!event_json) fail(WF_EINVAL, "event: NULL document");
  json doc =
      parse_json(event_json, e.opt.limits, "event", e.opt.limits.max_payload_bytes + 65536 + 1024);
  int64_t t = e.now();
  NewEvent ev = decode_event(doc, e.opt, t, "event");
  WriteCtx w{*e.write_db, t};
  bool inserted = e.insert_event(w, ev);
  tx_merge(tx, w);
  return inserted;
}

void register_saga(Engine &e, const char *saga, const char *spec_json, wf_saga_fn fn, void *user) {
  if (e.closed) fail(WF_ECLOSED, "engine is closed");
  if (!saga || !*saga || strlen(saga) > 200)
    fail(WF_EINVAL, "wf_saga_register: saga name must be 1 to 200 bytes");
  check_utf8(saga, "saga", "wf_saga_register");
  if (!fn) fail(WF_EINVAL, "wf_saga_register: reducer is NULL");
  auto d = std::make_shared<SagaDef>();
  d->name = saga;
  d->fn = fn;
  d->user = user;
  const char *w = "saga spec";
  json spec = parse_json(spec_json ? spec_json : "{}", e.opt.limits, w, 1 << 16);
  check_keys(spec, {"start", "on", "correlation"}, w);
  for (const char *field : {"start", "on"}) {
    if (!spec.contains(field)) continue;
    if (!spec[field].is_array())
      fail(WF_EINVAL, std::string(w) + ": \"" + field + "\" must be an array of event types");
    for (auto &t : spec[field]) {
      if (!t.is_string() || t.get<std::string>().empty())
        fail(WF_EINVAL, std::string(w) + ": \"" + field + "\" entries must be event types");
      (std::string(field) == "start" ? d->start : d->on).insert(t.get<std::string>());
    }
  }
  if (d->start.empty())
    fail(WF_EINVAL, std::string(w) + ": \"start\" must name at least one event type");
  std::string corr = get_string(spec, "correlation", w, false, "correlation_id");
  size_t pos = 0;
  while (true) {
    size_t dot = corr.find('.', pos);
    std::string part = corr.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (part.empty()) fail(WF_EINVAL, std::string(w) + ": \"correlation\" path is malformed");
    d->correlation.push_back(part);
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  {
    std::lock_guard<std::shared_mutex> g(e.reg_mu);
    if (e.sagas.count(d->name))
      fail(WF_EEXIST, std::string("wf_saga_register: saga \"") + saga + "\" is already registered");
    e.sagas[d->name] = d;
  }
  e.notify_loop([](Engine::Inbox &in) { in.saga_ready = true; });
}

namespace {

// decode_saga_output, with two additions for the runtime and replay:
// `event` is asked for only when a command needs the event's traceparent (so
// the caller can parse the stored envelope lazily), and `*state_text`
// receives the state as the JSON text the next reducer input splices in (the
// same text nlohmann's dump writes for the parsed state: parse_json accepts
// only valid UTF-8, so dump never has to replace anything).
StepOutput decode_output(const std::string &text, const Options &opt, const std::string &saga,
                         const std::string &tenant, const std::string &corr,
                         const std::function<const json &()> &event, int64_t now,
                         bool decode_effects, std::string *state_text) {
  const char *w = "saga output";
  json out = parse_json(text, opt.limits, w, opt.limits.max_payload_bytes * 4 + 65536);
  check_keys(out, {"state", "commands", "schedules", "cancel_schedules", "done"}, w);
  StepOutput o;
  auto sit = out.find("state");
  if (sit != out.end()) o.state = std::move(*sit);  // "state" is not read again below
  auto dit = out.find("done");
  if (dit != out.end() && !dit->is_null()) {
    if (!dit->is_boolean()) fail(WF_EINVAL, "saga output: \"done\" must be a boolean");
    o.done = dit->get<bool>();
  }
  std::string st = o.state.dump();
  if (st.size() > opt.limits.max_payload_bytes)
    fail(WF_ETOOBIG, "saga output: \"state\" is over max_payload_bytes");
  if (state_text) *state_text = std::move(st);
  if (!decode_effects) return o;
  std::string ref = saga_ref(saga, tenant, corr).dump();
  int64_t t = now;
  for (const char *field : {"commands", "schedules", "cancel_schedules"})
    if (out.contains(field) && !out[field].is_null() && !out[field].is_array())
      fail(WF_EINVAL, std::string("saga output: \"") + field + "\" must be an array");
  if (out.contains("commands") && out["commands"].is_array()) {
    size_t i = 0;
    for (json cmd : out["commands"]) {
      std::string what = "saga output: commands[" + std::to_string(i++) + "]";
      if (!cmd.is_object()) fail(WF_EINVAL, what + " must be a job object");
      if (cmd.contains("tenant") && cmd["tenant"] != tenant)
        fail(WF_EINVAL, what + ": \"tenant\" must be the saga's tenant");
      cmd["tenant"] = tenant;
      json meta = cmd.value("metadata", json::object());
      if (!meta.is_object()) fail(WF_EINVAL, what + ": \"metadata\" must be an object");
      if (!meta.contains("correlation_id")) meta["correlation_id"] = corr;
      if (!meta.contains("traceparent")) {
        const json &ev = event();
        if (ev.contains("traceparent")) {
          meta["traceparent"] = ev["traceparent"];
          if (ev.contains("tracestate") && !meta.contains("tracestate"))
            meta["tracestate"] = ev["tracestate"];
        }
      }
      meta["saga"] = saga;
      cmd["metadata"] = meta;
      NewJob j = decode_job(cmd, opt, t, what.c_str());
      j.origin = ref;
      o.commands.push_back(std::move(j));
    }
  }
  if (out.contains("schedules") && out["schedules"].is_array()) {
    size_t i = 0;
    for (json s : out["schedules"]) {
      std::string what = "saga output: schedules[" + std::to_string(i++) + "]";
      if (!s.is_object()) fail(WF_EINVAL, what + " must be a schedule object");
      if (s.contains("tenant") && s["tenant"] != tenant)
        fail(WF_EINVAL, what + ": \"tenant\" must be the saga's tenant");
      s["tenant"] = tenant;
      // The event's trace context goes to what the schedule will fire.
      const json &ev = event();
      if (ev.contains("traceparent")) {
        for (const char *target : {"job", "event"}) {
          auto it = s.find(target);
          if (it == s.end() || !it->is_object()) continue;
          json *dst = &*it;
          if (std::string(target) == "job") {
            if (!dst->contains("metadata") || (*dst)["metadata"].is_null())
              (*dst)["metadata"] = json::object();
            if (!(*dst)["metadata"].is_object()) continue;  // decode_schedule says why
            dst = &(*dst)["metadata"];
            if (it->contains("traceparent")) continue;
          }
          if (dst->contains("traceparent")) continue;
          (*dst)["traceparent"] = ev["traceparent"];
          if (ev.contains("tracestate")) (*dst)["tracestate"] = ev["tracestate"];
        }
      }
      NewSchedule ns = decode_schedule(s, opt, t, what.c_str());
      ns.origin = ref;
      o.schedules.push_back(std::move(ns));
    }
  }
  if (out.contains("cancel_schedules") && out["cancel_schedules"].is_array())
    for (auto &k : out["cancel_schedules"]) {
      if (!k.is_string()) fail(WF_EINVAL, "saga output: \"cancel_schedules\" entries must be keys");
      o.cancels.push_back(k.get<std::string>());
    }
  return o;
}

}  // namespace

StepOutput decode_saga_output(const std::string &text, const Options &opt, const std::string &saga,
                              const std::string &tenant, const std::string &corr, const json &event,
                              int64_t now, bool decode_effects) {
  return decode_output(
      text, opt, saga, tenant, corr, [&]() -> const json & { return event; }, now, decode_effects,
      nullptr);
}

// ------------------------------------------------------------- reducer I/O

}  // namespace wf

struct wf_buf {
  std::string data;
  bool set = false;
};

namespace wf {

namespace {

// The reducer input {"saga", "tenant", "correlation_id", "state", "event"} as
// one instance's steps need it, built by splicing JSON texts instead of
// building and dumping a json object. The result is byte for byte what
// json{...}.dump(-1, ' ', false, replace) wrote before:
//  - nlohmann objects keep their keys sorted, so the order is correlation_id,
//    event, saga, state, tenant;
//  - the three names are escaped once, by nlohmann itself;
//  - the state is the dump of the parsed state (decode_output's text, or the
//    dump of the stored state);
//  - the event is the stored envelope text, which every writer produced with
//    json::dump (insert_event, emit_outcome_event), and dump(parse(dump(x)))
//    == dump(x). A stored text that is not an object (only a damaged row can
//    be) goes through parse + dump as before.
class ReducerInput {
 public:
  ReducerInput(const std::string &saga, const std::string &tenant, const std::string &corr) {
    auto str = [](const std::string &v) {
      return json(v).dump(-1, ' ', false, json::error_handler_t::replace);
    };
    head_ = "{\"correlation_id\":" + str(corr) + ",\"event\":";
    mid_ = ",\"saga\":" + str(saga) + ",\"state\":";
    tail_ = ",\"tenant\":" + str(tenant) + "}";
  }
  // Builds the input into `out` (its capacity is reused across steps).
  void build(std::string &out, const std::string &state_text, const std::string &envelope) const {
    const std::string *env = &envelope;
    std::string fixed;
    if (envelope.size() < 2 || envelope.front() != '{' || envelope.back() != '}') {
      fixed = json::parse(envelope, nullptr, false)
                  .dump(-1, ' ', false, json::error_handler_t::replace);
      env = &fixed;
    }
    out.clear();
    out.reserve(head_.size() + env->size() + mid_.size() + state_text.size() + tail_.size());
    out.append(head_).append(*env).append(mid_).append(state_text).append(tail_);
  }

 private:
  std::string head_, mid_, tail_;
};

// The dump of a stored state as the reducer input holds it.
std::string stored_state_text(const std::string &stored) {
  return json::parse(stored, nullptr, false).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Calls the reducer on `in`; its output is left in `buf`. Throws Error with
// the reason when the reducer fails.
void call_reducer(const SagaDef &d, const std::string &in, wf_buf &buf) {
  buf.data.clear();
  buf.set = false;
  int rc;
  try {
    rc = d.fn(d.user, in.data(), in.size(), &buf);
  } catch (...) {
    fail(WF_EINVAL, "reducer threw an exception");
  }
  if (rc != 0) fail(WF_EINVAL, "reducer returned " + std::to_string(rc));
  if (!buf.set) fail(WF_EINVAL, "reducer returned 0 without output (wf_buf_set)");
}

// A stored value in clear text (Engine::unseal without copying `stored`).
std::string open_stored(Engine &e, std::string stored, const char *aad) {
  if (e.cipher) return e.cipher->open(stored, aad);
  if (Cipher::is_sealed(stored))
    fail(WF_ECORRUPT, "the database holds encrypted values: open it with encryption_key");
  return stored;
}

}  // namespace

namespace {

// What one pass decided for one queued event of an instance.
struct SagaAction {
  enum Kind { kApply, kDrop, kPark } kind;
  int64_t seq = 0, event_seq = 0;
  int64_t expect_version = -1;  // apply: version before the step, -1 = new instance
  std::string new_state, error, envelope;
  std::shared_ptr<StepOutput> out;
};

struct QueuedEvent {
  int64_t seq, event_seq;
  bool start;
  std::string envelope;
};

}  // namespace

void Engine::pump_sagas() {
  if (!saga_wake || stopping || draining) return;
  saga_wake = false;
  std::map<std::string, std::shared_ptr<SagaDef>> defs;
  {
    std::shared_lock<std::shared_mutex> g(reg_mu);
    defs = sagas;
  }
  if (defs.empty()) return;
  struct Head {
    int64_t seq, event_seq;
    std::string tenant, saga, corr, envelope, state, status;
    bool start, has_instance;
    int64_t version;
  };
  std::vector<Head> heads;
  // Index-driven pass (wf_saga_inbox_inst): instances are visited one seek
  // each, round-robin from where the last pass stopped (saga_cursor), skipping
  // instances with a step in the writer and those of sagas served by another
  // process; each instance's queued events (up to a parked one) are read in
  // one range scan and folded through the reducer in one step. Bounded per
  // pass: kBatch instances, kEvents events, kVisits seeks; what is left is
  // taken by the next pass (saga_wake).
  const int64_t kBatch = 512, kEvents = 8192, kVisits = 4096;
  std::map<int64_t, std::vector<QueuedEvent>> followers;  // by head seq
  bool more = false;
  try {
    std::lock_guard<std::mutex> g(read_mu);
    auto next_inst = read_db->prepare(kSagaNextInstance);
    auto first_inst = read_db->prepare(kSagaFirstInstance);
    auto events = read_db->prepare(kSagaInstanceEvents);
    auto inst = read_db->prepare(kSagaInstanceState);
    // One snapshot for the whole pass.
    read_db->exec("BEGIN");
    try {
      bool wrapped = !saga_cursor.has_value();
      std::optional<std::array<std::string, 3>> cur = saga_cursor, stop = saga_cursor;
      int64_t nev = 0, visits = 0;
      for (;;) {
        if (static_cast<int64_t>(heads.size()) >= kBatch || nev >= kEvents || visits >= kVisits) {
          more = true;
          break;
        }
        Stmt *q;
        if (cur) {
          next_inst->reset();
          next_inst->bind(1, (*cur)[0]).bind(2, (*cur)[1]).bind(3, (*cur)[2]);
          q = &*next_inst;
        } else {
          first_inst->reset();
          q = &*first_inst;
        }
        if (!q->step()) {
          if (wrapped) {
            cur.reset();
            break;
          }
          wrapped = true;
          cur.reset();
          continue;
        }
        std::array<std::string, 3> k{q->col_text(0), q->col_text(1), q->col_text(2)};
        if (wrapped && stop && k >= *stop) break;  // around once
        cur = k;
        ++visits;
        if (!defs.count(k[1])) continue;  // served by another process
        if (saga_busy.count(instance_key(k[0], k[1], k[2]))) continue;
        int64_t limit = std::min<int64_t>(4096, kEvents - nev);
        events->reset();
        events->bind(1, k[0]).bind(2, k[1]).bind(3, k[2]).bind(4, limit);
        std::vector<QueuedEvent> evs;
        while (events->step()) {
          if (events->col_int(3) != 0) break;  // parked: later events wait behind it
          evs.push_back(QueuedEvent{events->col_int(0), events->col_int(1), events->col_int(2) != 0,
                                    unseal(events->col_text(4), "wf_events.envelope")});
        }
        if (evs.empty()) continue;  // parked at its head
        inst->reset();
        inst->bind(1, k[0]).bind(2, k[1]).bind(3, k[2]);
        bool has = inst->step();
        Head h{evs[0].seq,
               evs[0].event_seq,
               k[0],
               k[1],
               k[2],
               std::move(evs[0].envelope),
               has ? unseal(inst->col_text(0), "wf_sagas.state") : "",
               has ? inst->col_text(2) : "",
               evs[0].start,
               has,
               has ? inst->col_int(1) : 0};
        nev += static_cast<int64_t>(evs.size());
        evs.erase(evs.begin());
        if (!evs.empty()) followers[h.seq] = std::move(evs);
        heads.push_back(std::move(h));
      }
      saga_cursor = cur;
      read_db->exec("COMMIT");
    } catch (...) {
      if (read_db->in_txn()) read_db->exec("ROLLBACK");
      throw;
    }
  } catch (const std::exception &ex) {
    read_failed(ex);
    return;
  }
  if (more) saga_wake = true;
  for (auto &h : heads) {
    std::string ik = instance_key(h.tenant, h.saga, h.corr);
    if (saga_busy.count(ik)) continue;
    auto it = defs.find(h.saga);
    if (it == defs.end()) continue;  // served by another process
    const SagaDef &d = *it->second;
    std::vector<QueuedEvent> evs{QueuedEvent{h.seq, h.event_seq, h.start, h.envelope}};
    auto fit = followers.find(h.seq);
    if (fit != followers.end()) evs.insert(evs.end(), fit->second.begin(), fit->second.end());
    // Fold the events through the reducer in memory.
    bool exists = h.has_instance, done = h.has_instance && h.status == "done";
    int64_t version = h.has_instance ? h.version : 0;
    // The state travels as the text the reducer input splices in.
    std::string state = h.has_instance ? stored_state_text(h.state) : std::string("null");
    ReducerInput input(d.name, h.tenant, h.corr);
    std::string in;
    wf_buf buf;
    std::vector<SagaAction> acts;
    const int64_t step_t0 = mono_us();
    for (auto &ev : evs) {
      SagaAction a;
      a.seq = ev.seq;
      a.event_seq = ev.event_seq;
      if (done || (!exists && !ev.start)) {
        a.kind = SagaAction::kDrop;  // nothing to apply it to
        acts.push_back(std::move(a));
        continue;
      }
      // Parsed only if a command needs the event's traceparent.
      std::optional<json> event;
      auto get_event = [&]() -> const json & {
        if (!event) event = json::parse(ev.envelope, nullptr, false);
        return *event;
      };
      try {
        input.build(in, state, ev.envelope);
        call_reducer(d, in, buf);
        std::string new_state;
        StepOutput out = decode_output(buf.data, opt, d.name, h.tenant, h.corr, get_event, now(),
                                       true, &new_state);
        a.kind = SagaAction::kApply;
        a.expect_version = exists ? version : -1;
        state = std::move(new_state);
        done = out.done;
        a.out = std::make_shared<StepOutput>(std::move(out));
        version = exists ? version + 1 : 1;
        exists = true;
        acts.push_back(std::move(a));
      } catch (const Error &ex) {
        a.kind = SagaAction::kPark;
        a.error = ex.what();
        a.envelope = seal(ev.envelope, "wf_jobs.payload");  // stored as a dead letter
        log(WF_LOG_WARN, "saga event parked",
            json{{"event", "saga.event_parked"},
                 {"saga", h.saga},
                 {"tenant", h.tenant},
                 {"correlation_id", h.corr},
                 {"error", a.error}});
        acts.push_back(std::move(a));
        break;  // later events wait behind the parked one
      }
    }
    // Only the state after the last applied event is stored (once per step).
    auto last_apply = std::find_if(acts.rbegin(), acts.rend(), [](const SagaAction &x) {
      return x.kind == SagaAction::kApply;
    });
    if (last_apply != acts.rend()) last_apply->new_state = seal(state, "wf_sagas.state");
    int64_t n_applied = 0, n_parked = 0, n_commands = 0;
    for (auto &a : acts) {
      n_applied += a.kind == SagaAction::kApply;
      n_parked += a.kind == SagaAction::kPark;
      if (a.out) n_commands += static_cast<int64_t>(a.out->commands.size());
    }
    metrics.saga_step(d.name).observe(mono_us() - step_t0);
    if (log_enabled(WF_LOG_DEBUG)) {
      json f{{"event", "saga.step"},     {"saga", h.saga},       {"tenant", h.tenant},
             {"correlation_id", h.corr}, {"applied", n_applied}, {"parked", n_parked},
             {"commands", n_commands}};
      // The trace of the step's first event (one parse, debug only).
      json env = json::parse(evs[0].envelope, nullptr, false);
      if (env.is_object() && env.contains("traceparent") && env["traceparent"].is_string())
        f["trace_id"] = env["traceparent"].get<std::string>().substr(3, 32);
      log(WF_LOG_DEBUG, "saga step", f);
    }
    saga_busy.insert(ik);
    WriteReq r;
    r.savepoint = true;
    r.after = [this, ik, n_applied, n_parked](int rc, const std::string &err) {
      if (rc == WF_OK) {
        metrics.events_applied.fetch_add(n_applied, std::memory_order_relaxed);
        metrics.events_parked.fetch_add(n_parked, std::memory_order_relaxed);
      }
      if (rc != WF_OK)
        log(WF_LOG_ERROR, "saga step not committed; will retry",
            json{{"event", "saga.step_failed"}, {"error", err}});
      notify_loop([&](Inbox &in) {
        in.steps_done.push_back(ik);
        if (rc == WF_OK)
          in.saga_ready = true;
        else
          in.saga_retry = true;
      });
    };
    std::string tenant = h.tenant, saga = h.saga, corr = h.corr;
    r.fn = [this, tenant, saga, corr, acts = std::move(acts)](WriteCtx &w) {
      // The instance row is written once, after the last applied event: its
      // version moves by the number of events applied (compare-and-set on
      // the version the fold started from); each event still gets its own
      // saga-log row (n = the version after it) and leaves the inbox.
      int64_t first_expect = -2, applied = 0;
      const SagaAction *last = nullptr;
      auto flush = [&]() {
        if (!last) return;
        const char *status = last->out->done ? "done" : "active";
        if (first_expect < 0) {
          auto ins = w.db.prepare(
              "INSERT INTO wf_sagas(tenant, saga, correlation_id, state, version, status, "
              "created_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?7, ?5, ?6, ?6) "
              "ON CONFLICT DO NOTHING");
          ins->bind(1, tenant).bind(2, saga).bind(3, corr).bind(4, last->new_state);
          ins->bind(5, status).bind(6, w.now).bind(7, applied).exec();
        } else {
          auto up = w.db.prepare(
              "UPDATE wf_sagas SET state = ?4, version = version + ?8, status = ?5, "
              "updated_at = ?6 WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3 AND "
              "version = ?7");
          up->bind(1, tenant).bind(2, saga).bind(3, corr).bind(4, last->new_state).bind(5, status);
          up->bind(6, w.now).bind(7, first_expect).bind(8, applied).exec();
        }
        if (w.db.changes() != 1)
          fail(WF_EBUSY, "saga instance " + saga + "/" + corr + " changed concurrently");
        last = nullptr;
      };
      // An event no longer queued: another engine took it. Before anything
      // was applied the step simply ends; after, the state stored would not
      // match the events consumed, so the step is rolled back and the loop
      // reads the instance again.
      auto taken = [&]() {
        if (applied == 0) return false;
        fail(WF_EBUSY, "saga instance " + saga + "/" + corr + " changed concurrently");
      };
      for (const auto &a : acts) {
        if (a.kind == SagaAction::kPark) {
          // The event becomes a dead letter; the instance waits behind it.
          auto up = w.db.prepare(
              "UPDATE wf_saga_inbox SET state = 2, error = ?2 WHERE seq = ?1 AND state = 0");
          up->bind(1, a.seq).bind(2, a.error).exec();
          if (w.db.changes() != 1) {
            if (!taken()) return;
          }
          json origin = saga_ref(saga, tenant, corr);
          origin["kind"] = "saga_event";
          origin["inbox_seq"] = a.seq;
          json meta{{"saga", saga}, {"correlation_id", corr}};
          const int64_t id = lease::next_job_id(w.db);
          auto ins = w.db.prepare(
              "INSERT INTO wf_jobs(id, tenant, effect, payload, metadata, run_at, state, "
              "created_at, origin) VALUES(?7, ?1, ?2, ?3, ?4, ?5, 1, ?5, ?6)");
          ins->bind(1, tenant).bind(2, "saga:" + saga).bind(3, a.envelope).bind(4, meta.dump());
          ins->bind(5, w.now).bind(6, origin.dump()).bind(7, id).exec();
          auto dead = w.db.prepare(
              "INSERT OR REPLACE INTO wf_dead(id, tenant, effect, key, payload, metadata, "
              "priority, attempts, failures, max_attempts, origin, created_at, reason, dead_at) "
              "SELECT id, tenant, effect, key, payload, metadata, priority, 1, 1, 1, origin, "
              "created_at, ?2, ?3 FROM wf_jobs WHERE id = ?1");
          dead->bind(1, id).bind(2, "saga reducer: " + a.error).bind(3, w.now).exec();
          auto del = w.db.prepare("DELETE FROM wf_jobs WHERE id = ?1");
          del->bind(1, id).exec();
          lease::note_deleted(w.db, w.counts, id);
          break;
        }
        // Consuming the event proves it was still queued (state 0): another
        // engine did not take it.
        auto del = w.db.prepare("DELETE FROM wf_saga_inbox WHERE seq = ?1 AND state = 0");
        del->bind(1, a.seq).exec();
        if (w.db.changes() != 1) {
          if (!taken()) return;
        }
        if (a.kind == SagaAction::kDrop) continue;
        if (first_expect == -2) first_expect = a.expect_version;
        ++applied;
        last = &a;
        if (g_fail_saga_step.load() > 0) {
          g_fail_saga_step--;
          fail(WF_EIO, "injected failure inside the saga step");
        }
        WF_FAILPOINT("inside_saga_step_commit");
        for (auto &j : a.out->commands) {
          std::string id;
          bool existing;
          insert_job(w, j, &id, &existing);
        }
        for (auto &s : a.out->schedules) upsert_schedule(w, s);
        for (auto &k : a.out->cancels) {
          auto dc = w.db.prepare("DELETE FROM wf_schedules WHERE tenant = ?1 AND key = ?2");
          dc->bind(1, tenant).bind(2, k).exec();
        }
        auto lg = w.db.prepare(
            "INSERT INTO wf_saga_log(tenant, saga, correlation_id, n, event_seq) "
            "VALUES(?1, ?2, ?3, ?4, ?5)");
        lg->bind(1, tenant).bind(2, saga).bind(3, corr);
        lg->bind(4, a.expect_version < 0 ? 1 : a.expect_version + 1).bind(5, a.event_seq).exec();
      }
      flush();
    };
    submit(std::move(r));
  }
}

// -------------------------------------------------------------- queries

std::string saga_get(Engine &e, const char *tenant, const char *saga, const char *corr) {
  if (!saga || !corr) fail(WF_EINVAL, "wf_saga_get: saga and correlation_id are required");
  if (tenant) check_utf8(tenant, "tenant", "wf_saga_get");
  check_utf8(saga, "saga", "wf_saga_get");
  check_utf8(corr, "correlation_id", "wf_saga_get");
  std::string t = tenant ? tenant : "";
  std::lock_guard<std::mutex> g(e.api_mu);
  Db &db = *e.api_db;
  db.exec("BEGIN");
  json out;
  try {
    auto st = db.prepare(
        "SELECT state, version, status, created_at, updated_at FROM wf_sagas WHERE tenant = ?1 "
        "AND saga = ?2 AND correlation_id = ?3");
    st->bind(1, t).bind(2, saga).bind(3, corr);
    if (!st->step())
      fail(WF_ENOTFOUND, std::string("wf_saga_get: no instance of saga \"") + saga + "\" for \"" +
                             corr + "\" in tenant \"" + t + "\"");
    out["state"] = json::parse(e.unseal(st->col_text(0), "wf_sagas.state"), nullptr, false);
    out["version"] = st->col_int(1);
    out["status"] = st->col_text(2);
    out["created_at"] = st->col_int(3);
    out["updated_at"] = st->col_int(4);
    auto p = db.prepare(
        "SELECT count(*) FILTER (WHERE state = 0), count(*) FILTER (WHERE state = 2) FROM "
        "wf_saga_inbox WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3");
    p->bind(1, t).bind(2, saga).bind(3, corr);
    p->step();
    out["pending"] = p->col_int(0);
    out["parked"] = p->col_int(1) > 0;
    db.exec("COMMIT");
  } catch (...) {
    db.exec("ROLLBACK");
    throw;
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string saga_replay(Engine &e, const char *tenant, const char *saga, const char *corr,
                        const char *options_json) {
  if (!saga || !corr) fail(WF_EINVAL, "wf_saga_replay: saga and correlation_id are required");
  if (tenant) check_utf8(tenant, "tenant", "wf_saga_replay");
  check_utf8(saga, "saga", "wf_saga_replay");
  check_utf8(corr, "correlation_id", "wf_saga_replay");
  std::string t = tenant ? tenant : "";
  bool commit = false;
  if (options_json && *options_json) {
    json o = parse_json(options_json, e.opt.limits, "replay options", 4096);
    check_keys(o, {"commit"}, "replay options");
    if (o.contains("commit")) {
      if (!o["commit"].is_boolean())
        fail(WF_EINVAL, "replay options: \"commit\" must be a boolean");
      commit = o["commit"].get<bool>();
    }
  }
  std::shared_ptr<SagaDef> def;
  {
    std::shared_lock<std::shared_mutex> g(e.reg_mu);
    auto it = e.sagas.find(saga);
    if (it == e.sagas.end())
      fail(WF_ENOTFOUND, std::string("wf_saga_replay: saga \"") + saga + "\" is not registered");
    def = it->second;
  }
  // Only the envelope texts are read; each goes into the reducer input as it
  // is stored (after decryption), without being parsed.
  std::vector<std::string> events;
  int64_t version = 0;
  {
    std::lock_guard<std::mutex> g(e.api_mu);
    Db &db = *e.api_db;
    db.exec("BEGIN");
    try {
      auto v = db.prepare(
          "SELECT version, status, updated_at FROM wf_sagas WHERE tenant = ?1 AND saga = ?2 AND "
          "correlation_id = ?3");
      v->bind(1, t).bind(2, saga).bind(3, corr);
      if (!v->step())
        fail(WF_ENOTFOUND, std::string("wf_saga_replay: no instance for \"") + corr +
                               "\" (never created, or finished and removed after "
                               "retain_sagas_ms)");
      version = v->col_int(0);
      // A finished instance past retain_sagas_ms is being removed (its log
      // goes first, newest entry first): a replay would see part of it.
      if (e.opt.retain_sagas_ms > 0 && v->col_text(1) == "done" &&
          v->col_int(2) < e.now() - e.opt.retain_sagas_ms)
        fail(WF_ENOTFOUND, std::string("wf_saga_replay: the instance for \"") + corr +
                               "\" finished more than retain_sagas_ms ago and is being removed; "
                               "its applied-event log is no longer complete");
      if (version > 0 && version <= (int64_t(1) << 20)) events.reserve(size_t(version));
      auto st = db.prepare(
          "SELECT e.envelope FROM wf_saga_log l JOIN wf_events e ON e.seq = l.event_seq "
          "WHERE l.tenant = ?1 AND l.saga = ?2 AND l.correlation_id = ?3 ORDER BY l.n");
      st->bind(1, t).bind(2, saga).bind(3, corr);
      while (st->step()) events.push_back(open_stored(e, st->col_text(0), "wf_events.envelope"));
      db.exec("COMMIT");
    } catch (...) {
      db.exec("ROLLBACK");
      throw;
    }
  }
  // The same input, reducer call and output validation as a live step
  // (commands, schedules and cancels are not decoded); the state is carried
  // as text from one step to the next.
  const std::string c = corr;
  ReducerInput input(def->name, t, c);
  std::string state = "null", in;
  wf_buf buf;
  bool done = false;
  const json no_event;
  auto get_event = [&]() -> const json & { return no_event; };  // not asked: no effects
  for (size_t i = 0; i < events.size(); ++i) {
    try {
      input.build(in, state, events[i]);
      call_reducer(*def, in, buf);
      StepOutput o = decode_output(buf.data, e.opt, def->name, t, c, get_event, 0, false, &state);
      done = o.done;
    } catch (const Error &ex) {
      fail(ex.code(), "wf_saga_replay: stopped at event " + std::to_string(i + 1) + " of " +
                          std::to_string(events.size()) + ": " + ex.what());
    }
  }
  if (commit) {
    check_writable(e);
    std::string s = e.seal(state, "wf_sagas.state");
    std::string status = done ? "done" : "active";
    std::string sg = saga;
    submit_or_raise(e, [&](WriteCtx &w) {
      // The committed replay is a state change like a step: it bumps the
      // version, so a live step computed from the state before it fails its
      // compare-and-set and is computed again from the replayed state.
      auto up = w.db.prepare(
          "UPDATE wf_sagas SET state = ?4, status = ?5, updated_at = ?6, version = version + 1 "
          "WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3 AND version = ?7");
      up->bind(1, t).bind(2, sg).bind(3, c).bind(4, s).bind(5, status).bind(6, w.now);
      up->bind(7, version).exec();
      if (w.db.changes() != 1)
        fail(WF_ECONFLICT,
             "wf_saga_replay: the instance changed during the replay (a step committed); "
             "nothing was written, run the replay again");
    });
  }
  // {"done", "events", "state"}: the keys in the order nlohmann's dump sorts them.
  std::string out = done ? "{\"done\":true" : "{\"done\":false";
  out.append(",\"events\":").append(std::to_string(events.size()));
  out.append(",\"state\":").append(state).append("}");
  return out;
}

json saga_stats(Engine &, Db &db, int64_t now, const std::optional<std::string> &tenant) {
  json out;
  auto s = db.prepare(
      "SELECT count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status = 'done') "
      "FROM wf_sagas WHERE (?1 IS NULL OR tenant = ?1)");
  if (tenant) s->bind(1, *tenant);
  s->step();
  auto p = db.prepare(
      "SELECT count(DISTINCT tenant || char(31) || saga || char(31) || correlation_id) FROM "
      "wf_saga_inbox WHERE state = 2 AND (?1 IS NULL OR tenant = ?1)");
  if (tenant) p->bind(1, *tenant);
  p->step();
  out["sagas"] =
      json{{"active", s->col_int(0)}, {"done", s->col_int(1)}, {"parked", p->col_int(0)}};
  auto ev = db.prepare(
      "SELECT count(*) FROM wf_saga_inbox WHERE state = 0 AND (?1 IS NULL OR tenant = ?1)");
  if (tenant) ev->bind(1, *tenant);
  ev->step();
  auto um =
      db.prepare("SELECT count(*) FROM wf_events WHERE routed = 0 AND (?1 IS NULL OR tenant = ?1)");
  if (tenant) um->bind(1, *tenant);
  um->step();
  out["events"] = json{{"pending", ev->col_int(0)}, {"unmatched", um->col_int(0)}};
  auto sc = db.prepare(
      "SELECT count(*) FILTER (WHERE parked_reason IS NULL), "
      "min(next_due) FILTER (WHERE parked_reason IS NULL), "
      "count(*) FILTER (WHERE parked_reason IS NULL AND next_due <= ?2), "
      "count(*) FILTER (WHERE parked_reason IS NOT NULL) FROM wf_schedules "
      "WHERE (?1 IS NULL OR tenant = ?1)");
  if (tenant) sc->bind(1, *tenant);
  sc->bind(2, now);
  sc->step();
  // Parked schedules (their firing failed): the oldest 100, with the reason.
  json parked_list = json::array();
  if (sc->col_int(3) > 0) {
    auto pl = db.prepare(
        "SELECT tenant, key, parked_reason, parked_at FROM wf_schedules INDEXED BY "
        "wf_schedules_parked WHERE parked_reason IS NOT NULL AND (?1 IS NULL OR tenant = ?1) "
        "ORDER BY parked_at LIMIT 100");
    if (tenant) pl->bind(1, *tenant);
    while (pl->step())
      parked_list.push_back(json{{"tenant", pl->col_text(0)},
                                 {"key", pl->col_text(1)},
                                 {"reason", pl->col_text(2)},
                                 {"parked_at", pl->col_int(3)}});
  }
  out["schedules"] = json{{"pending", sc->col_int(0)},
                          {"next_due_ms", sc->col_null(1) ? json(nullptr) : json(sc->col_int(1))},
                          {"due", sc->col_int(2)},
                          {"parked", sc->col_int(3)},
                          {"parked_list", std::move(parked_list)}};
  return out;
}

}  // namespace wf

extern "C" WF_API int wf_buf_set(wf_buf *out, const char *data, size_t len) {
  if (!out || (!data && len)) {
    wf::set_last_error("wf_buf_set: NULL buffer or data");
    return WF_EINVAL;
  }
  try {
    out->data.assign(data ? data : "", len);
    out->set = true;
    return WF_OK;
  } catch (...) {
    wf::set_last_error("out of memory");
    return WF_ENOMEM;
  }
}
