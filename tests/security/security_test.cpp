// Security properties through the public API:
//  - tenant isolation under random interleavings of colliding keys, event ids,
//    correlation ids and schedule keys (property test against a model);
//  - hostile strings in every identifier: accepted and round-tripped exactly,
//    or refused with WF_EINVAL / WF_ETOOBIG, never corrupting the database;
//  - host SQL cannot reach the engine's tables;
//  - database files are private (0600) under a permissive umask, also after
//    a reopen;
//  - payloads, metadata, results, saga state and the encryption key never
//    reach the logs.
#include <dirent.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "helpers.h"

using namespace wft;

namespace {

// Polls `pred` (state with no host signal, e.g. a committed saga step).
template <typename F>
bool eventually(F &&pred, int ms = 10000) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

std::string show(const std::string &v) {
  std::string s = json(v).dump(-1, ' ', true, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 60) + "...(" + std::to_string(v.size()) + " bytes)";
  return s;
}

// Log lines are recorded with wft::LogCapture (tests/unit/helpers.h).

// A reducer that records, per instance, the tenant and correlation id it was
// called with and the ids of the events it applied.
int recording_reducer(void *, const char *in, size_t len, wf_buf *out) {
  json input = json::parse(std::string(in, len));
  json state = input["state"];
  if (state.is_null())
    state = json{{"tenant", input["tenant"]},
                 {"corr", input["correlation_id"]},
                 {"ids", json::array()},
                 {"event_tenants", json::array()}};
  state["ids"].push_back(input["event"]["event_id"]);
  state["event_tenants"].push_back(input["event"]["tenant"]);
  json o{{"state", state}};
  std::string s = o.dump();
  return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
}

uint64_t base_seed() {
  const char *env = std::getenv("WF_SECURITY_SEED");
  if (env && *env) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

}  // namespace

// ---------------------------------------------------------------- tenants

namespace {

struct IsoJob {
  std::string tenant, key;
  enum State { kLater, kDone, kDead, kGone } state;
};

struct TenantModel {
  std::set<std::string> events;
  int64_t unmatched = 0;
  std::map<std::string, std::vector<std::string>> sagas;  // corr -> applied event ids
  std::set<std::string> schedules;
};

}  // namespace

class TenantIsolation : public EngineTest {
 protected:
  static constexpr int64_t kLaterMs = 3600000;   // "later" jobs
  static constexpr int64_t kFireMs = 7200000;    // schedules
  static constexpr int64_t kFinalMs = 10800000;  // clock step of the final phase
  std::unique_ptr<Sink> sink;
  std::mt19937_64 rng;
  std::map<int64_t, IsoJob> jobs;  // every job the model knows, by id
  std::map<std::string, TenantModel> model;
  size_t dispatches = 0;  // deliveries the model expects so far
  int64_t t0 = 0;
  std::string op;  // current operation, for failure messages
  // How often the other tenant held the same key / event id / pending job
  // when this tenant acted on it (the cases the property is about).
  int cross_keys = 0, cross_events = 0, cross_cancels = 0;

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }
  const char *tenant_of(int i) { return i ? "b" : "a"; }

  // The job holding (tenant, key) against new enqueues, or -1.
  int64_t holder(const std::string &t, const std::string &k) {
    for (auto &[id, j] : jobs)
      if (j.tenant == t && j.key == k && (j.state == IsoJob::kLater || j.state == IsoJob::kDone))
        return id;
    return -1;
  }

  void settle() {
    ASSERT_TRUE(sink->wait_count(dispatches))
        << op << ": expected " << dispatches << " deliveries, got " << sink->count();
    sync();
    EXPECT_EQ(dispatches, sink->count()) << op << ": unexpected deliveries";
  }
  void settle_sagas() {
    ASSERT_TRUE(eventually([&] { return stats()["events"]["pending"] == 0; }))
        << op << ": saga events never applied";
  }

  void round(uint64_t seed, int ops) {
    rng.seed(seed);
    jobs.clear();
    model.clear();
    dispatches = 0;
    sink = std::make_unique<Sink>();
    sink->handler = [](wf_job *j) {
      size_t len;
      const char *p = wf_job_payload(j, &len);
      json pl = json::parse(std::string(p, len));
      if (pl.value("outcome", "") == "fail")
        EXPECT_EQ(WF_OK, wf_job_fail(j, "planned failure"));
      else
        EXPECT_EQ(WF_OK, wf_job_complete(j, "{\"ok\":true}"));
    };
    path = dir + "/iso-" + std::to_string(seed) + ".db";
    open();
    t0 = clock.now.load();
    ASSERT_EQ(WF_OK, wf_effect_register(e, "iso", nullptr, Sink::cb, sink.get()));
    ASSERT_EQ(WF_OK,
              wf_saga_register(e, "iso", "{\"start\":[\"ev\"]}", recording_reducer, nullptr));
    ASSERT_EQ(WF_OK, wf_start(e));
    for (int i = 0; i < ops && !HasFailure(); ++i) {
      std::string t = tenant_of(pick(2));
      switch (pick(12)) {
        case 0:
        case 1:
        case 2:
          do_enqueue(t);
          break;
        case 3:
          do_cancel_key(t);
          break;
        case 4:
          do_cancel_id(t);
          break;
        case 5:
        case 6:
          do_submit(t);
          break;
        case 7:
          do_schedule(t);
          break;
        case 8:
          do_unschedule(t);
          break;
        case 9:
          if (pick(2))
            do_requeue(t);
          else
            do_purge(t);
          break;
        case 10:
          check_stats(t);
          break;
        default:
          check_sagas(t);
          break;
      }
    }
    if (HasFailure()) return;
    op = "final";
    check_stats("a");
    check_stats("b");
    check_sagas("a");
    check_sagas("b");
    final_phase();
    ASSERT_EQ(WF_OK, wf_close(e));
    e = nullptr;
  }

