// Costs independent of the backlog (issue 9): maintained job counts stay
// exact under every path that changes wf_jobs, and the stats, next-due and
// claim queries do the same work with a small or a large backlog (counted in
// SQLite VM steps, never timed).
#include <algorithm>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "engine.h"
#include "helpers.h"
#include "lease.h"
#include "store.h"

using namespace wft;

namespace {

// (effect, tenant) -> (pending, running)
using Counts = std::map<std::pair<std::string, std::string>, std::pair<int64_t, int64_t>>;

Counts real_counts(const std::string &path) {
  wf::Db db(path, true, 5000);
  Counts out;
  auto st = db.prepare(
      "SELECT effect, tenant, sum(state <> 1), sum(state = 1) FROM wf_jobs GROUP BY effect, "
      "tenant");
  while (st->step()) out[{st->col_text(0), st->col_text(1)}] = {st->col_int(2), st->col_int(3)};
  return out;
}

// What the engine's readers see: wf_job_counts, which holds the rows up to
// the counts watermark, plus the rows above it (lease::count_tail).
Counts kept_counts(const std::string &path) {
  wf::Db db(path, true, 5000);
  Counts out;
  db.exec("BEGIN");
  auto st = db.prepare("SELECT effect, tenant, pending, running FROM wf_job_counts");
  while (st->step()) out[{st->col_text(0), st->col_text(1)}] = {st->col_int(2), st->col_int(3)};
  wf::lease::count_tail(db,
                        [&](const std::string &eff, const std::string &ten, int state, int64_t) {
                          auto &c = out[{eff, ten}];
                          (state == 1 ? c.second : c.first) += 1;
                        });
  db.exec("COMMIT");
  return out;
}

// The rows above the counts watermark (counted by no row of wf_job_counts).
int64_t tail_rows(const std::string &path) {
  return count_rows(path,
                    "SELECT count(*) FROM wf_jobs WHERE id > (SELECT CAST(v AS INTEGER) FROM "
                    "wf_meta WHERE k = 'counts_through')");
}

// tenant -> (pending, running), from the jobs and from the counts summed
// over effects (what wf_stats' by_tenant reads).
std::map<std::string, std::pair<int64_t, int64_t>> tenant_counts(const std::string &path,
                                                                 bool real) {
  std::map<std::string, std::pair<int64_t, int64_t>> out;
  if (!real) {
    for (const auto &[k, v] : kept_counts(path)) {
      out[k.second].first += v.first;
      out[k.second].second += v.second;
    }
    return out;
  }
  wf::Db db(path, true, 5000);
  auto st =
      db.prepare("SELECT tenant, sum(state <> 1), sum(state = 1) FROM wf_jobs GROUP BY tenant");
  while (st->step()) out[st->col_text(0)] = {st->col_int(1), st->col_int(2)};
  return out;
}

std::string dump(const Counts &c) {
  std::string s;
  for (auto &[k, v] : c)
    s += k.first + "/" + k.second + "=" + std::to_string(v.first) + "," + std::to_string(v.second) +
         " ";
  return s;
}

// Fills `path` (an engine file, closed) with `n` ready jobs of `effect`
// spread over `tenants` tenants, directly in SQL (fast), and rebuilds the
// maintained counts as the migration does. As the engine's inserts do, the
// jobs of an effect marked in wf_capped_effects get capped = 1.
void fill(const std::string &path, const std::string &effect, int64_t n, int tenants,
          int64_t run_at, const std::string &prefix = "t") {
  wf::Db db(path, false, 5000);
  db.exec("BEGIN");
  auto st = db.prepare(
      "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?1) "
      "INSERT INTO wf_jobs(tenant, effect, payload, metadata, run_at, created_at, capped) "
      "SELECT ?5 || (i % ?2), ?3, '{}', '{}', ?4 + i % 1000, ?4, "
      "(SELECT 1 FROM wf_capped_effects WHERE effect = ?3) FROM c");
  st->bind(1, n).bind(2, tenants).bind(3, effect).bind(4, run_at).bind(5, prefix).exec();
  db.exec("DELETE FROM wf_job_counts");
  db.exec(
      "INSERT INTO wf_job_counts(effect, tenant, pending, running) SELECT effect, tenant, "
      "sum(state = 0), sum(state = 1) FROM wf_jobs GROUP BY effect, tenant");
  // Every row is counted: the watermark moves past them (lease.h).
  db.exec(
      "UPDATE wf_meta SET v = (SELECT max(id) FROM wf_jobs) WHERE k = 'counts_through' AND "
      "CAST(v AS INTEGER) < (SELECT max(id) FROM wf_jobs)");
  db.exec("COMMIT");
}

int64_t steps() { return wf::thread_stmt_work().vm_steps; }

// Jobs whose `capped` does not say whether their effect is marked in
// wf_capped_effects (schema 12: only a marked effect's jobs are in
// wf_jobs_tenant, and every one of them is).
int64_t miscapped(const std::string &path) {
  return count_rows(path,
                    "SELECT count(*) FROM wf_jobs WHERE (capped IS 1) != "
                    "(effect IN (SELECT effect FROM wf_capped_effects))");
}

// Ready jobs in wf_jobs_tenant.
int64_t tenant_index_rows(const std::string &path) {
  return count_rows(path,
                    "SELECT count(*) FROM wf_jobs INDEXED BY wf_jobs_tenant WHERE state = 0 AND "
                    "capped = 1 AND effect > ''");
}

}  // namespace

