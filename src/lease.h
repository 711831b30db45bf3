// lease: the states of jobs and attempts, every lease transition of a job row
// (claim, renew, release, interrupt, reclaim, dead letter at claim), written
// once, and the liveness lock that tells engines on one host whether another
// engine's boot is still alive. See docs/semantics.md, "Crash safety and
// leases" and "Rules for hosts".
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "store.h"

namespace wf {

// wf_jobs.state. The SQL of this module spells them as literals (0 ready,
// 1 running: the partial indexes wf_jobs_claim / wf_jobs_due / wf_jobs_lease
// need literals to be usable). 2 (schema version 13): ready, but not yet in
// wf_jobs_claim / wf_jobs_tenant: a job due at once that a synchronous
// wf_enqueue left above the counts watermark (see CountDeltas). Only rows
// above W are ever in state 2; the transaction that counts them moves them
// to 0 (count_catch_up, flush_counts), before any claim reads the index.
enum class JobState : int { kReady = 0, kRunning = 1, kUnindexed = 2 };

// The life of one attempt handed to a provider (JobCtx::state).
enum class AttemptState : int {
  kRunning = 0,   // dispatched; the host holds the handle; the engine counts it
  kReported = 1,  // the host completed it while it was running (outcome queued)
  kTimedOut = 2,  // the engine gave up (timeout); the host still holds the handle
  kLost = 3,      // the lease is no longer ours (reclaimed elsewhere, close)
  kReleased = 4,  // the host let go of a timed-out or lost handle
};

namespace lease {

// Maintained job counts (wf_job_counts: one row per (effect, tenant) with its
// pending (state 0, ready or scheduled) and running (state 1) jobs), so that
// wf_stats / wf_metrics never count wf_jobs. Every statement that inserts,
// deletes or changes the state of wf_jobs rows adds its changes here; the
// owner of the transaction writes them with flush_counts just before COMMIT
// (one row written per key touched, not one per row). Deltas of a savepoint
// that is rolled back are dropped with it (WriteCtx::merge only on success).
//
// The watermark (schema version 13): wf_job_counts is exact for the rows
// with id <= W (wf_meta 'counts_through'); a row above W is in no count,
// whatever its state. Ids only rise (next_job_id), so every new row starts
// above W. A transaction that only inserts new jobs (a synchronous
// wf_enqueue) may leave its rows above W and write no count at all, while
// the rows above W stay few (kCountTailMax); every other write transaction
// first adds the rows above W to its deltas (count_catch_up), so that its
// own changes to them are counted once, and moves W past every id at its
// flush. Readers add the rows above W themselves (count_tail).
struct CountDelta {
  int64_t pending = 0, running = 0;
  // Not stored: for the metrics (jobs inserted, attempts interrupted).
  int64_t enqueued = 0, interrupted = 0;
};
struct CountDeltas {
  std::map<std::pair<std::string, std::string>, CountDelta> rows;  // (effect, tenant)
  // The largest id of a wf_jobs row the transaction deleted (0: none).
  // flush_counts raises the id floor to it (wf_meta 'job_id_floor'): new ids
  // are max(max(id), floor) + 1, so that an id is never given twice although
  // wf_jobs has no AUTOINCREMENT (schema version 11, next_job_id).
  int64_t deleted_max = 0;
  // The smallest id next_job_id gave in the transaction (0: none): the rows
  // of the transaction's own inserts are those from here on.
  int64_t first_new = 0;
  // W as the transaction read it (INT64_MAX: the file has none), once
  // through_known (read by next_job_id or count_catch_up).
  bool through_known = false;
  int64_t through = 0;
  // Set by count_catch_up (the transaction's own context only): the rows
  // above `through` are in `rows`; tail_seen: there were some.
  bool caught_up = false;
  bool tail_seen = false;
  bool empty() const { return rows.empty() && deleted_max == 0 && first_new == 0; }
  void clear() {
    rows.clear();
    deleted_max = 0;
    first_new = 0;
    through_known = false;
    through = 0;
    caught_up = false;
    tail_seen = false;
  }
};
// The most rows a transaction that only inserts leaves above W. The call
// that finds this many catches up in its own commit (a few pages more): at
// 256 that is 0.4% of the synchronous calls, out of their p99 (at 128 it was
// 0.8%, most of the slowest 1% of a paced wf_enqueue).
constexpr int64_t kCountTailMax = 256;
// The largest job (payload, metadata and key bytes) left out of the claim
// indexes (state 2). The catch-up rewrites each such row once; bounded so,
// its commit rewrites at most ~128 KiB of rows, and a larger row, a page or
// more of its own, gains little from skipping an index page.
constexpr size_t kUnindexedBytesMax = 512;
// Every DELETE FROM wf_jobs calls this with the ids it deletes (or may).
inline void note_deleted(Db &db, CountDeltas &d, int64_t id) {
  d.deleted_max = std::max(d.deleted_max, id);
  db.deleted_job_id_max = std::max(db.deleted_job_id_max, id);
}
inline void count_add(CountDeltas &d, const std::string &effect, const std::string &tenant,
                      int64_t pending, int64_t running, int64_t enqueued = 0,
                      int64_t interrupted = 0) {
  auto &c = d.rows[{effect, tenant}];
  c.pending += pending;
  c.running += running;
  c.enqueued += enqueued;
  c.interrupted += interrupted;
}
void count_merge(CountDeltas &into, const CountDeltas &from);
// W (wf_meta 'counts_through'), as the caller's transaction sees it; a file
// without it (a read-only engine on an older schema) has every row counted.
int64_t counts_through(Db &db);
// At the start of a write transaction that may change existing wf_jobs rows
// (before any statement does): adds the rows above W to `d`.
void count_catch_up(Db &db, CountDeltas &d);
// Writes the deltas into wf_job_counts (in the caller's transaction) and
// clears them; rows that reach zero are deleted. Raises the id floor to the
// largest deleted id, and W past every id. A transaction that did not catch
// up has only inserted: with `may_defer` and no more than kCountTailMax rows
// above W after it, it writes no count (its rows stay above W); otherwise it
// adds the rows above W that are not its own first.
void flush_counts(Db &db, CountDeltas &d, bool may_defer = false);
// Calls fn(effect, tenant, state, run_at) for each row above W (in the
// caller's transaction): what a reader of wf_job_counts adds (and a reader
// of wf_jobs_claim, for the rows in state 2).
void count_tail(
    Db &db, const std::function<void(const std::string &, const std::string &, int, int64_t)> &fn);
// Whether `id`, given by next_job_id in a transaction that may defer (see
// flush_counts), may be inserted in state 2: it stays within kCountTailMax
// of W, and its row (`bytes` of payload, metadata and key) is small.
inline bool may_leave_unindexed(const CountDeltas &d, int64_t id, size_t bytes) {
  return bytes <= kUnindexedBytesMax && d.through_known && d.through != INT64_MAX &&
         id - d.through <= kCountTailMax;
}
// The id for the next wf_jobs row, inside a write transaction: one more than
// the largest id in the table or ever deleted from it (the floor). Ids are
// given explicitly by every INSERT INTO wf_jobs (a row with its own id, as a
// requeued dead letter, keeps it). `d`, when given, records the first id of
// the transaction (CountDeltas::first_new) and W. `give`: the caller uses the
// id (false: it only wants the bound, as flush_counts does). Between the
// engine's own commits it answers from Db::ids when nothing changed the file.
int64_t next_job_id(Db &db, CountDeltas *d = nullptr, bool give = true);

// Schema 12: only the jobs of effects marked in wf_capped_effects (those
// registered with a tenant_concurrency, ever) have capped = 1 and are in
// wf_jobs_tenant. Whether `effect` is marked (as the caller's transaction
// sees it): every INSERT INTO wf_jobs sets capped from this.
bool is_capped(Db &db, const std::string &effect);
// Marks `effect` and sets capped on the jobs it has, in the caller's write
// transaction; returns whether it was not marked before. The first time this
// reads the effect's ready jobs (once per file and effect); later calls read
// one row.
bool mark_capped(Db &db, const std::string &effect);

// One claimed row, as RETURNING gives it.
struct Claimed {
  int64_t id = 0;
  std::string tenant, effect, key, payload, metadata, origin;
  int attempt = 0, failures = 0, interruptions = 0, priority = 0;
  bool has_max_attempts = false;
  int64_t max_attempts = 0;
  int64_t run_at = 0;
};

// ready → running for up to `limit` due jobs of `effect`, in claim order
// (priority DESC, run_at, id).
std::vector<Claimed> claim(Db &db, CountDeltas &cd, const std::string &boot, int64_t now,
                           int64_t lease_until, const std::string &effect, int limit);
// The same under tenant_concurrency `cap`: no tenant gets more than
// cap - inflight[tenant] jobs (the claim order holds among the jobs that may
// be claimed), and tenants at their limit are not read beyond a bounded head
// of the effect's claim order (then each tenant with room is read from its
// own range of wf_jobs_tenant).
std::vector<Claimed> claim_capped(Db &db, CountDeltas &cd, const std::string &boot, int64_t now,
                                  int64_t lease_until, const std::string &effect, int limit,
                                  int cap, const std::map<std::string, int> &inflight);
// Rows moved to running by claims / back to ready by unclaim, process-wide
// (tests count rewrites with them).
extern std::atomic<int64_t> g_rows_claimed, g_rows_unclaimed;

// Renews the leases of the held attempts ((id, attempt) pairs as a JSON array
// of [id, attempt]); returns the pairs that are still ours. A pair missing
// from the result is a lost lease (another engine reclaimed the job).
std::vector<std::pair<int64_t, int>> renew(Db &db, const std::string &boot, int64_t lease_until,
                                           const std::string &held_pairs_json);

// running → ready for a claimed attempt that was never handed to a provider
// (the claim is undone: attempts - 1, nothing recorded).
void unclaim(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt);

// running → ready for every job leased by `owner` (a boot that stopped, or
// this engine at close): the attempt is recorded as interrupted with `why`
// and, with `count` (a boot that stopped), counted in wf_jobs.interruptions
// (not against max_attempts); a graceful close passes false. The jobs are due
// at once. Returns how many jobs were returned.
int64_t interrupt_owner(Db &db, CountDeltas &cd, const std::string &owner, int64_t now,
                        const char *why, bool count = true);

// running → ready for expired leases of other owners, and of this owner for
// jobs it does not hold (held ids: JSON array): recorded and counted as
// interrupted. Returns how many.
int64_t reclaim_expired(Db &db, CountDeltas &cd, const std::string &boot, int64_t now,
                        const std::string &held_ids_json);

// running (claimed by `boot` as `attempt`, never dispatched) → dead letter
// with `reason`; the undelivered claim is not counted as an attempt (the
// history already says why). Returns false if the row is not ours.
bool dead_letter_claimed(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt,
                         int64_t now, const std::string &reason);

// Outcomes of an attempt this engine ran as (boot, attempt); each is a
// compare-and-set and returns false (changing nothing) when the lease is no
// longer ours.
// running → gone (completed).
bool finish_done(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt);
// The same for eight first attempts at once, in one statement (the rows
// not ours are left alone).
void finish_done8(Db &db, CountDeltas &cd, const std::string &boot, const int64_t *ids);
// running → dead letter with `reason` (the failure is counted).
bool finish_dead(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt,
                 int64_t now, const std::string &reason);
// running → ready at `run_at` (the failure is counted).
bool finish_retry(Db &db, CountDeltas &cd, const std::string &boot, int64_t id, int attempt,
                  int64_t run_at, const std::string &error);

// Ready jobs of the effects in `effects`: is one due at `now`; the earliest
// run_at after `now` (INT64_MAX: none). One indexed lookup per effect
// (wf_jobs_due is on (effect, run_at)): other effects' rows are never read.
bool any_due(Db &db, int64_t now, const std::vector<std::string> &effects);
int64_t next_due(Db &db, int64_t now, const std::vector<std::string> &effects);

}  // namespace lease

// Liveness of engines on one host, across PID namespaces: each live engine
// holds an OFD lock (fcntl F_OFD_SETLK) on one byte of a sidecar file next to
// the database ("<db>-wfboots", mode 0600) at the offset of its slot (stored
// in wf_boots.lock_slot). The kernel releases the lock when the last file
// descriptor of its open file description is closed, i.e. when the engine
// closes or its process dies (and every process that inherited the
// descriptor across fork() has exited or closed it).
// From another process that only reads (wfctl): 1 when some process holds
// `slot` of `<db_path>-wfboots`, 0 when nobody does, -1 when it cannot tell
// (no such file, no OFD locks). Never creates the file.
int boot_slot_held(const std::string &db_path, int64_t slot);

class BootLock {
 public:
  BootLock() = default;
  ~BootLock();
  BootLock(const BootLock &) = delete;
  BootLock &operator=(const BootLock &) = delete;
  // Opens (creating, 0600) the sidecar file of `db_path`.
  void open(const std::string &db_path);
  // 1 when some open file description other than ours holds `slot`, 0 when
  // nobody does, -1 when the file system does not support OFD locks.
  int held_by_other(int64_t slot);
  // Takes the first slot not in `taken` that nobody holds and returns it;
  // -1 when the file system does not support OFD locks (liveness then rests
  // on heartbeats and, on this host, the pid).
  int64_t acquire(const std::vector<int64_t> &taken);
  void close();
  int64_t slot() const { return slot_; }

 private:
  bool unsupported(int err);
  int fd_ = -1;
  bool usable_ = true;
  int64_t slot_ = -1;
  std::string path_;
};

}  // namespace wf
