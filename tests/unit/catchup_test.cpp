// Cron catch-up in bounded chunks (docs/scheduler.md, "Catch-up after
// downtime"): "latest" and "none" find the latest missed due time by a
// bounded search, "all" fires the most recent catch_up_max due times oldest
// first, a bounded number per schedule and per transaction, each chunk
// committing the schedule's progress with its firings, so that a kill in the
// middle resumes without duplicates or gaps. Work is counted (next-time
// computations, commits), never timed.
#include <sqlite3.h>

#include <map>
#include <random>
#include <set>

#include "cron.h"
#include "engine.h"
#include "helpers.h"
#include "util.h"

using namespace wft;

namespace {

constexpr int64_t kSec = 1000;
constexpr int64_t kDay = 86400 * kSec;
const int64_t kT0 = wf::parse_rfc3339("2026-03-01T00:00:00Z");

// Every due time from next_due to now (the old walk), oldest first.
std::vector<int64_t> brute_force(const wf::Cron &c, int64_t next_due, int64_t now) {
  std::vector<int64_t> v;
  for (int64_t x = next_due; x <= now && v.size() <= 200000; x = c.next_after(x)) v.push_back(x);
  return v;
}

// Drives plan_firing chunk by chunk as the writer does (the window of a skip
// search makes the later chunks "positioned"); returns every firing.
struct ChunkRun {
  std::vector<int64_t> fires;
  size_t max_chunk = 0, chunks = 0;
  int64_t steps = 0, next = 0;
};
ChunkRun run_chunks(const wf::Cron &c, const std::string &policy, int64_t max, int64_t next_due,
                    int64_t now, int64_t limit) {
  ChunkRun r;
  int64_t start = INT64_MAX, latest = INT64_MIN;
  int64_t due = next_due;
  while (due <= now) {
    bool positioned = start <= due && due <= latest;
    wf::FirePlan p = wf::plan_firing(&c, policy, max, due, now, limit, positioned);
    if (p.latest != INT64_MIN) {
      start = p.start;
      latest = p.latest;
    }
    r.fires.insert(r.fires.end(), p.fires.begin(), p.fires.end());
    r.max_chunk = std::max(r.max_chunk, p.fires.size());
    r.steps += p.steps;
    ++r.chunks;
    EXPECT_GT(p.next, due) << "no progress";
    if (p.next <= due) break;
    due = p.next;
  }
  r.next = due;
  return r;
}

}  // namespace

// "latest" after 30 days of a per-second cron: the latest due time itself (the
// old walk stopped after 1,000,000 due times and fired a stale one), found in
// a few dozen next-time computations instead of 2.6 million.
TEST(CatchUpPlan, LatestAfterThirtyDaysIsTheLatestDueTimeFoundWithoutWalking) {
  wf::Cron c = wf::Cron::parse("* * * * * *", "Europe/Berlin");
  int64_t now = kT0 + 30 * kDay + 400;  // 400 ms after a whole second
  wf::FirePlan p = wf::plan_firing(&c, "latest", 100, kT0, now);
  ASSERT_EQ(1u, p.fires.size());
  EXPECT_EQ(kT0 + 30 * kDay, p.fires[0]);
  EXPECT_EQ(kT0 + 30 * kDay + kSec, p.next);
  EXPECT_LT(p.steps, 100);
  // "none": the latest is 400 ms late, within the 60 s grace: it fires.
  p = wf::plan_firing(&c, "none", 100, kT0, now);
  ASSERT_EQ(1u, p.fires.size());
  EXPECT_EQ(kT0 + 30 * kDay, p.fires[0]);
  EXPECT_LT(p.steps, 100);
  // An hourly cron noticed 30 min late: "none" skips it, "latest" fires it.
  wf::Cron h = wf::Cron::parse("0 * * * *", "America/New_York");
  now = kT0 + 30 * kDay + 30 * 60 * kSec;
  p = wf::plan_firing(&h, "none", 100, kT0, now);
  EXPECT_TRUE(p.fires.empty());
  EXPECT_EQ(kT0 + 30 * kDay + 3600 * kSec, p.next);
  p = wf::plan_firing(&h, "latest", 100, kT0, now);
  ASSERT_EQ(1u, p.fires.size());
  EXPECT_EQ(kT0 + 30 * kDay, p.fires[0]);
  EXPECT_LT(p.steps, 100);
}