class ScaleTest : public EngineTest {};

// Every path that inserts, deletes or changes the state of job rows keeps
// wf_job_counts equal to a real count of wf_jobs: enqueue (single, batch,
// host transaction committed and rolled back), claim, complete, retry, fail to
// a dead letter, requeue, purge, cancel, unclaim at drain, release at close,
// and recovery at open of a killed child's lease.
TEST_F(ScaleTest, CountsStayExactUnderMixedWorkload) {
  // A child engine dies holding a lease on a job of effect "x" of tenant "k".
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\"}", &e)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  kill_child_mid_attempt(path, nullptr, R"({"effect":"x","tenant":"k","payload":1})");
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(1, (real_counts(path)[{"x", "k"}].second));

  // Recovery at open makes the killed child's job due at the real clock's
  // instant (the manual clock is set after wf_open): run the manual clock
  // ahead of it.
  clock.now = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count() +
              60000;
  open("{\"durability\":\"normal\",\"drain_timeout_ms\":100}");
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(0, (kept_counts(path)[{"x", "k"}].second));

  Sink sink;
  std::atomic<int> n{0};
  // By payload: 0 complete, 1 retry (then complete), 2 fail (dead letter).
  sink.handler = [&](wf_job *j) {
    size_t len = 0;
    const char *txt = wf_job_payload(j, &len);
    json p = json::parse(std::string(txt, len));
    int kind = p.is_number_integer() ? p.get<int>() % 3 : 0;
    n++;
    if (kind == 1 && wf_job_attempt(j) == 1)
      EXPECT_EQ(WF_OK, wf_job_retry(j, "again", 0));
    else if (kind == 2)
      EXPECT_EQ(WF_OK, wf_job_fail(j, "no"));
    else
      EXPECT_EQ(WF_OK, wf_job_complete(j, nullptr));
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "y", "{\"tenant_concurrency\":2}", Sink::cb, &sink));

  json batch = json::array();
  for (int i = 0; i < 60; ++i)
    batch.push_back({{"effect", i % 2 ? "x" : "y"},
                     {"tenant", "t" + std::to_string(i % 5)},
                     {"payload", i},
                     {"key", "k" + std::to_string(i)}});
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &ids)) << wf_last_error();
  wf_free(ids);
  // Duplicates by key insert nothing.
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &ids)) << wf_last_error();
  wf_free(ids);
  // Delayed jobs (scheduled), some cancelled.
  std::vector<std::string> delayed;
  for (int i = 0; i < 6; ++i)
    delayed.push_back(
        enqueue({{"effect", "z"}, {"tenant", "d"}, {"payload", i}, {"delay_ms", 1000}}));
  EXPECT_EQ(WF_OK, wf_cancel(e, "d", delayed[0].c_str()));
  EXPECT_EQ(WF_OK, wf_cancel(e, "d", delayed[1].c_str()));
  // Host transactions: one commits, one rolls back.
  for (bool commit : {true, false}) {
    wf_tx *tx = nullptr;
    ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
    for (int i = 0; i < 3; ++i) {
      json j{{"effect", "z"}, {"tenant", commit ? "c" : "r"}, {"payload", i}};
      ASSERT_EQ(WF_OK, wf_tx_enqueue(tx, j.dump().c_str(), nullptr)) << wf_last_error();
    }
    if (commit)
      ASSERT_EQ(WF_OK, wf_tx_commit(tx));
    else
      ASSERT_EQ(WF_OK, wf_tx_rollback(tx));
  }
  ASSERT_EQ(WF_OK, wf_start(e));
  // 60 batch jobs + the recovered one (on its second attempt: it completes);
  // the 20 of kind 1 retry once.
  ASSERT_TRUE(sink.wait([&] { return sink.handled >= 81; })) << sink.handled;
  sync();
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  // Dead letters back to the queue, then run (and fail) again; purge some.
  int64_t requeued = 0;
  ASSERT_EQ(WF_OK, wf_dead_requeue(e, "{\"tenant\":\"t1\"}", &requeued));
  EXPECT_GT(requeued, 0);
  ASSERT_TRUE(sink.wait([&] { return sink.handled >= 81 + static_cast<size_t>(requeued); }));
  sync();
  int64_t purged = 0;
  ASSERT_EQ(WF_OK, wf_dead_purge(e, "{\"tenant\":\"t2\"}", &purged));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(0, miscapped(path));

  // Jobs held by the provider when the engine closes go back to ready.
  sink.handler = [&](wf_job *j) { sink.hold(j); };
  for (int i = 0; i < 4; ++i) enqueue({{"effect", "x"}, {"tenant", "h"}, {"payload", 3}});
  ASSERT_TRUE(sink.wait([&] { return sink.held.size() >= 4; }));
  sync();
  EXPECT_EQ(4, (kept_counts(path)[{"x", "h"}].second));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(tenant_counts(path, true), tenant_counts(path, false));

  json s = stats();
  auto real = real_counts(path);
  int64_t pend = 0, run = 0;
  for (auto &[k, v] : real) {
    pend += v.first;
    run += v.second;
  }
  EXPECT_EQ(pend, s["outbox"]["ready"].get<int64_t>() + s["outbox"]["scheduled"].get<int64_t>());
  EXPECT_EQ(run, s["outbox"]["running"].get<int64_t>());
  EXPECT_EQ(4, s["outbox"]["scheduled"].get<int64_t>());  // the delayed ones not cancelled
  EXPECT_EQ(4, s["outbox"]["by_tenant"]["d"]["scheduled"].get<int64_t>());
  EXPECT_EQ(4, s["outbox"]["by_effect"]["x"]["running"].get<int64_t>());
  EXPECT_FALSE(s["outbox"]["by_tenant"].contains("r"));  // rolled back
  EXPECT_EQ(3, s["outbox"]["by_tenant"]["c"]["ready"].get<int64_t>());

  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  for (wf_job *j : sink.held) wf_job_complete(j, nullptr);  // stale handles: WF_ESTATE
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(tenant_counts(path, true), tenant_counts(path, false));
  EXPECT_EQ(0, (kept_counts(path)[{"x", "h"}].second));
  EXPECT_EQ(4, (kept_counts(path)[{"x", "h"}].first));
}

