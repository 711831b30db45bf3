// lease: every transition of a job row's lease, and the boot liveness lock.
// Only this file spells the job states of wf_jobs in SQL (0 ready,
// 1 running; see JobState in lease.h).
#include "lease.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <system_error>

namespace wf {

static_assert(static_cast<int>(JobState::kReady) == 0 && static_cast<int>(JobState::kRunning) == 1,
              "the SQL below spells ready as 0 and running as 1");

namespace {

const char *kClaimSql =
    "UPDATE wf_jobs SET state = 1, lease_owner = ?1, lease_until = ?2, attempts = attempts + 1, "
    "started_at = ?3 WHERE id IN (SELECT id FROM wf_jobs INDEXED BY wf_jobs_claim WHERE state = 0 "
    "AND effect = ?4 AND run_at <= ?3 ORDER BY priority DESC, run_at, id LIMIT ?5) RETURNING id, "
    "tenant, effect, key, "
    "payload, metadata, attempts, failures, max_attempts, priority, run_at, origin, interruptions";

// Claims under tenant_concurrency (claim_capped): candidates are chosen in
// C++ and claimed by id, so that no tenant gets more than its free slots (no
// claim-then-release) and saturated tenants' backlogs are not read.
// Phase 1: the effect's due jobs in claim order, a bounded number of rows.
const char *kCandidatesSql =
    "SELECT id, tenant, priority, run_at FROM wf_jobs INDEXED BY wf_jobs_claim WHERE state = 0 "
    "AND effect = ?1 AND run_at <= ?2 ORDER BY priority DESC, run_at, id LIMIT ?3";
// Phase 2: the tenants with pending jobs of the effect, then each one's
// next due jobs on wf_jobs_tenant (effect, tenant, priority DESC, run_at, id).
const char *kPendingTenantsSql =
    "SELECT tenant FROM wf_job_counts WHERE effect = ?1 AND pending > 0";
const char *kTenantCandidatesSql =
    "SELECT id, tenant, priority, run_at FROM wf_jobs INDEXED BY wf_jobs_tenant WHERE state = 0 "
    "AND capped = 1 AND effect = ?1 AND tenant = ?2 AND run_at <= ?3 ORDER BY priority DESC, "
    "run_at, id "
    "LIMIT ?4";
// Schema 12: the effects whose jobs are in wf_jobs_tenant (capped = 1).
const char *kIsCappedSql = "SELECT 1 FROM wf_capped_effects WHERE effect = ?1";
const char *kMarkCappedSql = "INSERT OR IGNORE INTO wf_capped_effects(effect) VALUES(?1)";
// The jobs an effect had when it was marked: its ready jobs on its range of
// wf_jobs_claim, its running ones on wf_jobs_lease (the leases held).
const char *kCapReadySql =
    "UPDATE wf_jobs INDEXED BY wf_jobs_claim SET capped = 1 WHERE state = 0 AND effect = ?1";
const char *kCapRunningSql =
    "UPDATE wf_jobs INDEXED BY wf_jobs_lease SET capped = 1 WHERE state = 1 AND effect = ?1";
const char *kClaimIdsSql =
    "UPDATE wf_jobs SET state = 1, lease_owner = ?1, lease_until = ?2, attempts = attempts + 1, "
    "started_at = ?3 WHERE id IN (SELECT value FROM json_each(?4)) AND state = 0 "
    "RETURNING id, tenant, effect, key, payload, metadata, attempts, failures, max_attempts, "
    "priority, run_at, origin, interruptions";

const char *kRenewSql =
    "UPDATE wf_jobs SET lease_until = ?1 WHERE state = 1 AND lease_owner = ?2 AND "
    "(id, attempts) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
    "FROM json_each(?3)) RETURNING id, attempts";

const char *kUnclaimSql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "attempts = attempts - 1 WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3 "
    "RETURNING effect, tenant";

const char *kInterruptOwnerHistorySql =
    "INSERT INTO wf_attempts(job_id, n, started_at, ended_at, outcome, error) "
    "SELECT id, attempts, started_at, ?1, 'interrupted', ?3 FROM wf_jobs "
    "WHERE state = 1 AND lease_owner = ?2";
const char *kInterruptOwnerSql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "run_at = min(run_at, ?1), interruptions = interruptions + 1 "
    "WHERE state = 1 AND lease_owner = ?2 RETURNING effect, tenant";

// The same at a graceful wf_close: the attempt is recorded, but not counted
// as an interruption (being cut off by a planned shutdown says nothing about
// the job; a rolling deploy must not dead-letter a long job).
const char *kReleaseOwnerSql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "run_at = min(run_at, ?1) WHERE state = 1 AND lease_owner = ?2 RETURNING effect, tenant";

const char *kReclaimHistorySql =
    "INSERT INTO wf_attempts(job_id, n, started_at, ended_at, outcome, error) "
    "SELECT id, attempts, started_at, ?1, 'interrupted', 'lease of engine ' || lease_owner "
    "|| ' expired' FROM wf_jobs WHERE state = 1 AND lease_until < ?1 AND "
    "(lease_owner != ?2 OR id NOT IN (SELECT value FROM json_each(?3)))";
const char *kReclaimSql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "interruptions = interruptions + 1 WHERE state = 1 AND lease_until < ?1 AND "
    "(lease_owner != ?2 OR id NOT IN (SELECT value FROM json_each(?3))) RETURNING effect, tenant";

const char *kDeadClaimedSql =
    "INSERT OR REPLACE INTO wf_dead(id, tenant, effect, key, payload, metadata, priority, "
    "attempts, failures, max_attempts, origin, created_at, reason, dead_at) "
    "SELECT id, tenant, effect, key, payload, metadata, priority, attempts - 1, failures, "
    "max_attempts, origin, created_at, ?4, ?5 FROM wf_jobs "
    "WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3";

const char *kFinishDoneSql =
    "DELETE FROM wf_jobs WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3 "
    "RETURNING effect, tenant";
// The same for eight first attempts (finish_done8).
const char *kFinishDone8Sql =
    "DELETE FROM wf_jobs WHERE id IN (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) AND state = 1 AND "
    "lease_owner = ?1 AND attempts = 1 RETURNING effect, tenant";
// The row of a job that just became a dead letter (its copy is in wf_dead).
const char *kDeleteJobSql = "DELETE FROM wf_jobs WHERE id = ?1 RETURNING effect, tenant, state";
const char *kFinishDeadSql =
    "INSERT OR REPLACE INTO wf_dead(id, tenant, effect, key, payload, metadata, priority, "
    "attempts, failures, max_attempts, origin, created_at, reason, dead_at) "
    "SELECT id, tenant, effect, key, payload, metadata, priority, attempts, failures + 1, "
    "max_attempts, origin, created_at, ?4, ?5 FROM wf_jobs "
    "WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3";
const char *kFinishRetrySql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "failures = failures + 1, run_at = ?4, last_error = ?5 "
    "WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3 RETURNING effect, tenant";
// One effect at a time: a seek each, whatever the other effects hold. A
// ready job is looked for as a claim would find it (wf_jobs_claim); a job due
// later is on wf_jobs_due, which holds every job due after its creation
// (schema version 7).
const char *kAnyDueSql =
    "SELECT run_at FROM wf_jobs INDEXED BY wf_jobs_claim WHERE state = 0 AND effect = ?2 AND "
    "run_at <= ?1 LIMIT 1";
const char *kAnyUnindexedSql =
    "SELECT 1 FROM wf_jobs WHERE id > (SELECT CAST(v AS INTEGER) FROM wf_meta WHERE k = "
    "'counts_through') AND state = 2 LIMIT 1";
const char *kNextDueSql =
    "SELECT run_at FROM wf_jobs INDEXED BY wf_jobs_due WHERE state = 0 AND effect = ?2 AND "
    "run_at > ?1 AND run_at > created_at ORDER BY run_at LIMIT 1";

// The counts are read, then written by a statement of one row without
// RETURNING: an upsert with RETURNING (or any statement SQLite treats as
// writing several rows) opens a statement journal, whose first write
// allocates a 64 KiB in-memory chunk that is freed at the statement's end. On
// the caller-runs path that malloc/free pair grew and trimmed the heap twice
// per commit (brk and a TLB shootdown each time: 40% of the CPU of a
// synchronous wf_enqueue, docs/performance.md).
const char *kCountGetSql =
    "SELECT pending, running FROM wf_job_counts WHERE effect = ?1 AND tenant = ?2";
const char *kCountInsertSql =
    "INSERT INTO wf_job_counts(effect, tenant, pending, running) VALUES(?1, ?2, ?3, ?4)";
const char *kCountSetSql =
    "UPDATE wf_job_counts SET pending = ?3, running = ?4 WHERE effect = ?1 AND tenant = ?2";
const char *kCountDeleteSql = "DELETE FROM wf_job_counts WHERE effect = ?1 AND tenant = ?2";
// The id floor (schema version 11): never below an id that was deleted.
const char *kRaiseIdFloorSql =
    "UPDATE wf_meta SET v = ?1 WHERE k = 'job_id_floor' AND CAST(v AS INTEGER) < ?1";
// The counts watermark (schema version 13, lease.h).
const char *kCountsThroughSql = "SELECT CAST(v AS INTEGER) FROM wf_meta WHERE k = 'counts_through'";
const char *kSetCountsThroughSql = "UPDATE wf_meta SET v = ?1 WHERE k = 'counts_through'";
// The rows above W (?1) and below ?2 (INT64_MAX: all of them).
const char *kTailSql =
    "SELECT effect, tenant, state, run_at FROM wf_jobs WHERE id > ?1 AND id < ?2";
// Rows in state 2 (lease.h) into the claim indexes, once they are counted.
const char *kIndexTailSql = "UPDATE wf_jobs SET state = 0 WHERE id > ?1 AND state = 2";
const char *kNextJobIdSql =
    "SELECT max(coalesce((SELECT max(id) FROM wf_jobs), 0), "
    "coalesce((SELECT CAST(v AS INTEGER) FROM wf_meta WHERE k = 'job_id_floor'), 0)) + 1, "
    "(SELECT CAST(v AS INTEGER) FROM wf_meta WHERE k = 'counts_through')";

// Steps a statement whose RETURNING gives (effect, tenant) and adds
// (pending, running) to their counts for each row; returns the rows.
int64_t count_rows(Stmt &st, lease::CountDeltas &cd, int64_t pending, int64_t running,
                   int64_t interrupted = 0) {
  int64_t n = 0;
  while (st.step()) {
    lease::count_add(cd, st.col_text(0), st.col_text(1), pending, running, 0, interrupted);
    ++n;
  }
  return n;
}

}  // namespace

namespace lease {

void count_merge(CountDeltas &into, const CountDeltas &from) {
  into.deleted_max = std::max(into.deleted_max, from.deleted_max);
  if (from.first_new != 0 && (into.first_new == 0 || from.first_new < into.first_new))
    into.first_new = from.first_new;
  if (!into.through_known && from.through_known) {
    into.through_known = true;
    into.through = from.through;
  }
  for (const auto &[k, v] : from.rows) {
    auto &c = into.rows[k];
    c.pending += v.pending;
    c.running += v.running;
    c.enqueued += v.enqueued;
    c.interrupted += v.interrupted;
  }
}

int64_t counts_through(Db &db) {
  auto st = db.prepare(kCountsThroughSql);
  return st->step() ? st->col_int(0) : INT64_MAX;
}

namespace {
// Adds the rows with W < id < below to `d` as counted; returns whether one
// of them is in state 2 (and sets d.tail_seen when there is any).
bool add_rows(Db &db, CountDeltas &d, int64_t w, int64_t below) {
  auto stp = db.prepare(kTailSql);
  Stmt &st = *stp;
  st.bind(1, w).bind(2, below);
  bool unindexed = false;
  while (st.step()) {
    d.tail_seen = true;
    const int state = static_cast<int>(st.col_int(2));
    const bool running = state == static_cast<int>(JobState::kRunning);
    unindexed |= state == static_cast<int>(JobState::kUnindexed);
    count_add(d, st.col_text(0), st.col_text(1), running ? 0 : 1, running ? 1 : 0);
  }
  return unindexed;
}

void index_tail(Db &db, int64_t through) {
  auto st = db.prepare(kIndexTailSql);
  st->bind(1, through).exec();
}
}  // namespace

void count_catch_up(Db &db, CountDeltas &d) {
  d.through = counts_through(db);
  d.through_known = true;
  d.caught_up = true;
  if (d.through == INT64_MAX) return;
  if (add_rows(db, d, d.through, INT64_MAX)) index_tail(db, d.through);
}

void count_tail(
    Db &db, const std::function<void(const std::string &, const std::string &, int, int64_t)> &fn) {
  const int64_t w = counts_through(db);
  if (w == INT64_MAX) return;
  auto st = db.prepare(kTailSql);
  st->bind(1, w).bind(2, INT64_MAX);
  while (st->step())
    fn(st->col_text(0), st->col_text(1), static_cast<int>(st->col_int(2)), st->col_int(3));
}

// Each counts row is read, then inserted, set or (at zero) deleted.
void flush_counts(Db &db, CountDeltas &d, bool may_defer) {
  if (d.deleted_max > 0) {
    auto st = db.prepare(kRaiseIdFloorSql);
    st->bind(1, d.deleted_max).exec();
  }
  const int64_t w = d.through_known ? d.through : counts_through(db);
  if (w == INT64_MAX) {
    // No watermark in the file (cannot be written: every open migrates it).
    fail(WF_ECORRUPT, "wf_meta has no counts_through (schema version 13)");
  }
  db.ids_tx_through = w;  // W as the transaction leaves it, unless raised below
  if (!d.caught_up) {
    // Only inserts since BEGIN: the rows above W are the earlier
    // transactions' (from W to first_new) and this one's.
    if (d.rows.empty() && d.first_new == 0 && d.deleted_max == 0) {
      d.clear();
      return;
    }
    if (may_defer && d.deleted_max == 0 && d.first_new != 0) {
      // Rows above W after the commit: the earlier tail (ids from W to
      // first_new) and the transaction's own.
      int64_t own = 0;
      for (const auto &[k, v] : d.rows) own += v.enqueued;
      if (d.first_new - 1 - w + own <= kCountTailMax) {
        d.clear();
        return;
      }
    }
    add_rows(db, d, w, d.first_new != 0 ? d.first_new : INT64_MAX);
    // Counted now: the rows in state 2 (earlier ones and this
    // transaction's) go into the claim indexes.
    index_tail(db, w);
  }
  for (const auto &[key, v] : d.rows) {
    if (v.pending == 0 && v.running == 0) continue;
    const std::string &effect = key.first, &tenant = key.second;
    int64_t pending = v.pending, running = v.running;
    bool found = false;
    {
      auto st = db.prepare(kCountGetSql);
      st->bind(1, effect).bind(2, tenant);
      if ((found = st->step())) {
        pending += st->col_int(0);
        running += st->col_int(1);
      }
    }
    if (!found) {
      auto st = db.prepare(kCountInsertSql);
      st->bind(1, effect).bind(2, tenant).bind(3, pending).bind(4, running).exec();
    } else if (pending == 0 && running == 0) {
      auto st = db.prepare(kCountDeleteSql);
      st->bind(1, effect).bind(2, tenant).exec();
    } else {
      auto st = db.prepare(kCountSetSql);
      st->bind(1, effect).bind(2, tenant).bind(3, pending).bind(4, running).exec();
    }
  }
  // Every row is counted now: W moves past the largest id given so far
  // (rows rolled back included: an id is never given twice). Only rows
  // inserted here or found above W need it; a transaction with neither (a
  // renewal, a claim of counted jobs) leaves W, and reads nothing more.
  if (d.first_new != 0 || d.tail_seen) {
    const int64_t through = next_job_id(db, nullptr, false) - 1;
    if (through > w) {
      auto st = db.prepare(kSetCountsThroughSql);
      st->bind(1, through).exec();
      db.ids_tx_through = through;
    }
  }
  d.clear();
}

bool is_capped(Db &db, const std::string &effect) {
  auto st = db.prepare(kIsCappedSql);
  st->bind(1, effect);
  return st->step();
}

bool mark_capped(Db &db, const std::string &effect) {
  if (is_capped(db, effect)) return false;
  {
    auto st = db.prepare(kMarkCappedSql);
    st->bind(1, effect).exec();
  }
  {
    auto st = db.prepare(kCapReadySql);
    st->bind(1, effect).exec();
  }
  {
    auto st = db.prepare(kCapRunningSql);
    st->bind(1, effect).exec();
  }
  return true;
}

int64_t next_job_id(Db &db, CountDeltas *d, bool give) {
  int64_t next = 1, through = INT64_MAX;
  uint32_t dv = 0;
  // The cache (Db::ids): only before the transaction gave any id, and only
  // while nothing changed the file since the commit that recorded it.
  if (db.ids.valid && db.ids_tx_next == 0 && db.data_version(&dv) && dv == db.ids.data_version &&
      db.total_changes() == db.ids.total_changes) {
    next = db.ids.next;
    through = db.ids.through;
  } else {
    auto st = db.prepare(kNextJobIdSql);
    if (st->step()) {
      next = st->col_int(0);
      if (!st->col_null(1)) through = st->col_int(1);
    }
  }
  if (d && !d->through_known) {
    d->through_known = true;
    d->through = through;
  }
  // A row deleted earlier in this transaction (a completion in the same
  // batch as this insert) is not in the floor until flush_counts.
  next = std::max(next, db.deleted_job_id_max + 1);
  db.ids_tx_next = std::max(db.ids_tx_next, give ? next + 1 : next);
  if (d && (d->first_new == 0 || next < d->first_new)) d->first_new = next;
  return next;
}

namespace {
// Deletes the row of a job whose copy is now in wf_dead.
void delete_dead_row(Db &db, CountDeltas &cd, int64_t id) {
  note_deleted(db, cd, id);
  auto d = db.prepare(kDeleteJobSql);
  d->bind(1, id);
  while (d->step()) {
    bool running = d->col_int(2) == 1;
    count_add(cd, d->col_text(0), d->col_text(1), running ? 0 : -1, running ? -1 : 0);
  }
}
}  // namespace

void finish_done8(Db &db, CountDeltas &cd, const std::string &boot, const int64_t *ids) {
  auto st = db.prepare(kFinishDone8Sql);
  st->bind(1, boot);
  for (int k = 0; k < 8; ++k) {
    st->bind(k + 2, ids[k]);
    note_deleted(db, cd, ids[k]);
  }
  count_rows(*st, cd, 0, -1);
}

bool finish_done(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt) {
  note_deleted(db, cd, id);
  auto st = db.prepare(kFinishDoneSql);
  st->bind(1, id).bind(2, boot).bind(3, attempt);
  return count_rows(*st, cd, 0, -1) == 1;
}

bool finish_dead(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt,
                 int64_t now, const std::string &reason) {
  {
    auto st = db.prepare(kFinishDeadSql);
    st->bind(1, id).bind(2, boot).bind(3, attempt).bind(4, reason).bind(5, now).exec();
    if (db.changes() != 1) return false;
  }
  delete_dead_row(db, cd, id);
  return true;
}

bool finish_retry(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt,
                  int64_t run_at, const std::string &error) {
  auto st = db.prepare(kFinishRetrySql);
  st->bind(1, id).bind(2, boot).bind(3, attempt).bind(4, run_at).bind(5, error);
  return count_rows(*st, cd, 1, -1) == 1;
}

bool any_due(Db &db, int64_t now, const std::vector<std::string> &effects) {
  if (effects.empty()) return false;
  {
    // Ready jobs not yet in wf_jobs_claim (state 2, above W): a claim
    // indexes them first.
    auto st = db.prepare(kAnyUnindexedSql);
    if (st->step()) return true;
  }
  for (const auto &e : effects) {
    auto st = db.prepare(kAnyDueSql);
    st->bind(1, now).bind(2, e);
    if (st->step()) return true;
  }
  return false;
}

int64_t next_due(Db &db, int64_t now, const std::vector<std::string> &effects) {
  int64_t best = INT64_MAX;
  for (const auto &e : effects) {
    auto st = db.prepare(kNextDueSql);
    st->bind(1, now).bind(2, e);
    if (st->step()) best = std::min(best, st->col_int(0));
  }
  return best;
}

std::atomic<int64_t> g_rows_claimed{0}, g_rows_unclaimed{0};

namespace {
void read_claimed(Stmt &st_, CountDeltas &cd, std::vector<Claimed> &out) {
  Stmt *st = &st_;
  while (st->step()) {
    Claimed c;
    c.id = st->col_int(0);
    c.tenant = st->col_text(1);
    c.effect = st->col_text(2);
    c.key = st->col_text(3);
    c.payload = st->col_text(4);
    c.metadata = st->col_text(5);
    c.attempt = static_cast<int>(st->col_int(6));
    c.failures = static_cast<int>(st->col_int(7));
    c.has_max_attempts = !st->col_null(8);
    if (c.has_max_attempts) c.max_attempts = st->col_int(8);
    c.priority = static_cast<int>(st->col_int(9));
    c.run_at = st->col_int(10);
    c.origin = st->col_text(11);
    c.interruptions = static_cast<int>(st->col_int(12));
    count_add(cd, c.effect, c.tenant, -1, 1);
    out.push_back(std::move(c));
    g_rows_claimed.fetch_add(1, std::memory_order_relaxed);
  }
}

struct Candidate {
  int64_t id;
  std::string tenant;
  int64_t priority, run_at;
  bool operator<(const Candidate &o) const {
    if (priority != o.priority) return priority > o.priority;
    if (run_at != o.run_at) return run_at < o.run_at;
    return id < o.id;
  }
};

void claim_ids(Db &db, CountDeltas &cd, const std::string &boot, int64_t now, int64_t lease_until,
               const std::vector<Candidate> &c, std::vector<Claimed> &out) {
  if (c.empty()) return;
  json ids = json::array();
  for (const auto &k : c) ids.push_back(k.id);
  auto st = db.prepare(kClaimIdsSql);
  st->bind(1, boot).bind(2, lease_until).bind(3, now).bind(4, ids.dump());
  read_claimed(*st, cd, out);
}
}  // namespace

std::vector<Claimed> claim(Db &db, CountDeltas &cd, const std::string &boot, int64_t now,
                           int64_t lease_until, const std::string &effect, int limit) {
  auto st = db.prepare(kClaimSql);
  st->bind(1, boot).bind(2, lease_until).bind(3, now).bind(4, effect).bind(5, limit);
  std::vector<Claimed> out;
  read_claimed(*st, cd, out);
  return out;
}

std::vector<Claimed> claim_capped(Db &db, CountDeltas &cd, const std::string &boot, int64_t now,
                                  int64_t lease_until, const std::string &effect, int limit,
                                  int cap, const std::map<std::string, int> &inflight) {
  std::vector<Claimed> out;
  if (limit <= 0 || cap <= 0) return out;
  // Phase 2 reads wf_jobs_tenant, which holds the effect's jobs once it is
  // marked (registration marks it too; this covers a claim that comes first).
  mark_capped(db, effect);
  std::map<std::string, int> taken;  // this claim's picks per tenant
  auto room = [&](const std::string &t) {
    auto i = inflight.find(t);
    auto k = taken.find(t);
    return cap - (i == inflight.end() ? 0 : i->second) - (k == taken.end() ? 0 : k->second);
  };
  // Phase 1: the head of the effect's claim order, at most
  // min(limit, 256) + 64 due rows: when no saturated tenant crowds the head,
  // this is the whole claim, in exact claim order.
  std::vector<Candidate> pick;
  bool exhausted = true;  // phase 1 saw every due job of the effect
  {
    const int64_t bound = std::min(limit, 256) + 64;
    auto st = db.prepare(kCandidatesSql);
    st->bind(1, effect).bind(2, now).bind(3, bound);
    int64_t seen = 0;
    while (static_cast<int>(pick.size()) < limit && st->step()) {
      ++seen;
      std::string t = st->col_text(1);
      if (room(t) <= 0) continue;
      taken[t]++;
      pick.push_back(Candidate{st->col_int(0), std::move(t), st->col_int(2), st->col_int(3)});
    }
    exhausted = seen < bound;
  }
  claim_ids(db, cd, boot, now, lease_until, pick, out);
  int rest = limit - static_cast<int>(pick.size());
  if (rest <= 0 || exhausted) return out;
  // Phase 2: the head was crowded by tenants at their limit. Each tenant
  // with room gives its next due jobs (up to its room) from its own index
  // range, so only jobs that may be claimed are read; the best `rest` of
  // them in claim order are claimed. (Phase 1's picks are running now.)
  std::set<std::string> tenants;
  {
    auto st = db.prepare(kPendingTenantsSql);
    st->bind(1, effect);
    while (st->step()) tenants.insert(st->col_text(0));
  }
  // Tenants whose first jobs this transaction inserted (counts not flushed).
  for (const auto &[k, v] : cd.rows)
    if (k.first == effect && v.pending > 0) tenants.insert(k.second);
  std::vector<Candidate> more;
  for (const auto &t : tenants) {
    int r = std::min(room(t), rest);
    if (r <= 0) continue;
    auto st = db.prepare(kTenantCandidatesSql);
    st->bind(1, effect).bind(2, t).bind(3, now).bind(4, r);
    while (st->step())
      more.push_back(Candidate{st->col_int(0), st->col_text(1), st->col_int(2), st->col_int(3)});
  }
  if (static_cast<int>(more.size()) > rest) {
    std::partial_sort(more.begin(), more.begin() + rest, more.end());
    more.resize(rest);
  }
  claim_ids(db, cd, boot, now, lease_until, more, out);
  return out;
}

std::vector<std::pair<int64_t, int>> renew(Db &db, const std::string &boot, int64_t lease_until,
                                           const std::string &held_pairs_json) {
  auto st = db.prepare(kRenewSql);
  st->bind(1, lease_until).bind(2, boot).bind(3, held_pairs_json);
  std::vector<std::pair<int64_t, int>> out;
  while (st->step()) out.emplace_back(st->col_int(0), static_cast<int>(st->col_int(1)));
  return out;
}

void unclaim(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt) {
  auto st = db.prepare(kUnclaimSql);
  st->bind(1, id).bind(2, boot).bind(3, attempt);
  g_rows_unclaimed.fetch_add(count_rows(*st, cd, 1, -1), std::memory_order_relaxed);
}

int64_t interrupt_owner(Db &db, CountDeltas &cd, const std::string &owner, int64_t now,
                        const char *why, bool count) {
  {
    auto st = db.prepare(kInterruptOwnerHistorySql);
    st->bind(1, now).bind(2, owner).bind(3, why).exec();
  }
  auto st = db.prepare(count ? kInterruptOwnerSql : kReleaseOwnerSql);
  st->bind(1, now).bind(2, owner);
  return count_rows(*st, cd, 1, -1, 1);
}

int64_t reclaim_expired(Db &db, CountDeltas &cd, const std::string &boot, int64_t now,
                        const std::string &held_ids_json) {
  {
    auto st = db.prepare(kReclaimHistorySql);
    st->bind(1, now).bind(2, boot).bind(3, held_ids_json).exec();
  }
  auto st = db.prepare(kReclaimSql);
  st->bind(1, now).bind(2, boot).bind(3, held_ids_json);
  return count_rows(*st, cd, 1, -1, 1);
}

bool dead_letter_claimed(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt,
                         int64_t now, const std::string &reason) {
  {
    auto st = db.prepare(kDeadClaimedSql);
    st->bind(1, id).bind(2, boot).bind(3, attempt).bind(4, reason).bind(5, now).exec();
    if (db.changes() != 1) return false;
  }
  delete_dead_row(db, cd, id);
  return true;
}

}  // namespace lease

// ------------------------------------------------------------- BootLock

int boot_slot_held(const std::string &db_path, int64_t slot) {
  std::string p = db_path + "-wfboots";
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(slot);
  fl.l_len = 1;
  fl.l_pid = 0;
  int rc = fcntl(fd, F_OFD_GETLK, &fl);
  ::close(fd);  // an OFD test lock: closing this descriptor releases nothing of others
  if (rc != 0) return -1;
  return fl.l_type != F_UNLCK ? 1 : 0;
}

BootLock::~BootLock() { close(); }

void BootLock::open(const std::string &db_path) {
  path_ = db_path + "-wfboots";
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0)
    fail(WF_EIO, "cannot open or create the liveness lock file \"" + path_ +
                     "\": " + std::error_code(errno, std::generic_category()).message());
}

