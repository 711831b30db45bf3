// Retention and vacuum: the maintenance thread. It removes rows that the
// retention windows (options retain_*_ms, dedupe_window_ms) let go and gives
// free pages back to the file system (incremental auto-vacuum). Every step is
// a short request through the writer's queue, so it is serialised with every
// other write and never holds the write lock for long: a purge batch touches
// at most kBatchRows rows and stops after about kBatchMaxUs, a vacuum step
// frees at most kVacuumStep pages.
// It runs from wf_open to wf_close, whether or not wf_start was called.
//
// What each window lets go (docs/operations.md, "Retention and vacuum"):
// - wf_done_keys: rows past expires_at (dedupe_window_ms after completion);
// - wf_dead: dead letters older than retain_dead_ms (dead_at), with their
//   attempt history; never a parked saga event whose instance still waits
//   behind it (its inbox row is parked);
// - wf_attempts: history of jobs that are no longer pending (dead letters,
//   history left behind) older than retain_attempts_ms (ended_at);
// - wf_sagas + wf_saga_log: instances done for retain_sagas_ms (updated_at)
//   with no event left in their queue; the log goes first (newest entry
//   first), the instance row last, so a new instance of the same correlation
//   id never meets a stale log;
// - wf_events: events older than retain_events_ms (received_at) that no
//   instance needs: none waits in a saga inbox (pending or parked) and none is
//   in the applied-event log of an instance that is kept.
#include <chrono>

#include "engine.h"