// wf_jobs_tenant holds the ready jobs of effects with a tenant_concurrency
// only. Jobs enqueued before their effect was first registered so are marked
// at its registration; later ones as they are inserted; a tenant's oldest
// ready job is found either way.
TEST_F(ScaleTest, TenantIndexHoldsOnlyCappedEffects) {
  open();
  for (int i = 0; i < 30; ++i) {
    enqueue({{"effect", "y"}, {"tenant", i < 20 ? "hot" : "cold"}, {"payload", i}});
    enqueue({{"effect", "x"}, {"tenant", i < 20 ? "hot" : "cold"}, {"payload", i}});
    clock.now += 10;
  }
  sync();
  EXPECT_EQ(0, tenant_index_rows(path));  // nothing is capped yet
  json s = stats("{\"tenant\":\"cold\",\"effect\":\"x\"}");
  EXPECT_EQ(100, s["outbox"]["oldest_ready_age_ms"]);  // on wf_jobs_claim
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "y", "{\"tenant_concurrency\":1}", Sink::cb, &sink));
  sync();
  EXPECT_EQ(30, tenant_index_rows(path));
  EXPECT_EQ(0, miscapped(path));
  s = stats("{\"tenant\":\"cold\",\"effect\":\"y\"}");
  EXPECT_EQ(100, s["outbox"]["oldest_ready_age_ms"]);  // on wf_jobs_tenant
  // Later inserts, one by one and in a batch.
  enqueue({{"effect", "y"}, {"tenant", "cold"}});
  enqueue({{"effect", "x"}, {"tenant", "cold"}});
  json batch = json::array();
  for (int i = 0; i < 20; ++i) batch.push_back({{"effect", i % 2 ? "x" : "y"}, {"tenant", "b"}});
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &ids)) << wf_last_error();
  wf_free(ids);
  sync();
  EXPECT_EQ(41, tenant_index_rows(path));
  EXPECT_EQ(0, miscapped(path));
  // The engine drains both (claim_capped reads y's tenants on the index).
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait([&] { return sink.handled >= 82; })) << sink.handled;
  sync();
  EXPECT_EQ(0, tenant_index_rows(path));
  EXPECT_EQ(real_counts(path), kept_counts(path));
}