// "all" in chunks gives exactly the most recent catch_up_max due times,
// oldest first, each chunk within the limit, and the skip search costs a
// small multiple of catch_up_max, not the 2.6 million missed due times.
TEST(CatchUpPlan, AllInChunksFiresTheMostRecentMaxOnceInOrder) {
  wf::Cron c = wf::Cron::parse("* * * * * *", "UTC");
  int64_t now = kT0 + 30 * kDay + 999;
  ChunkRun r = run_chunks(c, "all", 5000, kT0, now, 128);
  ASSERT_EQ(5000u, r.fires.size());
  for (size_t i = 0; i < r.fires.size(); ++i)
    ASSERT_EQ(kT0 + 30 * kDay - int64_t(4999 - i) * kSec, r.fires[i]) << i;
  EXPECT_LE(r.max_chunk, 128u);
  EXPECT_EQ((5000u + 127) / 128, r.chunks);
  EXPECT_LT(r.steps, 4 * 5000 + 200);
  EXPECT_EQ(kT0 + 30 * kDay + kSec, r.next);
  // Without a chunk limit: the same due times in one plan (the old contract).
  wf::FirePlan p = wf::plan_firing(&c, "all", 5000, kT0, now);
  EXPECT_EQ(r.fires, p.fires);
  // Fewer missed than catch_up_max: all of them, from next_due.
  r = run_chunks(c, "all", 100000, kT0, kT0 + 9999, 128);
  ASSERT_EQ(10u, r.fires.size());
  EXPECT_EQ(kT0, r.fires.front());
}

// Cross-check against the old walk for crons of every density, in zones with
// daylight saving (the downtime spans transitions), and random downtimes.
TEST(CatchUpPlan, AllAgreesWithTheWalkForIrregularCronsAndZones) {
  struct Case {
    const char *expr, *tz;
    int64_t days;  // longest downtime tried
  };
  const std::vector<Case> cases = {
      {"*/7 * * * * *", "America/New_York", 2},
      {"30 1-3 * * *", "America/New_York", 800},
      {"0 0 13 * FRI", "UTC", 3000},
      {"15 */2 * * MON-FRI", "Europe/Berlin", 400},
      {"0 0 29 2 *", "UTC", 3000},
      {"*/20 * 2-3 * * *", "Australia/Lord_Howe", 60},
      {"0 0 1 1,7 *", "Asia/Kolkata", 3000},
      {"59 59 23 31 12 *", "UTC", 3000},
  };
  std::mt19937_64 rng(12345);
  for (const Case &k : cases) {
    wf::Cron c = wf::Cron::parse(k.expr, k.tz);
    for (int round = 0; round < 4; ++round) {
      int64_t first = c.next_after(kT0 - int64_t(rng() % (400 * kDay)));
      int64_t now = first + int64_t(rng() % uint64_t(k.days * kDay / (round + 1)));
      std::vector<int64_t> all = brute_force(c, first, now);
      ASSERT_LE(all.size(), 200000u) << k.expr;
      for (int64_t max : {int64_t(1), int64_t(3), int64_t(100), int64_t(1000)}) {
        std::vector<int64_t> want(all.end() - std::min<int64_t>(max, int64_t(all.size())),
                                  all.end());
        ChunkRun r = run_chunks(c, "all", max, first, now, 64);
        EXPECT_EQ(want, r.fires) << k.expr << " " << k.tz << " max " << max << " from " << first
                                 << " to " << now;
        EXPECT_LE(r.max_chunk, 64u);
        wf::FirePlan lp = wf::plan_firing(&c, "latest", max, first, now);
        ASSERT_EQ(1u, lp.fires.size());
        EXPECT_EQ(all.back(), lp.fires[0]) << k.expr << " " << k.tz;
        EXPECT_EQ(c.next_after(all.back()), lp.next);
      }
    }
  }
}