namespace wf {

namespace {

constexpr int64_t kBatchRows = 500;      // rows visited or removed per purge batch
constexpr int64_t kBatchMaxUs = 4000;    // and at most about this long in the writer
constexpr int64_t kVacuumStep = 256;     // pages per incremental_vacuum step
constexpr int64_t kVacuumMinFree = 256;  // below this many free pages: no vacuum
constexpr int64_t kVacuumKeepFree = 64;  // a vacuum pass stops at this many
// The event cursor goes back to the first event this often, so that events
// skipped because an inbox row still referred to them are looked at again.
constexpr int64_t kEventRescanMs = 600000;

const char *kPurgeKeys =
    "DELETE FROM wf_done_keys WHERE (tenant, key) IN (SELECT tenant, key FROM wf_done_keys "
    "WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)";
const char *kDeadCandidates =
    "SELECT id, origin, dead_at FROM wf_dead WHERE dead_at < ?1 AND (dead_at, id) > (?2, ?3) "
    "ORDER BY dead_at, id LIMIT ?4";
const char *kParkedInbox = "SELECT 1 FROM wf_saga_inbox WHERE seq = ?1 AND state = 2";
const char *kDeleteDead = "DELETE FROM wf_dead WHERE id = ?1 AND dead_at < ?2";
const char *kDeleteJobAttempts =
    "DELETE FROM wf_attempts WHERE job_id = ?1 AND NOT EXISTS (SELECT 1 FROM wf_jobs WHERE id = "
    "?1)";
const char *kAttemptCandidates =
    "SELECT rowid, ended_at, job_id FROM wf_attempts WHERE ended_at < ?1 AND (ended_at, rowid) > "
    "(?2, ?3) ORDER BY ended_at, rowid LIMIT ?4";
const char *kJobPending = "SELECT 1 FROM wf_jobs WHERE id = ?1";
const char *kDeleteAttempt = "DELETE FROM wf_attempts WHERE rowid = ?1";
const char *kSagaCandidates =
    "SELECT updated_at, tenant, saga, correlation_id FROM wf_sagas INDEXED BY wf_sagas_done "
    "WHERE status = 'done' AND updated_at < ?1 AND (updated_at, tenant, saga, correlation_id) > "
    "(?2, ?3, ?4, ?5) ORDER BY updated_at, tenant, saga, correlation_id LIMIT ?6";
const char *kSagaQueued =
    "SELECT 1 FROM wf_saga_inbox WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3 LIMIT 1";
const char *kSagaLogTail =
    "SELECT n, event_seq FROM wf_saga_log WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3 "
    "ORDER BY n DESC LIMIT ?4";
const char *kDeleteLogEntry =
    "DELETE FROM wf_saga_log WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3 AND n = ?4";
const char *kDeleteSaga =
    "DELETE FROM wf_sagas WHERE tenant = ?1 AND saga = ?2 AND correlation_id = ?3 AND "
    "status = 'done' AND updated_at < ?4 AND NOT EXISTS (SELECT 1 FROM wf_saga_log WHERE "
    "tenant = ?1 AND saga = ?2 AND correlation_id = ?3)";
const char *kDeleteUnneededEvent =
    "DELETE FROM wf_events WHERE seq = ?1 AND received_at < ?2 AND NOT EXISTS (SELECT 1 FROM "
    "wf_saga_log WHERE event_seq = ?1) AND NOT EXISTS (SELECT 1 FROM wf_saga_inbox WHERE "
    "event_seq = ?1)";
const char *kEventCandidates =
    "SELECT seq, received_at FROM wf_events WHERE seq > ?1 ORDER BY seq LIMIT ?2";
const char *kEventNeeded =
    "SELECT EXISTS (SELECT 1 FROM wf_saga_inbox WHERE event_seq = ?1) OR EXISTS (SELECT 1 FROM "
    "wf_saga_log WHERE event_seq = ?1)";
const char *kDeleteEvent = "DELETE FROM wf_events WHERE seq = ?1";

const char *const kAllStatements[] = {
    kPurgeKeys,         kDeadCandidates, kParkedInbox,   kDeleteDead,          kDeleteJobAttempts,
    kAttemptCandidates, kJobPending,     kDeleteAttempt, kSagaCandidates,      kSagaQueued,
    kSagaLogTail,       kDeleteLogEntry, kDeleteSaga,    kDeleteUnneededEvent, kEventCandidates,
    kEventNeeded,       kDeleteEvent};

int64_t cutoff(int64_t now, int64_t window) { return window > 0 ? now - window : INT64_MIN; }

// Where each stage of a pass has got to. The dead-letter, attempt and saga
// cursors start over with each pass; the event cursor lasts (see
// kEventRescanMs).
struct Cursors {
  int64_t dead_at = INT64_MIN, dead_id = INT64_MIN;
  int64_t att_ended = INT64_MIN, att_rowid = INT64_MIN;
  int64_t saga_updated = INT64_MIN;
  std::string saga_tenant, saga_name, saga_corr;
  int64_t event_seq = 0;
  bool keys_done = false, dead_done = false, att_done = false, sagas_done = false,
       events_done = false;
  bool all_done() const { return keys_done && dead_done && att_done && sagas_done && events_done; }
};

int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

// One purge batch in the writer's transaction: at most kBatchRows rows
// visited or removed, for about kBatchMaxUs at most. `c` is a copy the batch
// may advance (a request can run more than once: the caller keeps it only
// after the commit). Stages run in order; one cut short by the budget goes on
// in the next batch.

int64_t purge_batch(WriteCtx &w, const Options &opt, Cursors &c) {
  Db &db = w.db;
  int64_t budget = kBatchRows, removed = 0;
  // One row visited or removed; past the time limit the budget is spent.
  const int64_t deadline = now_us() + kBatchMaxUs;
  auto spend = [&budget, deadline] {
    --budget;
    if (now_us() > deadline) budget = 0;
  };
  const int64_t ev_cut = cutoff(w.now, opt.retain_events_ms);
  // Expired dedupe keys.
  if (!c.keys_done) {
    auto st = db.prepare(kPurgeKeys);
    st->bind(1, w.now).bind(2, budget).exec();
    int64_t n = db.changes();
    removed += n;
    budget -= n;
    if (budget > 0) c.keys_done = true;
  }
  // Dead letters (and their history).
  if (!c.dead_done && opt.retain_dead_ms == 0) c.dead_done = true;
  if (!c.dead_done && budget > 0) {
    struct Cand {
      int64_t id, dead_at;
      std::string origin;
    };
    std::vector<Cand> cands;
    {
      auto st = db.prepare(kDeadCandidates);
      st->bind(1, cutoff(w.now, opt.retain_dead_ms)).bind(2, c.dead_at).bind(3, c.dead_id);
      st->bind(4, budget);
      while (st->step()) cands.push_back({st->col_int(0), st->col_int(2), st->col_text(1)});
    }
    if (static_cast<int64_t>(cands.size()) < budget) c.dead_done = true;
    for (auto &d : cands) {
      if (budget <= 0) {
        c.dead_done = false;  // cut by the time limit
        break;
      }
      spend();
      c.dead_at = d.dead_at;
      c.dead_id = d.id;
      if (!d.origin.empty()) {
        // A parked saga event holds its instance until the operator
        // re-queues or purges it: kept while its inbox row is parked.
        json o = json::parse(d.origin, nullptr, false);
        if (o.is_object() && o.value("kind", "") == "saga_event" && o.contains("inbox_seq") &&
            o["inbox_seq"].is_number_integer()) {
          auto st = db.prepare(kParkedInbox);
          st->bind(1, o["inbox_seq"].get<int64_t>());
          if (st->step()) continue;
        }
      }
      {
        auto st = db.prepare(kDeleteJobAttempts);
        st->bind(1, d.id).exec();
        removed += db.changes();
      }
      auto st = db.prepare(kDeleteDead);
      st->bind(1, d.id).bind(2, cutoff(w.now, opt.retain_dead_ms)).exec();
      removed += db.changes();
    }
  }
  // Attempt history of jobs no longer pending.
  if (!c.att_done && opt.retain_attempts_ms == 0) c.att_done = true;
  if (!c.att_done && budget > 0) {
    struct Cand {
      int64_t rowid, ended, job;
    };
    std::vector<Cand> cands;
    {
      auto st = db.prepare(kAttemptCandidates);
      st->bind(1, cutoff(w.now, opt.retain_attempts_ms)).bind(2, c.att_ended).bind(3, c.att_rowid);
      st->bind(4, budget);
      while (st->step()) cands.push_back({st->col_int(0), st->col_int(1), st->col_int(2)});
    }
    if (static_cast<int64_t>(cands.size()) < budget) c.att_done = true;
    for (auto &a : cands) {
      if (budget <= 0) {
        c.att_done = false;
        break;
      }
      spend();
      c.att_ended = a.ended;
      c.att_rowid = a.rowid;
      {
        auto st = db.prepare(kJobPending);
        st->bind(1, a.job);
        if (st->step()) continue;  // a pending job's history stays with it
      }
      auto st = db.prepare(kDeleteAttempt);
      st->bind(1, a.rowid).exec();
      removed += db.changes();
    }
  }
  // Finished saga instances: log (with the events only it needed), then row.
  if (!c.sagas_done && opt.retain_sagas_ms == 0) c.sagas_done = true;
  if (!c.sagas_done && budget > 0) {
    const int64_t cut = cutoff(w.now, opt.retain_sagas_ms);
    struct Cand {
      int64_t updated;
      std::string tenant, saga, corr;
    };
    std::vector<Cand> cands;
    const int64_t lim = budget;
    auto passed = [&c](const Cand &s) {
      c.saga_updated = s.updated;
      c.saga_tenant = s.tenant;
      c.saga_name = s.saga;
      c.saga_corr = s.corr;
    };
    {
      auto st = db.prepare(kSagaCandidates);
      st->bind(1, cut).bind(2, c.saga_updated).bind(3, c.saga_tenant).bind(4, c.saga_name);
      st->bind(5, c.saga_corr).bind(6, lim);
      while (st->step())
        cands.push_back({st->col_int(0), st->col_text(1), st->col_text(2), st->col_text(3)});
    }
    bool cut_short = false;
    for (auto &s : cands) {
      if (budget <= 0) {
        cut_short = true;
        break;
      }
      spend();
      {
        auto st = db.prepare(kSagaQueued);
        st->bind(1, s.tenant).bind(2, s.saga).bind(3, s.corr);
        if (st->step()) {
          // Events still wait in its queue (they are consumed without being
          // applied, or a start event would see it done): not yet.
          passed(s);
          continue;
        }
      }
      std::vector<std::pair<int64_t, int64_t>> log;  // (n, event_seq), newest first
      {
        auto st = db.prepare(kSagaLogTail);
        st->bind(1, s.tenant).bind(2, s.saga).bind(3, s.corr).bind(4, budget + 1);
        while (st->step()) log.emplace_back(st->col_int(0), st->col_int(1));
      }
      bool whole = static_cast<int64_t>(log.size()) <= budget;
      if (!whole) log.resize(static_cast<size_t>(std::max<int64_t>(budget, 0)));
      size_t k = 0;
      for (; k < log.size() && budget > 0; ++k) {
        auto del = db.prepare(kDeleteLogEntry);
        del->bind(1, s.tenant).bind(2, s.saga).bind(3, s.corr).bind(4, log[k].first).exec();
        removed += db.changes();
        spend();
        if (opt.retain_events_ms > 0) {
          auto de = db.prepare(kDeleteUnneededEvent);
          de->bind(1, log[k].second).bind(2, ev_cut).exec();
          removed += db.changes();
        }
      }
      if (!whole || k < log.size()) {
        cut_short = true;  // the rest of its log in the next batch
        break;
      }
      auto del = db.prepare(kDeleteSaga);
      del->bind(1, s.tenant).bind(2, s.saga).bind(3, s.corr).bind(4, cut).exec();
      removed += db.changes();
      passed(s);
    }
    if (!cut_short && static_cast<int64_t>(cands.size()) < lim) c.sagas_done = true;
  }
  // Events no instance needs, oldest first; the scan stops at the first event
  // inside the window.
  if (!c.events_done && opt.retain_events_ms == 0) c.events_done = true;
  if (!c.events_done && budget > 0) {
    std::vector<std::pair<int64_t, int64_t>> cands;  // (seq, received_at)
    {
      auto st = db.prepare(kEventCandidates);
      st->bind(1, c.event_seq).bind(2, budget);
      while (st->step()) cands.emplace_back(st->col_int(0), st->col_int(1));
    }
    if (static_cast<int64_t>(cands.size()) < budget) c.events_done = true;
    for (auto &[seq, received] : cands) {
      if (received >= ev_cut) {
        c.events_done = true;
        break;
      }
      if (budget <= 0) {
        c.events_done = false;
        break;
      }
      spend();
      c.event_seq = seq;
      {
        auto st = db.prepare(kEventNeeded);
        st->bind(1, seq);
        if (st->step() && st->col_int(0) != 0) continue;
      }
      auto st = db.prepare(kDeleteEvent);
      st->bind(1, seq).exec();
      removed += db.changes();
    }
  }
  return removed;
}

}  // namespace

std::vector<const char *> retention_statements() {
  return std::vector<const char *>(std::begin(kAllStatements), std::end(kAllStatements));
}

struct Retention {
  std::thread th;
  std::atomic<std::thread::id> tid{};
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;      // GUARDED_BY(mu)
  std::mutex pass_mu;     // one pass at a time (the thread, or purge_now)
  Cursors persist;        // GUARDED_BY(pass_mu): the lasting event cursor
  int64_t rescan_at = 0;  // GUARDED_BY(pass_mu): monotonic, next event rescan
  bool failing = false;   // GUARDED_BY(pass_mu)
  int auto_vacuum = -1;   // GUARDED_BY(pass_mu): the file's mode, read once
};

namespace {

// Runs `fn` as one request through the writer and waits for its commit.
// Not durable: a purge that a power loss undoes runs again.
void through_writer(Engine &e, std::function<void(WriteCtx &)> fn) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int rc = WF_OK;
    std::string err;
  };
  auto wt = std::make_shared<Wait>();
  WriteReq r;
  r.fn = std::move(fn);
  r.savepoint = true;
  r.after = [wt](int rc, const std::string &err) {
    std::lock_guard<std::mutex> g(wt->mu);
    wt->rc = rc;
    wt->err = err;
    wt->done = true;
    wt->cv.notify_all();
  };
  e.submit(std::move(r));
  std::unique_lock<std::mutex> lk(wt->mu);
  wt->cv.wait(lk, [&] { return wt->done; });
  if (wt->rc != WF_OK) fail(wt->rc, wt->err);
}