// Schema 13: a synchronous wf_enqueue writes no count; its row stays above
// the counts watermark, where every reader adds it, until a transaction that
// may change existing jobs counts it. The rows left above it stay few
// whatever the producer does, and a killed process leaves them counted by
// the next open.
TEST_F(ScaleTest, SynchronousEnqueueLeavesItsCountToALaterTransaction) {
  // (No purge pass: its transaction would count the rows the test expects
  // to find uncounted.)
  open("{\"durability\":\"normal\",\"purge_interval_ms\":3600000}");
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i)
    ids.push_back(enqueue({{"effect", "x"}, {"tenant", "t" + std::to_string(i % 3)}}));
  EXPECT_EQ(10, tail_rows(path));
  EXPECT_EQ(0, count_rows(path, "SELECT count(*) FROM wf_job_counts"));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  // Nor are they on wf_jobs_claim yet (state 2): the read API and the stats
  // still show them ready, the oldest one's age included.
  EXPECT_EQ(10, count_rows(path, "SELECT count(*) FROM wf_jobs WHERE state = 2"));
  EXPECT_EQ(0, count_rows(path,
                          "SELECT count(*) FROM wf_jobs INDEXED BY wf_jobs_claim WHERE state = 0 "
                          "AND effect = 'x'"));
  char *list = nullptr;
  ASSERT_EQ(WF_OK, wf_jobs_list(e, R"({"state":"ready"})", &list)) << wf_last_error();
  EXPECT_EQ(10u, json::parse(list)["jobs"].size()) << list;
  wf_free(list);
  char *one = nullptr;
  ASSERT_EQ(WF_OK, wf_job_get(e, "t0", ids[3].c_str(), &one)) << wf_last_error();
  EXPECT_EQ("ready", json::parse(one)["state"]) << one;
  wf_free(one);
  clock.now += 50;
  json s = stats();
  EXPECT_EQ(50, s["outbox"]["oldest_ready_age_ms"]);
  EXPECT_EQ(10, s["outbox"]["ready"]);
  EXPECT_EQ(10, s["outbox"]["by_effect"]["x"]["ready"]);
  EXPECT_EQ(4, s["outbox"]["by_tenant"]["t0"]["ready"]);
  EXPECT_EQ(3, s["outbox"]["by_tenant"]["t2"]["ready"]);
  s = stats("{\"tenant\":\"t1\",\"effect\":\"x\"}");
  EXPECT_EQ(3, s["outbox"]["ready"]);
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_check(e, nullptr, &out)) << wf_last_error();
  EXPECT_TRUE(json::parse(out)["ok"].get<bool>()) << out;
  wf_free(out);
  // A larger job goes into the claim index at once (state 0), and is left
  // uncounted all the same.
  enqueue({{"effect", "x"},
           {"tenant", "t0"},
           {"payload", std::string(wf::lease::kUnindexedBytesMax, 'b')}});
  EXPECT_EQ(11, tail_rows(path));
  EXPECT_EQ(0, count_rows(path, "SELECT count(*) FROM wf_job_counts"));
  EXPECT_EQ(10, count_rows(path, "SELECT count(*) FROM wf_jobs WHERE state = 2"));
  EXPECT_EQ(1, count_rows(path,
                          "SELECT count(*) FROM wf_jobs INDEXED BY wf_jobs_claim WHERE state = 0 "
                          "AND effect = 'x'"));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));

  // A cancel may change an uncounted row: the tail is counted first.
  ASSERT_EQ(WF_OK, wf_cancel(e, "t0", ids[0].c_str())) << wf_last_error();
  EXPECT_EQ(0, tail_rows(path));
  EXPECT_EQ(0, count_rows(path, "SELECT count(*) FROM wf_jobs WHERE state = 2"));
  EXPECT_EQ(10, count_rows(path,
                           "SELECT count(*) FROM wf_jobs INDEXED BY wf_jobs_claim WHERE state = 0 "
                           "AND effect = 'x'"));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(4, (kept_counts(path)[{"x", "t0"}].first));

  // However many a producer enqueues, at most kCountTailMax rows stay
  // uncounted; a batch counts its own.
  int64_t most = 0;
  for (int i = 0; i < 3 * static_cast<int>(wf::lease::kCountTailMax); ++i) {
    enqueue({{"effect", i % 2 ? "x" : "y"}, {"tenant", "p"}});
    if (i % 50 == 0) most = std::max(most, tail_rows(path));
  }
  most = std::max(most, tail_rows(path));
  EXPECT_GT(most, 0);
  EXPECT_LE(most, wf::lease::kCountTailMax);
  json batch = json::array();
  for (int i = 0; i < 300; ++i) batch.push_back({{"effect", "y"}, {"tenant", "b"}});
  char *bids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &bids)) << wf_last_error();
  wf_free(bids);
  EXPECT_EQ(0, tail_rows(path));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));

  // Uncounted rows claimed, completed and failed by the relay.
  enqueue({{"effect", "z"}, {"tenant", "r"}, {"payload", 0}});
  enqueue({{"effect", "z"}, {"tenant", "r"}, {"payload", 1}});
  Sink sink;
  sink.handler = [&](wf_job *j) {
    size_t len = 0;
    std::string p(wf_job_payload(j, &len), len);
    EXPECT_EQ(WF_OK, p == "1" ? wf_job_fail(j, "no") : wf_job_complete(j, nullptr));
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "z", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait([&] { return sink.handled >= 2; }));
  sync();
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(0, (kept_counts(path)[{"z", "r"}].first + kept_counts(path)[{"z", "r"}].second));
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;

  // A process killed after its commits: the next open counts its rows.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(60);
    wf_engine *c = nullptr;
    // (No purge pass meanwhile: its transaction would count the rows; a
    // slow build, under TSan, took over the default second.)
    if (wf_open(path.c_str(), "{\"purge_interval_ms\":3600000}", &c) != WF_OK) _exit(2);
    for (int i = 0; i < 20; ++i)
      if (wf_enqueue(c, "{\"effect\":\"k\",\"tenant\":\"q\"}", nullptr) != WF_OK) _exit(3);
    _exit(0);  // no wf_close
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(20, tail_rows(path));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  open();
  EXPECT_EQ(0, tail_rows(path));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(20, (kept_counts(path)[{"k", "q"}].first));
  ASSERT_EQ(WF_OK, wf_check(e, nullptr, &out)) << wf_last_error();
  EXPECT_TRUE(json::parse(out)["ok"].get<bool>()) << out;
  wf_free(out);
}