  void do_enqueue(const std::string &t) {
    std::string k = "k-" + std::to_string(pick(6));
    int mode = pick(3);  // 0: later, 1: runs now and completes, 2: runs now and fails
    op = "enqueue tenant " + t + " key " + k + " mode " + std::to_string(mode);
    json doc{{"effect", "iso"},
             {"tenant", t},
             {"key", k},
             {"payload", {{"tenant", t}, {"key", k}, {"outcome", mode == 2 ? "fail" : "ok"}}}};
    if (mode == 0) doc["delay_ms"] = kLaterMs;
    char *id = nullptr;
    int rc = wf_enqueue(e, doc.dump().c_str(), &id);
    std::string ids = id ? id : "";
    wf_free(id);
    int64_t h = holder(t, k);
    if (h < 0 && holder(t == "a" ? "b" : "a", k) >= 0) ++cross_keys;
    if (h >= 0) {
      EXPECT_EQ(WF_EEXIST, rc) << op << ": " << wf_last_error();
      EXPECT_EQ(std::to_string(h), ids) << op << ": WF_EEXIST names another job";
      return;
    }
    ASSERT_EQ(WF_OK, rc) << op << ": " << wf_last_error();
    int64_t n = std::stoll(ids);
    ASSERT_EQ(0u, jobs.count(n)) << op << ": job id reused";
    jobs[n] = IsoJob{t, k, mode == 0 ? IsoJob::kLater : mode == 1 ? IsoJob::kDone : IsoJob::kDead};
    if (mode != 0) {
      ++dispatches;
      settle();
    }
  }

  void do_cancel_key(const std::string &t) {
    std::string k = "k-" + std::to_string(pick(6));
    op = "cancel tenant " + t + " key " + k;
    int64_t h = holder(t, k);
    bool pending = h >= 0 && jobs[h].state == IsoJob::kLater;
    int rc = wf_cancel(e, t.c_str(), k.c_str());
    EXPECT_EQ(pending ? WF_OK : WF_ENOTFOUND, rc) << op << ": " << wf_last_error();
    if (pending && rc == WF_OK) jobs[h].state = IsoJob::kGone;
  }

  // Cancels by id, often an id of the other tenant's job.
  void do_cancel_id(const std::string &t) {
    if (jobs.empty()) return;
    auto it = jobs.begin();
    std::advance(it, pick(static_cast<int>(jobs.size())));
    op = "cancel tenant " + t + " id " + std::to_string(it->first) + " (of tenant " +
         it->second.tenant + ")";
    bool ok = it->second.tenant == t && it->second.state == IsoJob::kLater;
    if (it->second.tenant != t && it->second.state == IsoJob::kLater) ++cross_cancels;
    int rc = wf_cancel(e, t.c_str(), std::to_string(it->first).c_str());
    EXPECT_EQ(ok ? WF_OK : WF_ENOTFOUND, rc) << op << ": " << wf_last_error();
    if (ok && rc == WF_OK) it->second.state = IsoJob::kGone;
  }

  void do_submit(const std::string &t) {
    std::string eid = "evt-" + std::to_string(pick(8));
    std::string corr = "c-" + std::to_string(pick(3));
    std::string type = pick(5) == 0 ? "other" : "ev";
    op = "submit tenant " + t + " event " + eid + " type " + type + " corr " + corr;
    json ev{{"event_id", eid},
            {"type", type},
            {"tenant", t},
            {"correlation_id", corr},
            {"payload", {{"tenant", t}}}};
    int rc = wf_submit(e, ev.dump().c_str());
    TenantModel &m = model[t];
    if (!m.events.count(eid) && model[t == "a" ? "b" : "a"].events.count(eid)) ++cross_events;
    if (m.events.count(eid)) {
      EXPECT_EQ(WF_EEXIST, rc) << op << ": " << wf_last_error();
      return;
    }
    ASSERT_EQ(WF_OK, rc) << op << ": " << wf_last_error();
    m.events.insert(eid);
    if (type == "ev")
      m.sagas[corr].push_back(eid);
    else
      m.unmatched++;
  }

  void do_schedule(const std::string &t) {
    std::string sk = "s-" + std::to_string(pick(4));
    op = "schedule tenant " + t + " key " + sk;
    json s{{"key", sk},
           {"tenant", t},
           {"delay_ms", kFireMs},
           {"job", {{"effect", "iso"}, {"payload", {{"tenant", t}, {"sched", sk}}}}}};
    ASSERT_EQ(WF_OK, wf_schedule(e, s.dump().c_str())) << op << ": " << wf_last_error();
    model[t].schedules.insert(sk);
  }

  void do_unschedule(const std::string &t) {
    std::string sk = "s-" + std::to_string(pick(4));
    op = "unschedule tenant " + t + " key " + sk;
    bool have = model[t].schedules.count(sk) != 0;
    EXPECT_EQ(have ? WF_OK : WF_ENOTFOUND, wf_unschedule(e, t.c_str(), sk.c_str()))
        << op << ": " << wf_last_error();
    model[t].schedules.erase(sk);
  }

  std::vector<int64_t> dead_ids(const std::string &t) {
    std::vector<int64_t> v;
    for (auto &[id, j] : jobs)
      if (j.tenant == t && j.state == IsoJob::kDead) v.push_back(id);
    return v;
  }