// Errors that say the file system (e.g. some network file systems) does not
// do OFD locks: remembered, and the engine works without the liveness lock.
bool BootLock::unsupported(int err) {
  if (err == EINVAL || err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS) usable_ = false;
  return !usable_;
}

int BootLock::held_by_other(int64_t slot) {
  if (!usable_) return -1;
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(slot);
  fl.l_len = 1;
  fl.l_pid = 0;
  if (fcntl(fd_, F_OFD_GETLK, &fl) != 0) {
    int err = errno;
    if (unsupported(err)) return -1;
    fail(WF_EIO, "liveness lock file \"" + path_ + "\": F_OFD_GETLK failed: " +
                     std::error_code(err, std::generic_category()).message());
  }
  return fl.l_type != F_UNLCK ? 1 : 0;
}

int64_t BootLock::acquire(const std::vector<int64_t> &taken) {
  if (!usable_) return -1;
  for (int64_t s = 0; s < static_cast<int64_t>(taken.size()) + 4096; ++s) {
    if (std::find(taken.begin(), taken.end(), s) != taken.end()) continue;
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(s);
    fl.l_len = 1;
    fl.l_pid = 0;
    if (fcntl(fd_, F_OFD_SETLK, &fl) == 0) {
      slot_ = s;
      return s;
    }
    int err = errno;
    if (err == EAGAIN || err == EACCES) continue;
    if (unsupported(err)) return -1;
    fail(WF_EIO, "liveness lock file \"" + path_ + "\": F_OFD_SETLK failed: " +
                     std::error_code(err, std::generic_category()).message());
  }
  fail(WF_EIO, "liveness lock file \"" + path_ + "\": no free slot");
}

void BootLock::close() {
  if (fd_ >= 0) ::close(fd_);  // releases our lock (unless a forked child shares it)
  fd_ = -1;
  slot_ = -1;
}

}  // namespace wf