// A job that another engine's synchronous wf_enqueue left out of the claim
// index (state 2) is found by a running engine's relay, which indexes it
// before it claims.
TEST_F(ScaleTest, RunningEngineClaimsJobsAnotherEngineLeftUnindexed) {
  open("{\"durability\":\"normal\",\"poll_ms\":20}", false);
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  sync();
  wf_engine *e2 = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\"}", &e2)) << wf_last_error();
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(WF_OK, wf_enqueue(e2, R"({"effect":"x","tenant":"a"})", nullptr)) << wf_last_error();
  ASSERT_TRUE(sink.wait([&] { return sink.handled >= 3; })) << sink.handled;
  sync();
  EXPECT_EQ(0, count_rows(path, "SELECT count(*) FROM wf_jobs"));
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  ASSERT_EQ(WF_OK, wf_close(e2));
}

// A synchronous wf_enqueue takes its id and the watermark from the
// engine's memory while nothing else changed the file since its last
// commit (Db::ids). Another engine's inserts, cancels of the newest job
// (which raise the id floor), batches and the engine's own other
// transactions in between: every id is new and larger than all before it,
// and the counts stay exact.
TEST_F(ScaleTest, JobIdsRiseWhenOtherWritersCommitBetweenSynchronousCalls) {
  open("{\"durability\":\"normal\",\"purge_interval_ms\":3600000}");
  wf_engine *e2 = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\"}", &e2)) << wf_last_error();
  auto on = [](wf_engine *x, const char *doc) {
    char *id = nullptr;
    EXPECT_EQ(WF_OK, wf_enqueue(x, doc, &id)) << wf_last_error();
    int64_t v = id ? std::stoll(id) : 0;
    wf_free(id);
    return v;
  };
  std::vector<int64_t> ids;
  for (int i = 0; i < 600; ++i) {
    ids.push_back(on(e, R"({"effect":"x","tenant":"a"})"));
    ids.push_back(on(e, R"({"effect":"x","tenant":"b"})"));  // from the cache
    switch (i % 4) {
      case 0:
        ids.push_back(on(e2, R"({"effect":"y","tenant":"a"})"));
        break;
      case 1: {
        // The other engine's newest job, cancelled: its id is gone from
        // wf_jobs, the floor keeps it from being given again.
        int64_t v = on(e2, R"({"effect":"y","tenant":"c"})");
        ids.push_back(v);
        EXPECT_EQ(WF_OK, wf_cancel(e2, "c", std::to_string(v).c_str())) << wf_last_error();
        break;
      }
      case 2: {
        // This engine's own newest job, cancelled by itself.
        int64_t v = on(e, R"({"effect":"x","tenant":"c"})");
        ids.push_back(v);
        EXPECT_EQ(WF_OK, wf_cancel(e, "c", std::to_string(v).c_str())) << wf_last_error();
        break;
      }
      default: {
        char *out = nullptr;
        ASSERT_EQ(WF_OK, wf_enqueue_batch(e2, R"([{"effect":"y"},{"effect":"y"}])", &out))
            << wf_last_error();
        for (const auto &v : json::parse(out))
          ids.push_back(std::stoll(v["id"].get<std::string>()));
        wf_free(out);
      }
    }
  }
  for (size_t k = 1; k < ids.size(); ++k) ASSERT_LT(ids[k - 1], ids[k]) << "at " << k;
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_LE(tail_rows(path), wf::lease::kCountTailMax);
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_check(e, nullptr, &out)) << wf_last_error();
  EXPECT_TRUE(json::parse(out)["ok"].get<bool>()) << out;
  wf_free(out);
  ASSERT_EQ(WF_OK, wf_close(e2));
}

// Two engines on one file, four threads each calling wf_enqueue (whose
// commits leave counts and index entries to later transactions) while one
// engine's relay claims, completes and fails jobs (whose transactions count
// them first): every job is delivered once, and the counts end exact.
TEST_F(ScaleTest, CountsStayExactWithConcurrentEnginesAndThreads) {
  open("{\"durability\":\"normal\",\"poll_ms\":20}", false);
  Sink sink;
  sink.handler = [&](wf_job *j) {
    EXPECT_EQ(WF_OK, wf_job_id(j)[0] % 2 ? wf_job_complete(j, nullptr) : wf_job_fail(j, "no"));
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"max_attempts\":1}", Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  wf_engine *e2 = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\"}", &e2)) << wf_last_error();
  constexpr int kThreads = 4, kEach = 150;
  std::vector<std::thread> ts;
  std::atomic<int> failed{0};
  for (int k = 0; k < 2 * kThreads; ++k)
    ts.emplace_back([&, k] {
      wf_engine *on = k % 2 ? e : e2;
      for (int i = 0; i < kEach; ++i) {
        json j{{"effect", i % 3 ? "x" : "other"}, {"tenant", "t" + std::to_string(i % 7)}};
        if (wf_enqueue(on, j.dump().c_str(), nullptr) != WF_OK) failed++;
      }
    });
  for (auto &t : ts) t.join();
  EXPECT_EQ(0, failed.load());
  const size_t for_x = 2 * kThreads * (kEach - (kEach + 2) / 3);
  ASSERT_TRUE(sink.wait([&] { return sink.handled >= for_x; })) << sink.handled;
  sync();
  ASSERT_EQ(WF_OK, wf_sync(e2)) << wf_last_error();
  EXPECT_EQ(for_x, sink.handled);
  std::set<std::string> ids;
  for (auto &r : sink.seen) ids.insert(r["id"].get<std::string>());
  EXPECT_EQ(for_x, ids.size());
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  json s = stats();
  EXPECT_EQ(2 * kThreads * ((kEach + 2) / 3), s["outbox"]["by_effect"]["other"]["ready"]);
  EXPECT_FALSE(s["outbox"]["by_effect"].contains("x")) << s.dump();
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_check(e2, nullptr, &out)) << wf_last_error();
  EXPECT_TRUE(json::parse(out)["ok"].get<bool>()) << out;
  wf_free(out);
  ASSERT_EQ(WF_OK, wf_close(e2));
}