  // Re-queues the tenant's dead letters. Newest first (dead_at ties under the
  // fixed clock, then id descending); a key held again, in this tenant only,
  // keeps its dead letter dead. Every re-queued job fails again.
  void do_requeue(const std::string &t) {
    op = "requeue tenant " + t;
    std::vector<int64_t> ids = dead_ids(t);
    std::set<std::string> taken;
    int64_t expect = 0;
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
      const std::string &k = jobs[*it].key;
      if (holder(t, k) >= 0 || taken.count(k)) continue;
      taken.insert(k);
      ++expect;
    }
    int64_t count = -1;
    ASSERT_EQ(WF_OK, wf_dead_requeue(e, json{{"tenant", t}}.dump().c_str(), &count))
        << wf_last_error();
    EXPECT_EQ(expect, count) << op;
    dispatches += static_cast<size_t>(std::max<int64_t>(0, count));
    settle();
  }

  void do_purge(const std::string &t) {
    op = "purge tenant " + t;
    std::vector<int64_t> ids = dead_ids(t);
    int64_t count = -1;
    ASSERT_EQ(WF_OK, wf_dead_purge(e, json{{"tenant", t}}.dump().c_str(), &count))
        << wf_last_error();
    EXPECT_EQ(static_cast<int64_t>(ids.size()), count) << op;
    for (int64_t id : ids) jobs[id].state = IsoJob::kGone;
  }

  void check_stats(const std::string &t) {
    op = "stats tenant " + t;
    settle_sagas();
    int64_t later = 0;
    for (auto &[id, j] : jobs)
      if (j.tenant == t && j.state == IsoJob::kLater) ++later;
    std::vector<int64_t> dead_now = dead_ids(t);
    const TenantModel &m = model[t];
    int64_t active = 0;
    for (auto &[corr, ids] : m.sagas) active += ids.empty() ? 0 : 1;
    for (const json &filter : {json{{"tenant", t}}, json{{"tenant", t}, {"effect", "iso"}}}) {
      json s = stats(filter.dump().c_str());
      EXPECT_EQ(later, s["outbox"]["scheduled"]) << op << " " << s.dump();
      EXPECT_EQ(0, s["outbox"]["ready"]) << op;
      EXPECT_EQ(0, s["outbox"]["running"]) << op;
      for (auto &[ten, v] : s["outbox"]["by_tenant"].items())
        EXPECT_EQ(t, ten) << op << ": another tenant's jobs are counted: " << s.dump();
      EXPECT_EQ(static_cast<int64_t>(dead_now.size()), s["dead"]) << op << " " << s.dump();
      EXPECT_EQ(static_cast<int64_t>(m.schedules.size()), s["schedules"]["pending"]) << op;
      EXPECT_EQ(active, s["sagas"]["active"]) << op;
      EXPECT_EQ(m.unmatched, s["events"]["unmatched"]) << op;
    }
    json dl = dead(json{{"tenant", t}}.dump().c_str());
    std::set<int64_t> listed;
    for (auto &d : dl) {
      EXPECT_EQ(t, d["tenant"]) << op << ": dead letter of another tenant listed";
      EXPECT_EQ(t, d["payload"]["tenant"]) << op;
      int64_t id = std::stoll(d["id"].get<std::string>());
      listed.insert(id);
      if (jobs.count(id)) {
        EXPECT_EQ(jobs[id].key, d["key"]) << op;
      }
    }
    EXPECT_EQ(std::set<int64_t>(dead_now.begin(), dead_now.end()), listed) << op;
  }

  void check_sagas(const std::string &t) {
    op = "sagas tenant " + t;
    settle_sagas();
    for (int c = 0; c < 3; ++c) {
      std::string corr = "c-" + std::to_string(c);
      const auto &applied = model[t].sagas[corr];
      char *out = nullptr;
      int rc = wf_saga_get(e, t.c_str(), "iso", corr.c_str(), &out);
      if (applied.empty()) {
        EXPECT_EQ(WF_ENOTFOUND, rc) << op << " corr " << corr << ": " << (out ? out : "");
      } else {
        EXPECT_EQ(WF_OK, rc) << op << " corr " << corr << ": " << wf_last_error();
        if (out) {
          json st = json::parse(out)["state"];
          EXPECT_EQ(t, st["tenant"]) << op;
          EXPECT_EQ(corr, st["corr"]) << op;
          EXPECT_EQ(json(applied), st["ids"]) << op << ": the instance applied other events";
          for (auto &et : st["event_tenants"]) EXPECT_EQ(t, et) << op;
        }
      }
      wf_free(out);
    }
  }

  // Moves the clock past every delayed job and schedule: each tenant gets
  // exactly its own jobs and firings, although the derived keys collide.
  void final_phase() {
    size_t later = 0;
    std::set<std::pair<std::string, std::string>> fires;
    for (auto &[id, j] : jobs)
      if (j.state == IsoJob::kLater) ++later;
    for (auto &[t, m] : model)
      for (auto &sk : m.schedules) fires.insert({t, sk});
    size_t before = sink->count();
    clock.now += kFinalMs;
    ASSERT_EQ(WF_OK, wf_wake(e));
    dispatches += later + fires.size();
    settle();
    std::set<std::pair<std::string, std::string>> fired;
    std::lock_guard<std::mutex> g(sink->mu);
    for (size_t i = 0; i < sink->seen.size(); ++i) {
      const json &r = sink->seen[i];
      EXPECT_EQ(r["payload"]["tenant"], r["tenant"]) << "delivery " << r.dump();
      int64_t id = std::stoll(r["id"].get<std::string>());
      auto it = jobs.find(id);
      if (it != jobs.end()) {
        EXPECT_EQ(it->second.tenant, r["tenant"]) << r.dump();
        EXPECT_EQ(it->second.key, r["key"]) << r.dump();
        continue;
      }
      ASSERT_GE(i, before) << "unknown job delivered: " << r.dump();
      std::string sk = r["payload"]["sched"];
      EXPECT_EQ("schedule:" + sk + "@" + std::to_string(t0 + kFireMs), r["key"]) << r.dump();
      EXPECT_TRUE(fired.insert({r["tenant"], sk}).second) << "fired twice: " << r.dump();
    }
    EXPECT_EQ(fires, fired);
  }
};

TEST_F(TenantIsolation, CollidingIdsNeverCrossTenantsUnderRandomInterleavings) {
  uint64_t seed = base_seed();
  std::printf("[ seed     ] WF_SECURITY_SEED=%llu\n", static_cast<unsigned long long>(seed));
  RecordProperty("seed", std::to_string(seed));
  auto start = std::chrono::steady_clock::now();
  int rounds = 0;
  for (; rounds < 200; ++rounds) {
    auto spent = std::chrono::steady_clock::now() - start;
    if (rounds >= 3 && spent > std::chrono::seconds(6)) break;
    SCOPED_TRACE("WF_SECURITY_SEED=" + std::to_string(seed) + " round " + std::to_string(rounds) +
                 " (round seed " + std::to_string(seed + rounds) + ")");
    round(seed + rounds, 120);
    if (HasFailure()) break;
  }
  std::printf("[ rounds   ] %d (cross-tenant collisions: %d keys, %d event ids, %d cancels)\n",
              rounds, cross_keys, cross_events, cross_cancels);
  EXPECT_GT(cross_keys, 0);
  EXPECT_GT(cross_events, 0);
  EXPECT_GT(cross_cancels, 0);
}

// ---------------------------------------------------------------- hostile