// One whole pass: purge batches until every stage is done, then vacuum steps
// while the free list is large. Caller holds r.pass_mu.
int64_t run_pass(Engine &e, Retention &r, bool vacuum, const std::function<bool()> &stopping) {
  Cursors c;
  int64_t m = Engine::mono();
  if (m >= r.rescan_at) {
    r.persist.event_seq = 0;
    r.rescan_at = m + kEventRescanMs;
  }
  c.event_seq = r.persist.event_seq;
  int64_t total = 0;
  const Options &opt = e.opt;
  while (!c.all_done() && !stopping()) {
    Cursors next;
    int64_t removed = 0, us = 0;
    through_writer(e, [&](WriteCtx &w) {
      int64_t t0 = now_us();
      next = c;
      removed = purge_batch(w, opt, next);
      us = now_us() - t0;
    });
    c = next;
    r.persist.event_seq = c.event_seq;
    total += removed;
    e.n_purged_rows.fetch_add(removed, std::memory_order_relaxed);
    e.n_purge_batches.fetch_add(1, std::memory_order_relaxed);
    int64_t prev = e.purge_batch_max_us.load(std::memory_order_relaxed);
    while (us > prev && !e.purge_batch_max_us.compare_exchange_weak(prev, us)) {
    }
  }
  if (!vacuum) return total;
  if (r.auto_vacuum < 0) {
    through_writer(e, [&](WriteCtx &w) {
      auto st = w.db.prepare("PRAGMA auto_vacuum");
      r.auto_vacuum = st->step() ? static_cast<int>(st->col_int(0)) : 0;
    });
  }
  if (r.auto_vacuum != 2) return total;  // NONE or FULL: nothing to do here
  bool started = false;
  int64_t freed_total = 0;
  while (!stopping()) {
    int64_t freed = 0;
    bool more = false;
    through_writer(e, [&](WriteCtx &w) {
      freed = 0;
      more = false;
      auto fc = w.db.prepare("PRAGMA freelist_count");
      int64_t free_before = fc->step() ? fc->col_int(0) : 0;
      fc->reset();
      int64_t pages = 0;
      {
        auto pc = w.db.prepare("PRAGMA page_count");
        pages = pc->step() ? pc->col_int(0) : 0;
      }
      // Start only when the free list is large (at least kVacuumMinFree
      // pages and 1/16 of the file): free pages are reused by later writes,
      // and giving them back only to grow again costs I/O. Once started, go
      // down to kVacuumKeepFree.
      int64_t threshold = std::max(kVacuumMinFree, pages / 16);
      if (free_before <= (started ? kVacuumKeepFree : threshold)) return;
      w.db.exec("PRAGMA incremental_vacuum(256)");
      auto fc2 = w.db.prepare("PRAGMA freelist_count");
      int64_t free_after = fc2->step() ? fc2->col_int(0) : 0;
      freed = free_before - free_after;
      more = freed > 0 && free_after > kVacuumKeepFree;
    });
    static_assert(kVacuumStep == 256, "the PRAGMA above frees kVacuumStep pages");
    if (freed > 0) started = true;
    freed_total += freed;
    e.n_vacuumed_pages.fetch_add(freed, std::memory_order_relaxed);
    if (!more) break;
  }
  if (freed_total > 0 && e.ckpt_db) {
    // The file shrinks when a checkpoint has copied the whole WAL back: run
    // one now on the checkpointer's connection (serialised with its passes
    // by ckpt_run_mu; waking the thread is not enough, as a request that
    // arrives during its pass is dropped). A busy or failed pass is
    // harmless: a later checkpoint truncates the file.
    std::lock_guard<std::mutex> g(e.ckpt_run_mu);
    int wal = 0, done = 0;
    try {
      e.ckpt_db->checkpoint_passive(&wal, &done);
      e.ckpt_copied.store(done, std::memory_order_relaxed);
    } catch (const std::exception &) {
    }
  }
  return total;
}

}  // namespace