// The mark is in the file, not in the registering engine: another engine on
// the same file that never registered the effect inserts its jobs marked.
TEST_F(ScaleTest, AnotherEngineOnTheFileInsertsMarkedJobs) {
  open();
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "y", "{\"tenant_concurrency\":1}", Sink::cb, &sink));
  sync();
  wf_engine *e2 = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"durability\":\"normal\"}", &e2)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_enqueue(e2, R"({"effect":"y","tenant":"a"})", nullptr)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_enqueue(e2, R"({"effect":"x","tenant":"a"})", nullptr)) << wf_last_error();
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e2,
                                    R"([{"effect":"y","tenant":"b"},{"effect":"x","tenant":"b"},)"
                                    R"({"effect":"y","tenant":"c"}])",
                                    &ids))
      << wf_last_error();
  wf_free(ids);
  ASSERT_EQ(WF_OK, wf_close(e2));
  EXPECT_EQ(3, tenant_index_rows(path));
  EXPECT_EQ(0, miscapped(path));
}

// Filters narrow the counted outbox as documented (docs/operations.md), and
// ready / scheduled follow the clock.
TEST_F(ScaleTest, StatsFiltersAndReadySplit) {
  open();
  for (int i = 0; i < 3; ++i) enqueue({{"effect", "a"}, {"tenant", "t1"}});
  enqueue({{"effect", "a"}, {"tenant", "t2"}, {"delay_ms", 500}});
  enqueue({{"effect", "b"}, {"tenant", "t2"}});
  clock.now += 100;
  json s = stats("{\"tenant\":\"t2\"}");
  EXPECT_EQ(1, s["outbox"]["ready"]);
  EXPECT_EQ(1, s["outbox"]["scheduled"]);
  EXPECT_FALSE(s["outbox"]["by_tenant"].contains("t1"));
  EXPECT_EQ(1, s["outbox"]["by_effect"]["a"]["scheduled"]);
  EXPECT_EQ(1, s["outbox"]["by_effect"]["b"]["ready"]);
  EXPECT_EQ(100, s["outbox"]["oldest_ready_age_ms"]);
  s = stats("{\"effect\":\"a\"}");
  EXPECT_EQ(3, s["outbox"]["ready"]);
  EXPECT_EQ(1, s["outbox"]["scheduled"]);
  EXPECT_FALSE(s["outbox"]["by_effect"].contains("b"));
  s = stats("{\"effect\":\"a\",\"tenant\":\"t1\"}");
  EXPECT_EQ(3, s["outbox"]["ready"]);
  EXPECT_EQ(0, s["outbox"]["scheduled"]);
  s = stats("{\"tenant\":\"nobody\"}");
  EXPECT_EQ(0, s["outbox"]["ready"]);
  EXPECT_EQ(0, s["outbox"]["oldest_ready_age_ms"]);
  clock.now += 500;
  s = stats();
  EXPECT_EQ(5, s["outbox"]["ready"]);
  EXPECT_EQ(0, s["outbox"]["scheduled"]);
  EXPECT_EQ(600, s["outbox"]["oldest_ready_age_ms"]);
  // A tenant's totals sum its jobs over every effect (t2: one of a, one of
  // b), or over the filtered effect only.
  EXPECT_EQ(2, s["outbox"]["by_tenant"]["t2"]["ready"]);
  EXPECT_EQ(3, s["outbox"]["by_tenant"]["t1"]["ready"]);
  s = stats("{\"effect\":\"b\"}");
  EXPECT_EQ(1, s["outbox"]["by_tenant"]["t2"]["ready"]);
  EXPECT_FALSE(s["outbox"]["by_tenant"].contains("t1"));
  char *m = nullptr;
  ASSERT_EQ(WF_OK, wf_metrics(e, &m));
  std::string text = m;
  wf_free(m);
  EXPECT_NE(std::string::npos, text.find("wfengine_outbox_jobs{effect=\"a\",state=\"ready\"} 4"));
}