// Engine: 5 per-second crons with catch_up "all" and catch_up_max 3000 after
// a day down fire 15,000 jobs in chunks: at most 512 firings per commit and
// 128 per schedule per commit, so the catch-up takes at least that many
// commits (the old pass fired them all in one); every due time of the most
// recent 3,000 fires exactly once, and `fired` counts them.
class CatchUpEngine : public EngineTest {
 protected:
  // Due times of the jobs of schedule `key`, from the keys.
  std::map<std::string, std::vector<int64_t>> job_dues() {
    std::map<std::string, std::vector<int64_t>> out;
    sqlite3 *db = nullptr;
    EXPECT_EQ(SQLITE_OK, sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr));
    sqlite3_stmt *st = nullptr;
    EXPECT_EQ(SQLITE_OK,
              sqlite3_prepare_v2(db, "SELECT key FROM wf_jobs ORDER BY id", -1, &st, nullptr));
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string k = reinterpret_cast<const char *>(sqlite3_column_text(st, 0));
      size_t at = k.rfind('@');
      out[k.substr(0, at)].push_back(std::stoll(k.substr(at + 1)));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }
  std::map<std::string, int64_t> fired() {
    std::map<std::string, int64_t> out;
    sqlite3 *db = nullptr;
    EXPECT_EQ(SQLITE_OK, sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr));
    sqlite3_stmt *st = nullptr;
    EXPECT_EQ(SQLITE_OK,
              sqlite3_prepare_v2(db, "SELECT key, fired FROM wf_schedules", -1, &st, nullptr));
    while (sqlite3_step(st) == SQLITE_ROW)
      out[reinterpret_cast<const char *>(sqlite3_column_text(st, 0))] = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }
  // Waits until no schedule is due (the catch-up is over).
  void wait_caught_up() {
    for (int i = 0; i < 20000; ++i) {
      sync();
      if (stats()["schedules"]["due"] == 0) return;
      std::this_thread::yield();
    }
    FAIL() << "catch-up did not finish: " << stats().dump();
  }
  void add_cron(const std::string &key, const char *policy, int64_t max, const char *cron) {
    json d{{"key", key},         {"cron", cron},        {"tz", "Europe/Berlin"},
           {"catch_up", policy}, {"catch_up_max", max}, {"job", {{"effect", "x"}}}};
    ASSERT_EQ(WF_OK, wf_schedule(e, d.dump().c_str())) << wf_last_error();
  }
};

TEST_F(CatchUpEngine, AllFiresInBoundedChunksExactlyOnce) {
  const int64_t kMax = kSanitizer ? 600 : 3000;
  open();
  clock.now = kT0;
  for (int i = 0; i < 5; ++i) add_cron("c" + std::to_string(i), "all", kMax, "* * * * * *");
  clock.now = kT0 + kDay;  // a day down: 86,400 missed due times each
  int64_t commits0 = stats()["engine"]["commits"];
  ASSERT_EQ(WF_OK, wf_start(e));
  wait_caught_up();
  int64_t commits = stats()["engine"]["commits"].get<int64_t>() - commits0;
  EXPECT_GE(commits, (5 * kMax + 511) / 512);
  EXPECT_GE(commits, (kMax + 127) / 128);
  auto dues = job_dues();
  auto f = fired();
  ASSERT_EQ(5u, dues.size());
  for (auto &[k, v] : dues) {
    ASSERT_EQ(size_t(kMax), v.size()) << k;
    for (int64_t i = 0; i < kMax; ++i) ASSERT_EQ(kT0 + kDay - (kMax - 1 - i) * kSec, v[i]) << k;
    EXPECT_EQ(kMax, f[k.substr(std::string("schedule:").size())]) << k;
  }
  EXPECT_EQ(5, stats()["schedules"]["pending"]);
  EXPECT_EQ(kT0 + kDay + kSec, stats()["schedules"]["next_due_ms"]);
}

// 30 days down with an injected clock: "latest" fires the latest due time
// once, "none" fires a per-second cron's latest (on time) but not an hourly
// one noticed 30 min late; all move on to their next due time.
TEST_F(CatchUpEngine, LatestAndNoneAfterThirtyDays) {
  open();
  clock.now = kT0;
  add_cron("sec-latest", "latest", 100, "* * * * * *");
  add_cron("sec-none", "none", 100, "* * * * * *");
  add_cron("hour-latest", "latest", 100, "0 * * * *");
  add_cron("hour-none", "none", 100, "0 * * * *");
  clock.now = kT0 + 30 * kDay + 30 * 60 * kSec;
  ASSERT_EQ(WF_OK, wf_start(e));
  wait_caught_up();
  auto dues = job_dues();
  EXPECT_EQ((std::vector<int64_t>{clock.now.load()}), dues["schedule:sec-latest"]);
  EXPECT_EQ((std::vector<int64_t>{clock.now.load()}), dues["schedule:sec-none"]);
  EXPECT_EQ((std::vector<int64_t>{kT0 + 30 * kDay}), dues["schedule:hour-latest"]);
  EXPECT_EQ(0u, dues.count("schedule:hour-none"));
  EXPECT_EQ(4, stats()["schedules"]["pending"]);
  EXPECT_EQ(clock.now + kSec, stats()["schedules"]["next_due_ms"]);
}