namespace {

std::vector<std::string> hostile_values() {
  std::vector<std::string> v = {
      "'",
      "\"",
      ";",
      "--",
      "\\",
      "%s%n%x%%",
      "'); DROP TABLE wf_jobs;--",
      "\" OR \"1\"=\"1",
      "x' OR '1'='1",
      "Robert'); DELETE FROM wf_dead; --",
      "*/ SELECT 1; /*",
      "?1 :name @p $1",
      "\\u0000 spelled out",
      "{\"json\": [1, 2]}",
      "wf_jobs",
      "null",
      " ",
      "0",
      "123456789012345678",
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",  // Japanese
      "\xf0\x9f\x9a\x80 rocket",               // U+1F680, a surrogate pair in JSON
      "\xe2\x80\xae right-to-left override",   // U+202E
      "e\xcc\x81 combining",                   // e + U+0301
      "line\nbreak\ttab\rreturn",
      "\x01\x1f\x7f",
      "sep\x1fsep",  // the engine's internal instance-key separator
      std::string("nul\0inside", 10),
      std::string("\0", 1),
      std::string("trailing nul\0", 13),
      std::string(200, 't'),
      std::string(201, 't'),
      std::string(512, 'e'),
      std::string(513, 'e'),
      std::string(1024, 'k'),
      std::string(1025, 'k'),
      std::string(100000, 'x'),
  };
  return v;
}

bool has_nul(const std::string &v) { return v.find('\0') != std::string::npos; }
bool has_control(const std::string &v) {
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// An identifier field: its length bounds, as documented by the engine.
struct Field {
  const char *name;
  size_t min, max;
  // Refusal is required outside the bounds; values with NUL bytes cannot
  // round-trip through the C accessors, so they must be refused; control
  // characters may go either way. Everything else must be accepted.
  bool must_accept(const std::string &v) const {
    return v.size() >= min && v.size() <= max && !has_nul(v) && !has_control(v);
  }
  bool must_refuse(const std::string &v) const { return v.size() < min || v.size() > max; }
};

const Field kTenant{"tenant", 0, 200};
const Field kKey{"key", 1, 1024};
const Field kEffect{"effect", 1, 200};
const Field kEventId{"event_id", 1, 512};
const Field kCorr{"correlation_id", 1, 1024};  // "" is valid but routes nowhere
const Field kSchedKey{"schedule key", 1, 1024};

}  // namespace

class HostileStrings : public EngineTest {
 protected:
  Sink sink;
  struct Expect {
    std::string tenant, key, effect, v;
  };
  std::map<int, Expect> deliveries;  // by case number
  struct SagaCheck {
    std::string tenant, corr, event_id;
  };
  std::vector<SagaCheck> saga_checks;
  std::vector<std::pair<std::string, std::string>> stored_keys;  // (tenant, key) in wf_jobs
  int next_case = 0;
  std::set<int> flagged;  // cases accepted although they had to be refused

  // Checks the status of a call taking hostile value `v` in field `f`;
  // returns true when the value was accepted.
  bool judge(int rc, const Field &f, const std::string &v, const std::string &what) {
    std::string ctx = what + " with " + f.name + " " + show(v);
    if (rc == WF_OK) {
      EXPECT_FALSE(f.must_refuse(v)) << ctx << ": accepted a value outside the limits";
      if (has_nul(v)) {
        // Not followed further: every C-string accessor and lookup (wf_job_*,
        // wf_cancel, wf_unschedule, wf_saga_get) would see it truncated.
        ADD_FAILURE() << ctx << ": accepted a NUL byte; it cannot round-trip through the C API "
                      << "(wf_job_tenant/wf_job_key would return it truncated, i.e. as another "
                      << "tenant or key)";
        flagged.insert(next_case - 1);
        return false;
      }
      return true;
    }
    EXPECT_TRUE(rc == WF_EINVAL || rc == WF_ETOOBIG)
        << ctx << ": status " << rc << " " << wf_last_error();
    EXPECT_FALSE(f.must_accept(v)) << ctx << ": refused: " << wf_last_error();
    return false;
  }

  int enqueue_doc(const json &doc, std::string *id = nullptr) {
    char *out = nullptr;
    int rc = wf_enqueue(e, doc.dump().c_str(), &out);
    if (id) *id = out ? out : "";
    wf_free(out);
    return rc;
  }

  void as_tenant(const std::string &v) {
    int c = next_case++;
    std::string key = "key-" + std::to_string(c);
    json doc{{"effect", "h"}, {"tenant", v}, {"key", key}, {"payload", {{"case", c}, {"v", v}}}};
    std::string id;
    if (!judge(enqueue_doc(doc, &id), kTenant, v, "wf_enqueue")) return;
    deliveries[c] = Expect{v, key, "h", v};
    stored_keys.push_back({v, key});
    std::string again;
    EXPECT_EQ(WF_EEXIST, enqueue_doc(doc, &again)) << "tenant " << show(v);
    EXPECT_EQ(id, again);
    char *out = nullptr;
    EXPECT_EQ(WF_OK, wf_stats(e, json{{"tenant", v}}.dump().c_str(), &out)) << wf_last_error();
    wf_free(out);
    out = nullptr;
    EXPECT_EQ(WF_OK, wf_dead_list(e, json{{"tenant", v}}.dump().c_str(), &out)) << wf_last_error();
    if (out) {
      EXPECT_EQ(json::array(), json::parse(out));
    }
    wf_free(out);
    // wf_cancel takes the tenant as a C string.
    json later{{"effect", "h"}, {"tenant", v}, {"key", "later"}, {"delay_ms", 3600000}};
    std::string lid;
    ASSERT_EQ(WF_OK, enqueue_doc(later, &lid)) << wf_last_error();
    EXPECT_EQ(WF_OK, wf_cancel(e, v.c_str(), "later")) << "tenant " << show(v);
  }

  void as_key(const std::string &v) {
    int c = next_case++;
    json doc{{"effect", "h"}, {"tenant", "t"}, {"key", v}, {"payload", {{"case", c}, {"v", v}}}};
    std::string id;
    if (!judge(enqueue_doc(doc, &id), kKey, v, "wf_enqueue")) return;
    deliveries[c] = Expect{"t", v, "h", v};
    stored_keys.push_back({"t", v});
    std::string again;
    EXPECT_EQ(WF_EEXIST, enqueue_doc(doc, &again)) << "key " << show(v);
    EXPECT_EQ(id, again);
    json later{{"effect", "h"}, {"tenant", "t-cancel"}, {"key", v}, {"delay_ms", 3600000}};
    ASSERT_EQ(WF_OK, enqueue_doc(later)) << wf_last_error();
    EXPECT_EQ(WF_OK, wf_cancel(e, "t-cancel", v.c_str())) << "key " << show(v);
  }

  void as_effect(const std::string &v) {
    int c = next_case++;
    json doc{{"effect", v}, {"tenant", "t"}, {"payload", {{"case", c}, {"v", v}}}};
    if (!judge(enqueue_doc(doc), kEffect, v, "wf_enqueue")) return;
    ASSERT_EQ(WF_OK, wf_effect_register(e, v.c_str(), nullptr, Sink::cb, &sink))
        << "effect " << show(v) << ": " << wf_last_error();
    deliveries[c] = Expect{"t", "", v, v};
  }