// The oldest ready job is found across priorities (the first of each on
// wf_jobs_claim), a delayed job counts as scheduled until due, and the loop's
// next-due instant comes from the jobs due after their creation.
TEST_F(ScaleTest, OldestReadyAcrossPrioritiesAndDelayedJobs) {
  open();
  enqueue({{"effect", "a"}, {"priority", 5}});
  clock.now += 100;
  enqueue({{"effect", "a"}, {"priority", -3}, {"tenant", "t"}});
  enqueue({{"effect", "a"}, {"priority", 9}, {"delay_ms", 1000}});
  clock.now += 100;
  enqueue({{"effect", "a"}, {"priority", 0}});
  json s = stats();
  EXPECT_EQ(3, s["outbox"]["ready"]);
  EXPECT_EQ(1, s["outbox"]["scheduled"]);
  EXPECT_EQ(200, s["outbox"]["oldest_ready_age_ms"]);
  s = stats("{\"tenant\":\"t\"}");
  EXPECT_EQ(100, s["outbox"]["oldest_ready_age_ms"]);
  clock.now += 2000;  // all due; the first job (at +0) is still the oldest
  s = stats();
  EXPECT_EQ(4, s["outbox"]["ready"]);
  EXPECT_EQ(0, s["outbox"]["scheduled"]);
  EXPECT_EQ(2200, s["outbox"]["oldest_ready_age_ms"]);
  // A delayed job wakes the relay when it falls due (next-due on wf_jobs_due).
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "b", nullptr, Sink::cb, &sink));
  enqueue({{"effect", "b"}, {"delay_ms", 50}});
  ASSERT_EQ(WF_OK, wf_start(e));
  clock.now += 60;
  ASSERT_EQ(WF_OK, wf_wake(e));
  EXPECT_TRUE(sink.wait_count(1));
}

// A file of the schema version before the counts (step 6) gets its counts
// from its jobs when it is migrated.
TEST_F(ScaleTest, MigrationBackfillsCounts) {
  constexpr int kCountsStep = 6;
  {
    wf::Db db(path, false, 5000);
    for (int v = 1; v < kCountsStep; ++v) db.exec(wf::migration_sql(v));
    auto st = db.prepare("INSERT INTO wf_meta(k, v) VALUES('schema_version', ?1)");
    st->bind(1, std::to_string(kCountsStep - 1)).exec();
    db.exec(
        "INSERT INTO wf_jobs(tenant, effect, payload, metadata, run_at, state, created_at) VALUES"
        "('a', 'e', '1', '{}', 0, 0, 0), ('a', 'e', '1', '{}', 0, 1, 0), "
        "('b', 'e', '1', '{}', 0, 0, 0), ('a', 'f', '1', '{}', 0, 0, 0)");
  }
  open();
  json s = stats();
  EXPECT_EQ(3, s["outbox"]["ready"]);
  EXPECT_EQ(1, s["outbox"]["running"]);
  EXPECT_EQ(real_counts(path), kept_counts(path)) << dump(kept_counts(path));
  EXPECT_EQ(tenant_counts(path, true), tenant_counts(path, false));
}

// wf_stats reads the counts, not the jobs: the same work with 1,000 or with
// 100,000 ready jobs (VM steps, not time).
TEST_F(ScaleTest, StatsWorkDoesNotGrowWithBacklog) {
  const int64_t big = kSanitizer ? 20000 : 200000;
  std::vector<int64_t> work;
  for (int64_t n : {int64_t(1000), big}) {
    if (e) {
      ASSERT_EQ(WF_OK, wf_close(e));
    }
    e = nullptr;
    std::remove(path.c_str());
    std::remove((path + "-wal").c_str());
    std::remove((path + "-shm").c_str());
    open();
    ASSERT_EQ(WF_OK, wf_close(e));
    e = nullptr;
    for (int k = 0; k < 4; ++k) fill(path, "e" + std::to_string(k), n / 4, 50, clock.now - 5000);
    open();
    json s = stats();  // warm the statement cache
    EXPECT_EQ(n, s["outbox"]["ready"].get<int64_t>());
    int64_t before = steps();
    s = stats();
    stats("{\"effect\":\"e1\"}");
    char *m = nullptr;
    ASSERT_EQ(WF_OK, wf_metrics(e, &m));
    wf_free(m);
    work.push_back(steps() - before);
  }
  // Before the counts, stats stepped through every job (hundreds of
  // thousands of steps for the large backlog).
  std::printf("stats+metrics VM steps: %lld (1,000 jobs) vs %lld (%lld jobs)\n", (long long)work[0],
              (long long)work[1], (long long)big);
  EXPECT_LT(work[1], work[0] * 3 / 2 + 100) << work[0] << " vs " << work[1];
}

// The loop's next-due lookups read only the registered effects' rows: an
// idle effect costs the same whatever another effect's backlog.
TEST_F(ScaleTest, NextDueIgnoresOtherEffectsBacklog) {
  open();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  const int64_t big = kSanitizer ? 20000 : 200000;
  std::vector<int64_t> work;
  int64_t t = clock.now.load();
  for (int64_t n : {int64_t(1000), big - 1000}) {
    fill(path, "busy", n, 10, t - 5000);
    wf::Db db(path, true, 5000);
    std::vector<std::string> idle{"idle"};
    wf::lease::any_due(db, t, idle);  // prepare
    int64_t before = steps();
    EXPECT_FALSE(wf::lease::any_due(db, t, idle));
    EXPECT_EQ(INT64_MAX, wf::lease::next_due(db, t, idle));
    // Another effect due in the future is found by its own seek.
    EXPECT_EQ(INT64_MAX, wf::lease::next_due(db, t, {"idle", "nothing"}));
    work.push_back(steps() - before);
  }
  std::printf("next-due VM steps: %lld (1,000 other jobs) vs %lld (%lld)\n", (long long)work[0],
              (long long)work[1], (long long)big);
  EXPECT_LT(work[1], work[0] + 20) << work[0] << " vs " << work[1];
}