// A child catching up ("all", 100,000 per-second due times) is SIGKILLed in
// the middle; the reopened engine finishes: every due time of the window
// fired exactly once (no gap, no duplicate) and `fired` equals the jobs.
TEST_F(CatchUpEngine, KillMidCatchUpResumesWithoutDuplicatesOrGaps) {
  if (kSanitizer) GTEST_SKIP() << "a forked child cannot run an engine under the sanitizers";
  const int64_t kMax = 100000;
  open();
  clock.now = kT0;
  add_cron("k", "all", kMax, "* * * * * *");
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  const int64_t down_until = kT0 + 2 * kDay;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(120);
    static ManualClock child_clock;
    child_clock.now = down_until;
    wf_engine *c = nullptr;
    if (wf_open(path.c_str(), "{\"durability\":\"normal\"}", &c) != WF_OK) _exit(2);
    if (wf_set_clock(c, ManualClock::fn, &child_clock) != WF_OK) _exit(3);
    if (wf_start(c) != WF_OK) _exit(4);
    pause();
    _exit(0);
  }
  // Kill once some chunks are committed, well before the end.
  sqlite3 *db = nullptr;
  int64_t seen = 0;
  for (int i = 0; i < 600000 && seen < 2000; ++i) {
    if (!db && sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      db = nullptr;
    }
    if (db) {
      sqlite3_stmt *st = nullptr;
      if (sqlite3_prepare_v2(db, "SELECT count(*) FROM wf_jobs", -1, &st, nullptr) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW)
        seen = sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
    }
    usleep(200);
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  sqlite3_close(db);
  ASSERT_GE(seen, 2000);
  size_t at_kill = job_dues()["schedule:k"].size();
  ASSERT_LT(at_kill, size_t(kMax)) << "the kill came after the catch-up";
  EXPECT_EQ(int64_t(at_kill), fired()["k"]);  // progress committed with the firings
  clock.now = down_until;
  open();
  ASSERT_EQ(WF_OK, wf_start(e));
  wait_caught_up();
  auto v = job_dues()["schedule:k"];
  ASSERT_EQ(size_t(kMax), v.size());
  std::set<int64_t> uniq(v.begin(), v.end());
  EXPECT_EQ(v.size(), uniq.size());
  EXPECT_EQ(down_until - (kMax - 1) * kSec, *uniq.begin());
  EXPECT_EQ(down_until, *uniq.rbegin());
  EXPECT_EQ(kMax, fired()["k"]);
}

// ------------------------------------------------------------------ sagas

// The saga pass reads instance by instance through wf_saga_inbox_inst: each
// query is an index seek or a range of one instance, never a scan of the
// whole inbox (the old pass grouped every queued event on every pass).
TEST_F(CatchUpEngine, SagaPassQueriesSeekTheInboxIndex) {
  open();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr));
  for (const char *sql : {wf::kSagaFirstInstance, wf::kSagaNextInstance, wf::kSagaInstanceEvents,
                          wf::kSagaInstanceState}) {
    sqlite3_stmt *st = nullptr;
    std::string eqp = std::string("EXPLAIN QUERY PLAN ") + sql;
    ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, eqp.c_str(), -1, &st, nullptr))
        << sqlite3_errmsg(db);
    std::string plan;
    while (sqlite3_step(st) == SQLITE_ROW)
      plan += std::string(reinterpret_cast<const char *>(sqlite3_column_text(st, 3))) + "\n";
    sqlite3_finalize(st);
    EXPECT_EQ(std::string::npos, plan.find("TEMP B-TREE")) << sql << "\n" << plan;
    if (std::string(sql) != wf::kSagaFirstInstance) {
      EXPECT_EQ(std::string::npos, plan.find("SCAN")) << sql << "\n" << plan;
    }
    // A seek (SEARCH) or, for the first instance, a walk of the index that
    // stops at its first row (LIMIT 1 in index order, no sort).
    EXPECT_TRUE(plan.find("SEARCH") != std::string::npos ||
                plan.find("INDEX wf_saga_inbox_inst") != std::string::npos)
        << sql << "\n"
        << plan;
  }
  sqlite3_close(db);
}

namespace {
// Counts events per instance in its state {"n":k,"seen":[...]} and checks
// they arrive in submission order.
int order_reducer(void *, const char *in, size_t len, wf_buf *out) {
  json input = json::parse(std::string(in, len));
  json state = input["state"].is_null() ? json{{"n", 0}} : input["state"];
  int i = input["event"]["payload"]["i"];
  if (i != state["n"].get<int>()) return 9;  // out of order: parks the event
  state["n"] = i + 1;
  json o{{"state", state}, {"done", false}};
  std::string s = o.dump();
  return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
}
}  // namespace