  void as_event_fields(const std::string &v) {
    int c = next_case++;
    std::string n = std::to_string(c);
    json ev{{"event_id", v}, {"type", "hostile"}, {"tenant", "t"}, {"correlation_id", "c" + n}};
    if (judge(wf_submit(e, ev.dump().c_str()), kEventId, v, "wf_submit")) {
      saga_checks.push_back({"t", "c" + n, v});
      EXPECT_EQ(WF_EEXIST, wf_submit(e, ev.dump().c_str())) << "event_id " << show(v);
    }
    ev = json{
        {"event_id", "corr-" + n}, {"type", "hostile"}, {"tenant", "t"}, {"correlation_id", v}};
    if (judge(wf_submit(e, ev.dump().c_str()), v.empty() ? kTenant : kCorr, v, "wf_submit"))
      if (!v.empty()) saga_checks.push_back({"t", v, "corr-" + n});
    ev = json{
        {"event_id", "tenant-" + n}, {"type", "hostile"}, {"tenant", v}, {"correlation_id", "c"}};
    if (judge(wf_submit(e, ev.dump().c_str()), kTenant, v, "wf_submit"))
      saga_checks.push_back({v, "c", "tenant-" + n});
  }

  void as_schedule_fields(const std::string &v, int64_t due) {
    int c = next_case++;
    json s{{"key", v},
           {"tenant", "t-sched"},
           {"at", due},
           {"job", {{"effect", "h"}, {"payload", {{"case", c}, {"v", v}}}}}};
    if (judge(wf_schedule(e, s.dump().c_str()), kSchedKey, v, "wf_schedule")) {
      deliveries[c] = Expect{"t-sched", "schedule:" + v + "@" + std::to_string(due), "h", v};
      s["tenant"] = "t-unsched";
      ASSERT_EQ(WF_OK, wf_schedule(e, s.dump().c_str())) << wf_last_error();
      EXPECT_EQ(WF_OK, wf_unschedule(e, "t-unsched", v.c_str())) << "schedule key " << show(v);
      EXPECT_EQ(WF_ENOTFOUND, wf_unschedule(e, "t-unsched", v.c_str()));
    }
    json t{{"key", "k" + std::to_string(c)},
           {"tenant", v},
           {"at", due},
           {"job", {{"effect", "h"}, {"tenant", v}}}};
    if (judge(wf_schedule(e, t.dump().c_str()), kTenant, v, "wf_schedule")) {
      EXPECT_EQ(WF_OK, wf_unschedule(e, v.c_str(), ("k" + std::to_string(c)).c_str()))
          << "schedule tenant " << show(v);
    }
  }
};

TEST_F(HostileStrings, EveryIdFieldRoundTripsOrIsRefused) {
  open();
  ASSERT_EQ(WF_OK, wf_effect_register(e, "h", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK,
            wf_saga_register(e, "hs", "{\"start\":[\"hostile\"]}", recording_reducer, nullptr));
  ASSERT_EQ(WF_OK, wf_start(e));
  int64_t due = clock.now + 60000;
  for (const std::string &v : hostile_values()) {
    SCOPED_TRACE("value " + show(v));
    as_tenant(v);
    as_key(v);
    as_effect(v);
    as_event_fields(v);
    as_schedule_fields(v, due);
  }
  // Keys differing only by Unicode normalization never dedupe each other.
  {
    std::string a, b;
    EXPECT_EQ(WF_OK, enqueue_doc(json{{"effect", "h"}, {"key", "e\xc3\xa9"}}, &a));
    EXPECT_EQ(WF_OK, enqueue_doc(json{{"effect", "h"}, {"key", "ee\xcc\x81"}}, &b));
    EXPECT_NE(a, b);
  }
  // Malformed text is refused before anything is stored.
  for (const char *doc :
       {"{\"effect\":\"h\",\"key\":\"\xff\xfe\"}", "{\"effect\":\"h\",\"key\":\"\\ud800\"}",
        "{\"effect\":\"h\",\"tenant\":\"\xc0\xaf\"}", "{\"effect\":\"h\",\"key\":\"unterminated}",
        "{\"effect\":\"h\"} trailing"})
    EXPECT_EQ(WF_EINVAL, wf_enqueue(e, doc, nullptr)) << doc;
  std::string big(2 << 20, 'p');
  EXPECT_EQ(WF_ETOOBIG, enqueue_doc(json{{"effect", "h"}, {"payload", big}}));
  std::string deep = std::string(200, '[') + std::string(200, ']');
  EXPECT_EQ(WF_ETOOBIG,
            wf_enqueue(e, ("{\"effect\":\"h\",\"payload\":" + deep + "}").c_str(), nullptr));

  // Every accepted job is delivered with exactly its identifiers.
  clock.now += 120000;
  ASSERT_EQ(WF_OK, wf_wake(e));
  ASSERT_TRUE(sink.wait([&] {
    std::set<int> got;
    for (auto &r : sink.seen)
      if (r["payload"].is_object() && r["payload"].contains("case"))
        got.insert(r["payload"]["case"].get<int>());
    for (auto &[c, x] : deliveries)
      if (!got.count(c)) return false;
    return true;
  })) << "accepted jobs were not all delivered";
  {
    std::lock_guard<std::mutex> g(sink.mu);
    for (auto &r : sink.seen) {
      if (!r["payload"].is_object() || !r["payload"].contains("case")) continue;
      int c = r["payload"]["case"].get<int>();
      if (flagged.count(c)) continue;  // reported when it was accepted
      auto it = deliveries.find(c);
      ASSERT_NE(it, deliveries.end()) << "refused job delivered: " << r.dump();
      EXPECT_EQ(it->second.tenant, r["tenant"]) << r.dump();
      EXPECT_EQ(it->second.key, r["key"]) << r.dump();
      EXPECT_EQ(it->second.effect, r["effect"]) << r.dump();
      EXPECT_EQ(it->second.v, r["payload"]["v"]) << r.dump();
    }
  }
  // Every accepted event reached its own saga instance.
  for (auto &sc : saga_checks) {
    char *out = nullptr;
    ASSERT_TRUE(eventually([&] {
      wf_free(out);
      out = nullptr;
      return wf_saga_get(e, sc.tenant.c_str(), "hs", sc.corr.c_str(), &out) == WF_OK;
    })) << "no saga instance for tenant "
        << show(sc.tenant) << " corr " << show(sc.corr);
    json st = json::parse(out)["state"];
    wf_free(out);
    EXPECT_EQ(sc.tenant, st["tenant"]);
    EXPECT_EQ(sc.corr, st["corr"]);
    EXPECT_EQ(json::array({sc.event_id}), st["ids"]);
  }
  // Metrics stay well-formed with hostile effect names as label values.
  char *text = nullptr;
  ASSERT_EQ(WF_OK, wf_metrics(e, &text));
  std::string m = text;
  wf_free(text);
  std::regex line(
      R"(^(# .*|[a-z0-9_]+(\{[a-z0-9_]+="([^"\\\n]|\\.)*"(,[a-z0-9_]+="([^"\\\n]|\\.)*")*\})? )"
      R"((-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[+-]Inf|NaN))$)");
  size_t pos = 0;
  while (pos < m.size()) {
    size_t nl = m.find('\n', pos);
    std::string l = m.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    EXPECT_TRUE(std::regex_match(l, line)) << "malformed metrics line: " << show(l);
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }

  // The database is intact, its tables are there, and the keys are stored
  // byte for byte.
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr));
  sqlite3_stmt *st = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr));
  ASSERT_EQ(SQLITE_ROW, sqlite3_step(st));
  EXPECT_STREQ("ok", reinterpret_cast<const char *>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db,
                                          "SELECT count(*) FROM sqlite_schema WHERE type = "
                                          "'table' AND name IN ('wf_jobs', 'wf_dead', "
                                          "'wf_done_keys', 'wf_events', 'wf_sagas')",
                                          -1, &st, nullptr));
  ASSERT_EQ(SQLITE_ROW, sqlite3_step(st));
  EXPECT_EQ(5, sqlite3_column_int(st, 0));
  sqlite3_finalize(st);
  ASSERT_EQ(SQLITE_OK,
            sqlite3_prepare_v2(db, "SELECT tenant, key FROM wf_done_keys", -1, &st, nullptr));
  std::set<std::pair<std::string, std::string>> stored;
  while (sqlite3_step(st) == SQLITE_ROW) {
    auto col = [&](int i) {
      return std::string(reinterpret_cast<const char *>(sqlite3_column_blob(st, i)),
                         static_cast<size_t>(sqlite3_column_bytes(st, i)));
    };
    stored.insert({col(0), col(1)});
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  for (auto &tk : stored_keys)
    EXPECT_TRUE(stored.count(tk)) << "tenant " << show(tk.first) << " key " << show(tk.second)
                                  << " not stored exactly";
  // And the engine opens it again.
  open();
}