// A claim under tenant_concurrency with a hot tenant at its limit reads the
// other tenants' jobs, not the hot tenant's backlog: the same work with 1,000
// or 200,000 hot jobs ahead of them in claim order.
TEST_F(ScaleTest, CappedClaimSkipsSaturatedTenantsBacklog) {
  open();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  const int64_t big = kSanitizer ? 20000 : 200000;
  int64_t t = clock.now.load();
  {
    // As registering "e" with a tenant_concurrency does.
    wf::Db db(path, false, 5000);
    db.exec("BEGIN IMMEDIATE");
    EXPECT_TRUE(wf::lease::mark_capped(db, "e"));
    db.exec("COMMIT");
  }
  fill(path, "e", 100, 20, t - 5000, "cold");  // due after the hot ones
  std::vector<int64_t> work;
  for (int64_t n : {int64_t(1000), big - 1000}) {
    fill(path, "e", n, 1, t - 100000, "hot");
    wf::Db db(path, false, 5000);
    wf::lease::CountDeltas cd;
    std::map<std::string, int> inflight{{"hot0", 2}};
    for (int pass = 0; pass < 2; ++pass) {  // the first prepares the statements
      db.exec("BEGIN IMMEDIATE");
      int64_t before = steps();
      auto rows = wf::lease::claim_capped(db, cd, "b", t, t + 1000, "e", 10, 2, inflight);
      int64_t used = steps() - before;
      db.exec("ROLLBACK");
      if (pass == 1) work.push_back(used);
      ASSERT_EQ(10u, rows.size());
      std::map<std::string, int> per;
      for (auto &r : rows) per[r.tenant]++;
      EXPECT_EQ(0u, per.count("hot0"));
      for (auto &[ten, k] : per) EXPECT_LE(k, 2) << ten;
    }
  }
  std::printf("capped claim VM steps: %lld (1,000 hot jobs) vs %lld (%lld)\n", (long long)work[0],
              (long long)work[1], (long long)big);
  EXPECT_LT(work[1], work[0] + work[0] / 2) << work[0] << " vs " << work[1];
}

// Draining a backlog under tenant_concurrency claims each job once and never
// gives a claim back (before, a claim took up to max_inflight jobs of a hot
// tenant and released all but its limit).
TEST_F(ScaleTest, TenantConcurrencyDrainClaimsEachJobOnce) {
  open();
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"tenant_concurrency\":2}", Sink::cb, &sink));
  const int hot = kSanitizer ? 300 : 1500, cold = 500;
  json batch = json::array();
  for (int i = 0; i < hot; ++i) batch.push_back({{"effect", "x"}, {"tenant", "hot"}});
  for (int i = 0; i < cold; ++i)
    batch.push_back({{"effect", "x"}, {"tenant", "c" + std::to_string(i % 50)}});
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &ids)) << wf_last_error();
  wf_free(ids);
  int64_t claimed0 = wf::lease::g_rows_claimed.load(),
          unclaimed0 = wf::lease::g_rows_unclaimed.load();
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait([&] { return sink.handled >= static_cast<size_t>(hot + cold); }, 60000));
  sync();
  EXPECT_EQ(hot + cold, wf::lease::g_rows_claimed.load() - claimed0);
  EXPECT_EQ(0, wf::lease::g_rows_unclaimed.load() - unclaimed0);
  EXPECT_EQ(0, pending());
  EXPECT_EQ(real_counts(path), kept_counts(path));
  EXPECT_EQ(tenant_counts(path, true), tenant_counts(path, false));
}

// A plain claim reads its `limit` rows in claim order (wf_jobs_claim), not
// every due job of the effect (wf_jobs_due would match effect and run_at and
// sort them all).
TEST_F(ScaleTest, ClaimWorkDoesNotGrowWithBacklog) {
  open();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  const int64_t big = kSanitizer ? 20000 : 200000;
  int64_t t = clock.now.load();
  std::vector<int64_t> work;
  for (int64_t n : {int64_t(1000), big - 1000}) {
    fill(path, "e", n, 10, t - 5000);
    wf::Db db(path, false, 5000);
    wf::lease::CountDeltas cd;
    for (int pass = 0; pass < 2; ++pass) {
      db.exec("BEGIN IMMEDIATE");
      int64_t before = steps();
      auto rows = wf::lease::claim(db, cd, "b", t, t + 1000, "e", 10);
      int64_t used = steps() - before;
      db.exec("ROLLBACK");
      ASSERT_EQ(10u, rows.size());
      if (pass == 1) work.push_back(used);
    }
  }
  std::printf("claim VM steps: %lld (1,000 jobs) vs %lld (%lld)\n", (long long)work[0],
              (long long)work[1], (long long)big);
  EXPECT_LT(work[1], work[0] + work[0] / 2) << work[0] << " vs " << work[1];
}