// Many instances with many queued events each (more instances than one pass
// takes): every event is applied once, in order per instance, the version
// counts the events and the saga log has one row per event, n = 1..k; an
// instance parked at its head does not stop the others.
TEST_F(CatchUpEngine, SagaPassFoldsEveryInstanceInOrder) {
  const int kInstances = kSanitizer ? 150 : 700, kEvents = 12;
  open();
  ASSERT_EQ(WF_OK,
            wf_saga_register(e, "o", "{\"start\":[\"s\"],\"on\":[\"s\"]}", order_reducer, nullptr));
  wf_tx *tx = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
  for (int k = 0; k < kEvents; ++k)
    for (int i = 0; i < kInstances; ++i) {
      // Instance "bad" gets its events out of order: its head parks.
      int n = i == 0 ? kEvents - 1 - k : k;
      json ev{{"type", "s"},
              {"correlation_id", "c" + std::to_string(i)},
              {"event_id", std::to_string(i) + ":" + std::to_string(k)},
              {"payload", {{"i", n}}}};
      ASSERT_EQ(WF_OK, wf_tx_submit(tx, ev.dump().c_str())) << wf_last_error();
    }
  ASSERT_EQ(WF_OK, wf_tx_commit(tx));
  ASSERT_EQ(WF_OK, wf_start(e));
  for (int spin = 0; spin < 20000; ++spin) {
    sync();
    json s = stats();
    if (s["events"]["pending"] == kEvents - 1 && s["sagas"]["parked"] == 1) break;
    std::this_thread::yield();
  }
  for (int i = 1; i < kInstances; ++i) {
    char *out = nullptr;
    ASSERT_EQ(WF_OK, wf_saga_get(e, nullptr, "o", ("c" + std::to_string(i)).c_str(), &out));
    json g = json::parse(out);
    wf_free(out);
    ASSERT_EQ(kEvents, g["state"]["n"]) << i;
    ASSERT_EQ(kEvents, g["version"]) << i;
    ASSERT_EQ(0, g["pending"]) << i;
  }
  char *out = nullptr;
  EXPECT_EQ(WF_ENOTFOUND, wf_saga_get(e, nullptr, "o", "c0", &out));  // parked at its head
  wf_free(out);
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr));
  sqlite3_stmt *st = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db,
                                          "SELECT count(*), count(DISTINCT correlation_id), "
                                          "min(n), max(n), sum(n) FROM wf_saga_log",
                                          -1, &st, nullptr));
  ASSERT_EQ(SQLITE_ROW, sqlite3_step(st));
  EXPECT_EQ((kInstances - 1) * kEvents, sqlite3_column_int(st, 0));
  EXPECT_EQ(kInstances - 1, sqlite3_column_int(st, 1));
  EXPECT_EQ(1, sqlite3_column_int(st, 2));
  EXPECT_EQ(kEvents, sqlite3_column_int(st, 3));
  EXPECT_EQ(int64_t(kInstances - 1) * kEvents * (kEvents + 1) / 2, sqlite3_column_int64(st, 4));
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// ------------------------------------------------------------------ timers

// One firing pass materializes every job due within the next few ms (as a
// job whose run_at is its due time, so none runs early) instead of one commit
// per due time; an event is never submitted before its due time.
TEST_F(CatchUpEngine, JobFiringsDueWithinMillisecondsShareOnePass) {
  open();
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  const int64_t t = clock.now;
  for (int i = 1; i <= 4; ++i) {
    json d{{"key", "j" + std::to_string(i)}, {"at", t + i}, {"job", {{"effect", "x"}}}};
    ASSERT_EQ(WF_OK, wf_schedule(e, d.dump().c_str())) << wf_last_error();
  }
  json ev{{"key", "ev"}, {"at", t + 2}, {"event", {{"type", "tick"}, {"correlation_id", "c"}}}};
  ASSERT_EQ(WF_OK, wf_schedule(e, ev.dump().c_str())) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  sync();
  EXPECT_EQ(5, stats()["schedules"]["pending"]);
  advance(1);
  ASSERT_TRUE(s.wait_count(1));
  sync();
  sync();
  json st = stats();
  EXPECT_EQ(1, st["schedules"]["pending"]) << st.dump();  // the event waits for its time
  EXPECT_EQ(t + 2, st["schedules"]["next_due_ms"]);
  EXPECT_EQ(3, st["outbox"]["scheduled"]) << st.dump();
  EXPECT_EQ(1u, s.count());  // none ran before its due time
  advance(3);
  ASSERT_TRUE(s.wait_count(4));
  sync();
  EXPECT_EQ(0, stats()["schedules"]["pending"]);
  std::set<std::string> keys;
  for (auto &r : s.seen) keys.insert(r["key"]);
  for (int i = 1; i <= 4; ++i)
    EXPECT_EQ(1u, keys.count("schedule:j" + std::to_string(i) + "@" + std::to_string(t + i)));
}