// Plain engine fixture, named for this suite.
class SecurityTest : public EngineTest {};

// Host SQL (wf_tx_exec) can read the engine's tables but never change them,
// whatever the spelling, and hostile parameters are bound, not spliced.
TEST_F(SecurityTest, HostSqlCannotReachEngineTables) {
  open();
  enqueue({{"effect", "x"}, {"key", "k"}});
  wf_tx *tx = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
  char *rows = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_exec(tx, "SELECT ?1 AS v", "[\"'); DROP TABLE wf_jobs;--\"]", &rows))
      << wf_last_error();
  EXPECT_EQ("'); DROP TABLE wf_jobs;--", json::parse(rows)[0]["v"]);
  wf_free(rows);
  ASSERT_EQ(WF_OK, wf_tx_exec(tx, "CREATE TABLE host_t(id INTEGER PRIMARY KEY AUTOINCREMENT, v)",
                              nullptr, nullptr))
      << wf_last_error();
  ASSERT_EQ(WF_OK, wf_tx_exec(tx, "INSERT INTO host_t(v) VALUES(?1)", "[\"x\"]", nullptr))
      << wf_last_error();
  for (const char *sql : {
           "DROP TABLE wf_jobs",
           "DELETE FROM wf_jobs",
           "delete from WF_JOBS",
           "DELETE FROM \"wf_jobs\"",
           "DELETE FROM main.wf_jobs",
           "DELETE FROM [wf_done_keys]",
           "UPDATE wf_jobs SET tenant = 'b'",
           "INSERT INTO wf_done_keys VALUES('t', 'k', 1, 0)",
           "REPLACE INTO wf_events(tenant, event_id, type, envelope, received_at, routed) "
           "VALUES('', 'e', 't', '{}', 0, 0)",
           "WITH x AS (SELECT 1) DELETE FROM wf_dead",
           "ALTER TABLE wf_jobs ADD COLUMN evil",
           "ALTER TABLE wf_jobs RENAME TO host_jobs",
           "CREATE INDEX host_idx ON wf_jobs(payload)",
           "DROP INDEX wf_jobs_key",
           "CREATE TRIGGER host_tr AFTER INSERT ON wf_jobs BEGIN SELECT 1; END",
           "CREATE TEMP TRIGGER host_tr AFTER INSERT ON main.wf_jobs BEGIN SELECT 1; END",
           "CREATE TABLE wf_evil(x)",
           "CREATE TEMP TABLE wf_jobs(x)",
           "CREATE VIEW wf_view AS SELECT 1",
           "CREATE TEMP VIEW wf_jobs AS SELECT 1 AS id",
           "CREATE TEMP VIEW wf_done_keys AS SELECT 't' AS tenant",
           "PRAGMA writable_schema = 1",
           "PRAGMA main.journal_mode = DELETE",
           "ATTACH DATABASE ':memory:' AS evil",
           "DETACH DATABASE main",
           "COMMIT",
           "ROLLBACK",
           "SAVEPOINT s",
           "BEGIN",
           "SELECT 1; DROP TABLE wf_jobs",
           "SELECT load_extension('libevil')",
       }) {
    int rc = wf_tx_exec(tx, sql, nullptr, nullptr);
    EXPECT_EQ(WF_EINVAL, rc) << sql << ": " << wf_last_error();
    // A statement that fails after starting may doom the transaction; start
    // a new one so each statement is judged alone.
    if (rc != WF_OK && rc != WF_EINVAL) {
      wf_tx_rollback(tx);
      ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
    }
  }
  // A trigger on a host table cannot write engine tables either: refused when
  // it is created, or when it would fire.
  int rc = wf_tx_exec(
      tx, "CREATE TRIGGER host_tr2 AFTER INSERT ON host_t BEGIN DELETE FROM wf_jobs; END", nullptr,
      nullptr);
  if (rc == WF_OK) {
    EXPECT_EQ(WF_EINVAL, wf_tx_exec(tx, "INSERT INTO host_t(v) VALUES('fire')", nullptr, nullptr))
        << "a host trigger deleted from wf_jobs";
  } else {
    EXPECT_EQ(WF_EINVAL, rc) << wf_last_error();
  }
  ASSERT_EQ(WF_OK, wf_tx_commit(tx)) << wf_last_error();
  json s = stats();
  EXPECT_EQ(1, s["outbox"]["ready"]);
  enqueue({{"effect", "x"}, {"key", "k"}}, WF_EEXIST);
}