void Engine::start_maintenance() {
  retention = std::make_shared<Retention>();
  Retention &r = *retention;
  r.th = std::thread([this, &r] {
    r.tid = std::this_thread::get_id();
    auto stopping = [&r] {
      std::lock_guard<std::mutex> g(r.mu);
      return r.stop;
    };
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(r.mu);
        r.cv.wait_for(lk, std::chrono::milliseconds(opt.purge_interval_ms), [&] { return r.stop; });
        if (r.stop) return;
      }
      std::lock_guard<std::mutex> g(r.pass_mu);
      try {
        run_pass(*this, r, true, stopping);
        if (r.failing) log(WF_LOG_INFO, "retention purge succeeded again");
        r.failing = false;
      } catch (const std::exception &ex) {
        n_purge_failures.fetch_add(1, std::memory_order_relaxed);
        if (!r.failing)
          log(WF_LOG_WARN, "retention purge failed; retrying", json{{"error", ex.what()}});
        r.failing = true;
      }
    }
  });
}

void Engine::stop_maintenance() {
  if (!retention) return;
  {
    std::lock_guard<std::mutex> g(retention->mu);
    retention->stop = true;
  }
  retention->cv.notify_all();
  if (retention->th.joinable()) retention->th.join();
}

int64_t Engine::purge_now(bool vacuum) {
  Retention &r = *retention;
  std::lock_guard<std::mutex> g(r.pass_mu);
  // A caller's pass covers every event again.
  r.rescan_at = 0;
  return run_pass(*this, r, vacuum, [] { return false; });
}

}  // namespace wf