// The host must not be able to rewind the engine's id counters (the job id
// floor in wf_meta, schema 11; sqlite_sequence for the saga tables and for
// files that keep AUTOINCREMENT): job ids (and the "job:<id>:completed" event
// ids derived from them) would be reused.
TEST_F(SecurityTest, HostSqlCannotRewindEngineIdCounters) {
  open();
  enqueue({{"effect", "x"}});
  wf_tx *tx = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
  for (const char *sql : {"UPDATE sqlite_sequence SET seq = 0 WHERE name = 'wf_jobs'",
                          "DELETE FROM sqlite_sequence WHERE name = 'wf_jobs'",
                          "UPDATE wf_meta SET v = '0' WHERE k = 'job_id_floor'",
                          "DELETE FROM wf_meta WHERE k = 'job_id_floor'"})
    EXPECT_EQ(WF_EINVAL, wf_tx_exec(tx, sql, nullptr, nullptr)) << sql;
  // Host tables with AUTOINCREMENT still work.
  EXPECT_EQ(WF_OK, wf_tx_exec(tx, "CREATE TABLE host_s(id INTEGER PRIMARY KEY AUTOINCREMENT, v)",
                              nullptr, nullptr))
      << wf_last_error();
  EXPECT_EQ(WF_OK, wf_tx_exec(tx, "INSERT INTO host_s(v) VALUES(1)", nullptr, nullptr))
      << wf_last_error();
  ASSERT_EQ(WF_OK, wf_tx_commit(tx)) << wf_last_error();
}

// ------------------------------------------------------------------ files

namespace {
// Mode of every file in `dir` (the database and whatever SQLite created).
std::map<std::string, mode_t> file_modes(const std::string &dir) {
  std::map<std::string, mode_t> out;
  DIR *d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent *ent = readdir(d)) {
    std::string n = ent->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    if (stat((dir + "/" + n).c_str(), &st) == 0 && S_ISREG(st.st_mode)) out[n] = st.st_mode & 0777;
  }
  closedir(d);
  return out;
}
}  // namespace

TEST_F(SecurityTest, FilesStayPrivateAcrossReopenAndUmasks) {
  mode_t old = umask(022);
  for (int round = 0; round < 3; ++round) {
    if (round == 2) umask(0);  // even a fully permissive umask
    open();
    enqueue({{"effect", "x"}, {"payload", round}});
    ASSERT_EQ(
        WF_OK,
        wf_submit(e,
                  json{{"event_id", "e" + std::to_string(round)}, {"type", "t"}}.dump().c_str()));
    auto modes = file_modes(dir);
    for (const char *suffix : {"", "-wal", "-shm"})
      EXPECT_EQ(1u, modes.count(std::string("t.db") + suffix))
          << "round " << round << ": no t.db" << suffix;
    for (auto &[name, mode] : modes)
      EXPECT_EQ(0600u, mode) << "round " << round << ": " << name << " is mode " << std::oct
                             << mode;
    ASSERT_EQ(WF_OK, wf_close(e));
    e = nullptr;
    for (auto &[name, mode] : file_modes(dir))
      EXPECT_EQ(0600u, mode) << "after close, round " << round << ": " << name;
  }
  umask(old);
}

// ------------------------------------------------------------------- logs

namespace {

const char *kSecretKey = "4f1c2a9be07d35c8a6e19f0b2d4c7e81a3b5d6f70912e4c8b7a6f5e4d3c2b1a0";

// Carries the secret through state, commands and schedules.
int secret_reducer(void *user, const char *in, size_t len, wf_buf *out) {
  const std::string &secret = *static_cast<std::string *>(user);
  json input = json::parse(std::string(in, len));
  std::string type = input["event"]["type"];
  if (type == "reject") return 7;
  json o{{"state", {{"secret", secret}, {"last", type}}}};
  if (type == "start") {
    o["commands"] = json::array({{{"effect", "ok"}, {"payload", {{"secret", secret}}}},
                                 {{"effect", "bad"}, {"payload", {{"secret", secret}}}}});
    o["schedules"] = json::array({{{"key", "sch"},
                                   {"delay_ms", 1000},
                                   {"event", {{"type", "tick"}, {"payload", {{"s", secret}}}}}}});
  }
  if (type == "garbage") {
    // Output with a bad field: the reason must name the field, not echo it.
    o["commands"] = json::array({{{"effect", ""}, {"payload", {{"secret", secret}}}}});
  }
  std::string s = o.dump();
  if (type == "truncated") s.resize(s.find(secret) + secret.size());  // a reducer bug
  return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
}

}  // namespace

class SecretLogs : public EngineTest {
 protected:
  LogCapture log;
  Sink ok, bad, flaky, slow;
  // In payloads, results, event payloads and saga state (encrypted at rest
  // when a key is set), and in metadata (stored in clear by design).
  std::string secret = "S3CRET-" + std::to_string(std::random_device{}());
  std::string meta_secret = "M3TA-" + std::to_string(std::random_device{}());

  // A workload touching every logging path: completions with results,
  // retries, dead letters, timeouts, an opened circuit, sagas with commands,
  // schedules and a parked event, re-queue and purge.
  void workload() {
    ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_DEBUG, LogCapture::fn, &log));
    std::string result = json{{"result", secret}}.dump();
    ok.handler = [result](wf_job *j) { EXPECT_EQ(WF_OK, wf_job_complete(j, result.c_str())); };
    bad.handler = [](wf_job *j) { EXPECT_EQ(WF_OK, wf_job_fail(j, "permanent failure")); };
    flaky.handler = [](wf_job *j) {
      if (wf_job_attempt(j) < 2)
        EXPECT_EQ(WF_OK, wf_job_retry(j, "transient failure", 0));
      else
        EXPECT_EQ(WF_OK, wf_job_fail(j, "gave up"));
    };
    slow.handler = [this, result](wf_job *j) {
      if (wf_job_attempt(j) == 1)
        slow.hold(j);  // times out
      else
        EXPECT_EQ(WF_OK, wf_job_complete(j, result.c_str()));
    };
    ASSERT_EQ(WF_OK, wf_effect_register(e, "ok", nullptr, Sink::cb, &ok));
    ASSERT_EQ(WF_OK, wf_effect_register(e, "bad",
                                        "{\"circuit\":{\"window\":2,\"min_attempts\":2,"
                                        "\"failure_ratio\":0.5,\"cooldown_ms\":1000}}",
                                        Sink::cb, &bad));
    ASSERT_EQ(WF_OK, wf_effect_register(e, "flaky", "{\"max_attempts\":5}", Sink::cb, &flaky));
    ASSERT_EQ(WF_OK, wf_effect_register(e, "slow", "{\"timeout_ms\":1000}", Sink::cb, &slow));
    ASSERT_EQ(WF_OK, wf_saga_register(
                         e, "vault", "{\"start\":[\"start\",\"reject\",\"garbage\",\"truncated\"]}",
                         secret_reducer, &secret));
    ASSERT_EQ(WF_OK, wf_start(e));
    json pl{{"secret", secret}, {"nested", {{"card", secret}}}};
    json meta{{"note", meta_secret}};
    int k = 0;
    for (const char *eff : {"ok", "bad", "bad", "flaky", "slow", "ok"})
      enqueue({{"effect", eff},
               {"payload", pl},
               {"metadata", meta},
               {"key", "k" + std::to_string(k++)}});
    for (const char *type : {"start", "reject", "garbage", "truncated"})
      ASSERT_EQ(WF_OK, wf_submit(e, json{{"event_id", std::string("e-") + type},
                                         {"type", type},
                                         {"correlation_id", std::string("c-") + type},
                                         {"payload", pl}}
                                        .dump()
                                        .c_str()))
          << wf_last_error();
    ASSERT_EQ(WF_OK, wf_schedule(e, json{{"key", "job-sched"},
                                         {"delay_ms", 500},
                                         {"job", {{"effect", "ok"}, {"payload", pl}}}}
                                        .dump()
                                        .c_str()));
    ASSERT_TRUE(slow.wait([&] { return slow.held.size() == 1; }));
    ASSERT_TRUE(ok.wait_count(3));   // two jobs and the saga's command
    ASSERT_TRUE(bad.wait_count(2));  // opens the circuit
    ASSERT_TRUE(flaky.wait_count(2));
    advance(2000);  // schedules fire; the circuit half-opens
    ASSERT_TRUE(ok.wait_count(4));
    ASSERT_TRUE(bad.wait_count(3));  // the saga's command, as the probe
    // Attempt timeouts run on the monotonic clock: 1000 ms of real time.
    ASSERT_TRUE(eventually([&] { return stats()["engine"]["timeouts"] == 1; }));
    EXPECT_EQ(WF_ESTATE, wf_job_complete(slow.held[0], result.c_str()));
    ASSERT_TRUE(eventually([&] { return stats()["events"]["pending"] == 0; }));
    sync();
    int64_t n = 0;
    ASSERT_EQ(WF_OK, wf_dead_requeue(e, "{\"effect\":\"flaky\"}", &n));
    EXPECT_EQ(1, n);
    ASSERT_TRUE(flaky.wait_count(3));
    sync();
    ASSERT_EQ(WF_OK, wf_dead_purge(e, "{\"effect\":\"bad\"}", &n));  // parked events stay
    EXPECT_GE(n, 2);
    char *out = nullptr;
    ASSERT_EQ(WF_OK, wf_metrics(e, &out));
    EXPECT_EQ(std::string::npos, std::string(out).find(secret)) << "secret in wf_metrics";
    wf_free(out);
    ASSERT_EQ(WF_OK, wf_stats(e, nullptr, &out));
    EXPECT_EQ(std::string::npos, std::string(out).find(secret)) << "secret in wf_stats";
    wf_free(out);
    ASSERT_EQ(WF_OK, wf_close(e));
    e = nullptr;
  }

  // Log messages the workload must have produced (so the test exercised the
  // paths that log errors next to jobs and events).
  void expect_logged(const std::vector<std::string> &lines) {
    std::set<std::string> msgs;
    for (auto &l : lines) {
      json j = json::parse(l, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << "log line is not JSON: " << l;
      msgs.insert(j.value("msg", ""));
    }
    for (const char *m :
         {"job attempt failed; will retry", "job dead-lettered", "circuit opened",
          "saga event parked", "dead letters re-queued", "dead letters purged", "engine closed"})
      EXPECT_TRUE(msgs.count(m)) << "the workload did not log \"" << m << "\"";
  }
};

TEST_F(SecretLogs, PayloadsMetadataResultsAndStateNeverReachTheLogs) {
  open();
  workload();
  if (HasFatalFailure()) return;
  auto lines = log.snapshot();
  expect_logged(lines);
  for (auto &l : lines) {
    EXPECT_EQ(std::string::npos, l.find(secret)) << "secret logged: " << l;
    EXPECT_EQ(std::string::npos, l.find(meta_secret)) << "metadata logged: " << l;
  }
}

TEST_F(SecretLogs, EncryptionKeyNeverReachesLogsOrErrors) {
  std::string upper = kSecretKey;
  for (char &c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto opts = [](const std::string &key) {
    return json{{"durability", "normal"}, {"encryption_key", key}}.dump();
  };
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts(kSecretKey).c_str(), &e)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_set_clock(e, ManualClock::fn, &clock));
  workload();
  if (HasFatalFailure()) return;
  auto lines = log.snapshot();
  expect_logged(lines);
  for (auto &l : lines) {
    EXPECT_EQ(std::string::npos, l.find(kSecretKey)) << "key logged: " << l;
    EXPECT_EQ(std::string::npos, l.find(upper)) << "key logged: " << l;
    EXPECT_EQ(std::string::npos, l.find(secret)) << "secret logged: " << l;
    EXPECT_EQ(std::string::npos, l.find(meta_secret)) << "metadata logged: " << l;
  }
  // Nothing that is encrypted at rest was copied in clear into another column
  // (dead-letter reasons, attempt errors, ...).
  for (const char *suffix : {"", "-wal"}) {
    std::string bytes;
    if (FILE *f = std::fopen((path + suffix).c_str(), "rb")) {
      char buf[65536];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
      std::fclose(f);
    }
    EXPECT_EQ(std::string::npos, bytes.find(secret)) << "secret in clear in t.db" << suffix;
  }
  // Refusals name the option, never its value.
  std::string wrong(kSecretKey);
  std::swap(wrong[0], wrong[1]);
  for (const std::string &k :
       {wrong, wrong.substr(0, 63), wrong.substr(0, 62) + "zz", std::string("not-a-key")}) {
    wf_engine *x = nullptr;
    EXPECT_NE(WF_OK, wf_open(path.c_str(), opts(k).c_str(), &x)) << k;
    EXPECT_EQ(nullptr, x);
    std::string err = wf_last_error();
    EXPECT_EQ(std::string::npos, err.find(k)) << "key echoed in wf_last_error: " << err;
    EXPECT_EQ(std::string::npos, err.find(kSecretKey)) << err;
    if (x) wf_close(x);
  }
}
