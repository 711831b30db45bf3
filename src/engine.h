// engine: the writer thread (group commit), the relay loop thread (libuv) and
// the state they share. See src/README.md for the threading model.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "crypto.h"
#include "lease.h"
#include "metrics.h"
#include "store.h"
#include "util.h"

struct uv_loop_s;
struct uv_async_s;
struct uv_timer_s;

namespace wf {

struct Backoff {
  int64_t base_ms = 1000;
  int64_t cap_ms = 3600000;
  double multiplier = 2.0;
  bool jitter = true;  // full jitter: uniform in [0, computed]
  int64_t delay(int failures, std::mt19937_64 &rng) const;
};

struct Circuit {
  bool enabled = false;
  double failure_ratio = 0.5;
  int window = 20;
  int min_attempts = 10;
  int64_t cooldown_ms = 30000;
};

struct EffectPolicy {
  int64_t timeout_ms = 30000;
  int max_attempts = 0;  // 0: engine default
  std::optional<Backoff> backoff;
  int concurrency = 0;         // 0: unlimited (bounded by max_inflight)
  int tenant_concurrency = 0;  // 0: unlimited
  Circuit circuit;
  int max_interruptions = 0;      // 0: engine default
  int64_t abandon_after_ms = -1;  // -1: engine default
};

struct Options {
  bool durability_full = true;
  int busy_timeout_ms = 5000;
  int64_t lease_ms = 30000;
  int max_attempts = 25;
  Backoff backoff;
  int64_t dedupe_window_ms = 86400000;
  Limits limits;
  int max_inflight = 1000;
  int64_t poll_ms = 500;
  int64_t drain_timeout_ms = 10000;
  int64_t group_commit_wait_us = 200;
  int64_t checkpoint_pages = 500;  // background checkpoint threshold; 0 = SQLite's own
  // A ready job of an idle effect is written already claimed by this engine
  // (claim on insert, docs/options.md): one write less per job.
  bool claim_on_insert = true;
  int64_t tx_timeout_ms = 30000;      // a host transaction open longer is rolled back
  int max_interruptions = 5;          // interrupted attempts before the job is dead (`interrupted`)
  int64_t abandon_after_ms = 300000;  // a next attempt waits this long for a held handle
  std::string vfs;                    // SQLite VFS name ("" = default); fault-injection tests
  std::string encryption_key;         // 64 hex digits, or "" for none; never logged
  // Retention (docs/operations.md, "Retention and vacuum"); 0 = keep for ever.
  int64_t retain_events_ms = INT64_C(7) * 86400000;     // events no instance needs any more
  int64_t retain_sagas_ms = INT64_C(7) * 86400000;      // finished instances and their log
  int64_t retain_dead_ms = INT64_C(30) * 86400000;      // dead letters
  int64_t retain_attempts_ms = INT64_C(30) * 86400000;  // history of jobs no longer pending
  int64_t purge_interval_ms = 1000;                     // background purge pass period
  int64_t async_queue_max = 10000;                      // accepted async writes not yet called back
  int64_t async_queue_bytes = INT64_C(64) << 20;        // their documents' bytes
  // Inspection only (wfctl): no writer, no threads, no migration, no boot;
  // every write is refused with WF_ESTATE (src/read.cpp, docs/options.md).
  bool read_only = false;
  // Telemetry (docs/operations.md): job counters per tenant too (cardinality).
  bool metrics_by_tenant = false;
  // Admin HTTP endpoint (admin.cpp): "host:port" ("" = off), loopback only
  // unless admin_allow_remote.
  std::string admin_listen;
  bool admin_allow_remote = false;
  int admin_max_connections = 16;
  int64_t admin_idle_timeout_ms = 10000;
};

Options parse_options(const char *options_json);
// Removes the wf_boot_effects rows of boots no longer in wf_boots
// (lifecycle.cpp; in the transaction that removed them).
void forget_boot_effects(Db &db);
// The message of every write refused by an engine opened with read_only.
extern const char *const kReadOnlyRefusal;
EffectPolicy parse_policy(const char *policy_json, const Limits &lim);
// The policy keys of an already parsed object (other keys are ignored).
EffectPolicy parse_policy_doc(const json &doc);

// A job document decoded and validated at the API boundary.
struct NewJob {
  std::string tenant, effect, payload, metadata;
  std::string origin;  // saga reference (JSON) for jobs a saga emitted
  std::optional<std::string> key;
  int64_t priority = 0;
  int64_t run_at = 0;
  std::optional<int64_t> max_attempts;
};
NewJob decode_job(const json &doc, const Options &opt, int64_t now, const char *what);

// An event envelope decoded and validated at the API boundary.
struct NewEvent {
  std::string tenant, event_id, type, correlation_id;
  json envelope;  // normalized: all fields, occurred_at in ms
};
NewEvent decode_event(const json &doc, const Options &opt, int64_t now, const char *what);

struct NewSchedule {
  std::string tenant, key, cron, tz = "UTC", catch_up = "latest", target, body, origin;
  int64_t catch_up_max = 100;
  int64_t next_due = 0;
};
NewSchedule decode_schedule(const json &doc, const Options &opt, int64_t now, const char *what);

class Cron;
// What one firing pass does with a due schedule: the due times that fire now
// (oldest first) and the next due time (INT64_MAX: none, a one-shot or a cron
// that never fires again; the schedule is then removed). `cron` is null for a
// one-shot. Pure; saturating arithmetic at the int64 limits.
// Catch-up runs in chunks: at most `limit` due times fire per call, and
// `next` is then the first due time not fired yet (still <= now: the caller
// fires the rest in later transactions). "latest" and "none" find the latest
// due time <= now by a bounded search, never walking the missed ones. For
// "all", the oldest due times beyond the most recent `catch_up_max` are
// skipped by a search costing O(catch_up_max) next-time computations;
// `positioned` says the caller already skipped them for this catch-up
// (next_due lies in [start, latest] of an earlier plan), so none is needed.
struct FirePlan {
  std::vector<int64_t> fires;
  int64_t next = INT64_MAX;
  int64_t start = INT64_MIN;   // "all" after a skip search: first kept due time
  int64_t latest = INT64_MIN;  // ... and the latest due time <= now
  int64_t steps = 0;           // Cron::next_after calls made (work done)
};
FirePlan plan_firing(const Cron *cron, const std::string &catch_up, int64_t catch_up_max,
                     int64_t next_due, int64_t now, int64_t limit = INT64_MAX,
                     bool positioned = false);

// The saga pass's reads (saga.cpp); tests check their query plans.
extern const char *const kSagaFirstInstance;
extern const char *const kSagaNextInstance;
extern const char *const kSagaInstanceEvents;
extern const char *const kSagaInstanceState;

struct SagaDef {
  std::string name;
  std::set<std::string> start, on;
  std::vector<std::string> correlation;  // path into the envelope
  wf_saga_fn fn = nullptr;
  void *user = nullptr;
};

// A reducer's output, validated: effects decoded for the saga's tenant.
struct StepOutput {
  json state;
  bool done = false;
  std::vector<NewJob> commands;
  std::vector<NewSchedule> schedules;
  std::vector<std::string> cancels;
};
// Validates reducer output text; throws Error(WF_EINVAL/WF_ETOOBIG) naming
// the problem. With decode_effects false only state and done are read.
StepOutput decode_saga_output(const std::string &text, const Options &opt, const std::string &saga,
                              const std::string &tenant, const std::string &corr, const json &event,
                              int64_t now, bool decode_effects);

// Test-only failure injection inside saga step transactions.
extern std::atomic<int> g_fail_saga_step;

struct Engine;

// What a job handle knows of its engine. wf_close clears `e` (under the
// unique lock) before the engine is freed; completions hold the shared lock
// while they use the engine, so a handle outliving its engine never touches
// freed memory.
struct EngineLink {
  std::shared_mutex mu;
  Engine *e = nullptr;  // GUARDED_BY(mu)
};

// One attempt handed to a provider (the C API's wf_job). Its memory is owned
// by shared pointers: the engine's maps (in flight, held after timeout,
// deferred) and, while the host holds the handle, `host_ref` (a reference to
// itself, dropped when the host completes the handle). So a handle stays
// valid until the host completes it, whatever the engine did meanwhile.
struct JobCtx {
  std::shared_ptr<EngineLink> link;
  int64_t id;
  std::string id_str, tenant, effect, key, payload, metadata;
  int attempt;            // deliveries including this one (1-based)
  int failures;           // counted failures before this attempt
  int interruptions = 0;  // interrupted attempts before this one
  std::optional<int64_t> max_attempts;
  int64_t started_at;      // wall clock (stored in the attempt history)
  int64_t deadline;        // monotonic (Engine::mono), INT64_MAX for none
  int64_t held_since = 0;  // monotonic: when the engine gave up on the attempt
  int priority;
  int64_t run_at;
  std::string origin;
  // Telemetry (loop thread, set at dispatch): counters of the job's effect,
  // dispatch instant (monotonic us), the trace context stored with the job
  // (its metadata's traceparent / tracestate, "" if none) and its
  // correlation id; `metadata` then holds the attempt's (new span id).
  JobCounters *mc = nullptr;
  int64_t dispatch_us = 0;
  std::string traceparent, tracestate, correlation_id;
  std::atomic<AttemptState> state{AttemptState::kRunning};
  // Set at dispatch, taken (exactly once) by the host's completion.
  std::mutex host_mu;
  std::shared_ptr<JobCtx> host_ref;  // GUARDED_BY(host_mu)
};

// Handles the host still held when their engine was closed ("orphans"): kept
// in a process-wide registry until the host completes them, so they stay
// reachable (and valid) after the engine is gone.
void adopt_orphan(JobCtx *j);   // caller holds j->host_mu, j->host_ref set
void forget_orphan(JobCtx *j);  // after the host's completion took host_ref

struct EffectState;

struct ClaimResult {
  std::vector<std::shared_ptr<JobCtx>> jobs;
  bool any_full = false;  // some effect got all it asked for: claim again
  int64_t at = 0;         // the claim's instant (WriteCtx::now)
  // Effects whose claim found no more due jobs, with their unclaimed_gen
  // at the claim (claim on insert: the backlog they may clear).
  std::vector<std::pair<std::shared_ptr<EffectState>, int64_t>> drained;
};

// A job the writer inserted already claimed (claim on insert), with the
// effect whose credit it took.
// Move-only: one that is dropped before the loop took it (its transaction
// rolled back, or the loop stopped) gives its credit back.
struct InsertClaim {
  std::shared_ptr<JobCtx> job;
  std::shared_ptr<EffectState> eff;
  InsertClaim(std::shared_ptr<JobCtx> j, std::shared_ptr<EffectState> e)
      : job(std::move(j)), eff(std::move(e)) {}
  InsertClaim(InsertClaim &&o) noexcept = default;
  InsertClaim &operator=(InsertClaim &&o) noexcept {
    give_back();
    job = std::move(o.job);
    eff = std::move(o.eff);
    return *this;
  }
  InsertClaim(const InsertClaim &) = delete;
  InsertClaim &operator=(const InsertClaim &) = delete;
  ~InsertClaim() { give_back(); }
  void give_back();  // relay.cpp
};

// Writer-side context of one transaction.
struct WriteCtx {
  Db &db;
  int64_t now;
  bool ready_now = false;  // a job became ready (due now)
  int64_t next_due = INT64_MAX;
  bool saga_ready = false;  // a saga inbox row was added or unblocked
  int64_t next_sched = INT64_MAX;
  // Changes to wf_jobs rows, written to wf_job_counts before COMMIT.
  lease::CountDeltas counts = {};
  // Metrics of the transaction, added once it committed.
  int64_t events_submitted = 0, events_unmatched = 0, schedules_fired = 0;
  std::vector<int64_t> schedule_lateness_us = {};  // one per firing
  // Claim on insert: allowed in the writer's own transactions (not in a host
  // transaction); the jobs claimed so far, delivered after the commit or
  // their credit given back if it rolls back.
  bool may_claim = false;
  std::vector<InsertClaim> claimed = {};
  // The transaction only inserts (WriteReq::inserts_only): a job due at once
  // and not claimed may be left out of the claim indexes (state 2, lease.h).
  bool inserts_only = false;
  // Effects of which this transaction inserted a ready job unclaimed: no
  // later job of theirs is claimed on insert (in this transaction, and,
  // once it committed, until a claim found none left: unclaimed_gen).
  std::vector<std::shared_ptr<EffectState>> unclaimed = {};
  bool has_unclaimed(const EffectState *e) const {
    for (auto &u : unclaimed)
      if (u.get() == e) return true;
    return false;
  }
  // A savepoint's context starts from its transaction's.
  void start_sub(const WriteCtx &parent) {
    may_claim = parent.may_claim;
    inserts_only = parent.inserts_only;
    unclaimed = parent.unclaimed;
  }
  void merge(WriteCtx &o) {
    claimed.insert(claimed.end(), std::make_move_iterator(o.claimed.begin()),
                   std::make_move_iterator(o.claimed.end()));
    o.claimed.clear();
    for (auto &u : o.unclaimed)
      if (!has_unclaimed(u.get())) unclaimed.push_back(u);
    schedule_lateness_us.insert(schedule_lateness_us.end(), o.schedule_lateness_us.begin(),
                                o.schedule_lateness_us.end());
    events_submitted += o.events_submitted;
    events_unmatched += o.events_unmatched;
    schedules_fired += o.schedules_fired;
    ready_now |= o.ready_now;
    next_due = std::min(next_due, o.next_due);
    saga_ready |= o.saga_ready;
    next_sched = std::min(next_sched, o.next_sched);
    if (!o.counts.empty()) lease::count_merge(counts, o.counts);
  }
};

struct WriteReq {
  // Runs in the writer's transaction. It may run more than once (its batch is
  // run again when another bare request in it fails on its own data), so it
  // must reset whatever it fills outside the database.
  std::function<void(WriteCtx &)> fn;
  std::function<void(int rc, const std::string &err)> after;  // after commit/rollback
  bool durable = false;    // needs a durable commit before `after`
  bool savepoint = false;  // isolate failures of this request from the batch
  bool host_tx = false;    // hand the connection to a host transaction
  // Only inserts new jobs (wf_enqueue, wf_enqueue_batch; an asynchronous
  // enqueue, `job`, is one too): a batch of such requests alone may leave
  // the counts to a later transaction (lease::flush_counts, may_defer).
  bool inserts_only = false;
  // Gives at most one job id, from one lease::next_job_id call (wf_enqueue):
  // after it commits alone, the ids it noted are the file's (Db::ids).
  bool one_id = false;
  std::shared_ptr<struct HostTx> tx;
  // An asynchronous enqueue (wf_enqueue_async): consecutive ones in a batch
  // are inserted together, eight rows per statement (run_batch's first
  // pass), writing the result where these point instead of running `fn`.
  // All three point into the request that `fn` keeps alive.
  const struct NewJob *job = nullptr;
  int *job_rc = nullptr;
  std::string *job_id = nullptr;
  // A plain completion (first attempt, no key, no saga): consecutive ones
  // are deleted together, eight rows per statement, instead of running `fn`.
  int64_t done_id = 0;
};

// A host transaction owning the write connection. `mu` serialises every host
// call on it (from any thread, one at a time) with the writer's rollback at
// tx_timeout_ms; once `state` is not kOpen nothing of it touches the engine.
struct HostTx {
  Engine *engine;
  uint64_t fork_gen = 0;  // fork generation of the process that began it
  std::mutex mu;
  std::condition_variable cv;
  bool granted = false;
  int grant_rc = WF_OK;
  std::string grant_err;
  enum State { kOpen, kEnded, kTimedOut } state = kOpen;  // GUARDED_BY(mu)
  bool released = false;                                  // GUARDED_BY(mu): writer may go on
  std::atomic<std::thread::id> last_thread{};             // thread of the last call on it
  bool ready_now = false;                                 // GUARDED_BY(mu)
  int64_t next_due = INT64_MAX;                           // GUARDED_BY(mu)
  bool saga_ready = false;                                // GUARDED_BY(mu)
  int64_t next_sched = INT64_MAX;                         // GUARDED_BY(mu)
  lease::CountDeltas counts;                              // GUARDED_BY(mu): flushed at commit
  int64_t events_submitted = 0, events_unmatched = 0;     // GUARDED_BY(mu): metrics at commit
  bool failed = false;                                    // a statement failed with the tx doomed
  std::shared_ptr<HostTx> owner_ref;                      // the C handle's reference
};

// Incremented in the child of every fork() (pthread_atfork); an engine or a
// transaction from an older generation was inherited from the parent.
uint64_t fork_generation();
void install_fork_handlers();

namespace prov {
class Host;
class Provider;
}  // namespace prov

// A built-in provider registered for an effect (providers/builtin.cpp).
struct BuiltinSlot {
  struct Engine *engine = nullptr;
  std::unique_ptr<prov::Host> host;
  std::unique_ptr<prov::Provider> provider;  // destroyed before host
  bool attached = false;                     // loop thread only
  BuiltinSlot();
  ~BuiltinSlot();
};

struct EffectState {
  std::string name;
  EffectPolicy policy;
  wf_effect_fn fn = nullptr;
  void *user = nullptr;
  std::shared_ptr<BuiltinSlot> builtin;  // set for wf_effect_register_builtin
  // Written by the loop thread only; atomics so stats can read them.
  std::atomic<int> inflight{0};
  std::atomic<int> circuit_state{0};  // 0 closed, 1 open, 2 half-open
  std::atomic<int64_t> dispatched{0}, completed{0}, retried{0}, dead{0}, timeouts{0};
  // Loop thread only:
  std::unordered_map<std::string, int> tenant_inflight;
  std::deque<bool> window;  // recent outcomes, true = failure
  int64_t open_until = 0;
  bool probe_inflight = false;
  // Claim on insert (relay.cpp, "claim on insert"). The loop grants slots of
  // this effect to the writer, which fills them with ready jobs as it inserts
  // them (written claimed; handed to the loop after the commit):
  // insert_credit is what the writer may still take; granted (loop only)
  // counts the credit plus the jobs taken and not yet delivered, and is kept
  // out of the free slots of claims. Backlog: unclaimed_gen counts the
  // committed transactions that inserted a ready job of this effect unclaimed
  // (a host transaction's at once); a claim that found none left sets
  // cleared_gen to the count it saw. While they differ, a ready job may be
  // waiting and a newer one must not be claimed ahead of it.
  std::atomic<int> insert_credit{0};
  std::atomic<int64_t> unclaimed_gen{0}, cleared_gen{0};  // writer thread (atomic for the loop)
  int granted = 0;
};

// Outcome of an attempt, produced by the host or the engine.
struct Outcome {
  enum Kind { kComplete, kRetry, kFail, kTimeout, kZombieRelease } kind;
  std::string error;
  int64_t delay_ms = -1;
  std::string result;
  explicit Outcome(Kind k, std::string err = "", int64_t delay = -1, std::string res = "")
      : kind(k), error(std::move(err)), delay_ms(delay), result(std::move(res)) {}
};

struct Engine {
  explicit Engine(const std::string &path, Options opt);
  ~Engine();
  void open_body();       // the constructor's work after the logger started
  void open_read_only();  // open_body for the read_only option (read.cpp)

  // --- clock: now() is the wall clock (or the injected one) for stored
  // instants; mono() is a monotonic clock in ms for intervals (poll, lease
  // renewal, attempt timeouts, the grace of held handles).
  int64_t now() const;
  static int64_t mono();
  std::mutex clock_mu;
  wf_clock_fn clock_fn = nullptr;  // GUARDED_BY(clock_mu)
  void *clock_user = nullptr;      // GUARDED_BY(clock_mu)

  std::string path;
  Options opt;
  // Payload encryption at rest (null when no key is configured).
  std::unique_ptr<Cipher> cipher;
  std::string seal(const std::string &s, const char *aad) {
    return cipher ? cipher->seal(s, aad) : s;
  }
  std::string unseal(const std::string &s, const char *aad) {
    if (cipher) return cipher->open(s, aad);
    if (Cipher::is_sealed(s))
      fail(WF_ECORRUPT, "the database holds encrypted values: open it with encryption_key");
    return s;
  }
  void check_encryption_key();
  std::string boot_id;
  std::atomic<bool> draining{false};
  std::atomic<bool> closed{false};

  // --- writer (group commit). write_db is used by the writer thread, or by a
  // host transaction while the writer waits for it.
  std::unique_ptr<Db> write_db;
  std::mutex wq_mu;
  std::condition_variable wq_cv;
  std::deque<WriteReq> wq;   // GUARDED_BY(wq_mu)
  bool writer_stop = false;  // GUARDED_BY(wq_mu)
  int wq_durable = 0;        // GUARDED_BY(wq_mu): queued requests with a waiter
  int last_durable = 0;      // GUARDED_BY(wq_mu): waiters in the last batch
  // GUARDED_BY(wq_mu): a thread is running a transaction on write_db (the
  // writer, or a caller of submit_wait that found the writer idle and the
  // queue empty and runs its own request: no hand-off to the writer and back).
  bool wq_busy = false;
  std::thread writer;
  std::atomic<std::thread::id> writer_tid{}, ckpt_tid{};
  // The host transaction holding the write connection, if any (set by the
  // writer at grant, cleared when it ends), for the "own transaction" check.
  std::mutex htx_mu;
  HostTx *open_tx = nullptr;  // GUARDED_BY(htx_mu)
  // WF_EBUSY when the calling thread made the last call on this engine's
  // open host transaction: waiting on the writer would wait for itself.
  void check_own_tx(const char *what);
  uint64_t fork_gen = 0;      // fork generation at open
  bool sync_full_now = true;  // writer thread only
  void writer_main();
  void run_batch(std::vector<WriteReq> &batch);
  void run_host_tx(WriteReq &req);
  // Queues a request; returns at once.
  void submit(WriteReq req);
  // Queues a request and waits for its durable commit. `inserts_only`,
  // `one_id`: see WriteReq.
  int submit_wait(std::function<void(WriteCtx &)> fn, bool savepoint = true,
                  bool inserts_only = false, bool one_id = false);

  // --- background checkpointer: the writer never checkpoints (its commits
  // would wait for the database fsyncs); a hook on write_db wakes this thread
  // when the WAL reaches opt.checkpoint_pages, and it runs a PASSIVE
  // checkpoint on its own connection.
  std::unique_ptr<Db> ckpt_db;
  std::mutex ckpt_mu;
  std::condition_variable ckpt_cv;
  bool ckpt_wanted = false;  // GUARDED_BY(ckpt_mu)
  bool ckpt_stop = false;    // GUARDED_BY(ckpt_mu)
  std::mutex ckpt_run_mu;    // held while a checkpoint runs (either thread)
  std::thread checkpointer;
  void checkpointer_main();
  void stop_checkpointer();
  static constexpr int64_t kWalRestartFactor = 4;
  std::atomic<bool> wal_restart_due{false};  // set by the WAL hook, taken by the writer
  std::atomic<int64_t> ckpt_copied{0};       // WAL frames the last checkpoint had copied
  void restart_wal();

  // --- retention (retention.cpp): a maintenance thread, started at open
  // (whether or not the relay runs), purges expired rows in small batches and
  // returns free pages to the file system, each step a short request through
  // the writer's queue.
  std::shared_ptr<struct Retention> retention;
  std::atomic<int64_t> n_purged_rows{0}, n_purge_batches{0}, n_vacuumed_pages{0},
      n_purge_failures{0};
  std::atomic<int64_t> purge_batch_max_us{0};  // longest purge batch (writer time)
  void start_maintenance();
  void stop_maintenance();  // before the writer stops
  // One whole pass on the calling thread (not an engine thread): every
  // expired row, then free pages. Returns the rows removed. Throws on failure.
  int64_t purge_now(bool vacuum = true);

  // --- read-only connections (WAL snapshots): one for the loop's own
  // queries, one for API reads (stats, listings), so a slow wf_stats never
  // delays timers or claims.
  std::unique_ptr<Db> read_db;
  std::mutex read_mu;
  std::unique_ptr<Db> api_db;
  std::mutex api_mu;

  // --- effects registry. Read on every insert, claim, dispatch and outcome
  // (find_effect, by the writer and the loop at once): a shared lock, so
  // that those lookups never put each other to sleep (an exclusive mutex
  // was contended there: futex waits were 5% of the writer's samples end to
  // end). Readers that only look (lookups, copies of the maps, stats) take it
  // shared; registration and the credit and circuit updates exclusively.
  std::shared_mutex reg_mu;
  std::map<std::string, std::shared_ptr<EffectState>> effects;  // GUARDED_BY(reg_mu)
  std::map<std::string, std::shared_ptr<SagaDef>> sagas;        // GUARDED_BY(reg_mu)

  // --- relay loop
  std::thread loop_thread;
  std::atomic<std::thread::id> loop_tid{};
  uv_loop_s *loop = nullptr;
  uv_async_s *async = nullptr;
  uv_timer_s *timer = nullptr;
  uv_timer_s *retry_timer = nullptr;
  std::atomic<bool> started{false};
  std::mutex inbox_mu;
  struct Inbox {
    bool wake = false;
    bool stop = false;
    bool providers = false;  // a built-in provider was registered: attach it
    bool ready_now = false;
    int64_t next_due = INT64_MAX;
    bool saga_ready = false;
    int64_t next_sched = INT64_MAX;
    std::vector<std::string> steps_done;  // saga instances whose step committed
    bool fire_done = false;
    bool fire_again = false;
    bool saga_retry = false;   // a step failed: try again a little later
    bool fire_failed = false;  // a firing transaction failed
    std::vector<std::shared_ptr<struct ClaimResult>> claimed;
    bool claim_failed = false;
    std::vector<InsertClaim> insert_claimed;  // committed claims on insert
    bool credit_returned = false;             // a transaction gave credit back
    std::vector<std::pair<std::shared_ptr<JobCtx>, Outcome>> outcomes;
    std::vector<std::pair<int64_t, int>> lost;    // (id, attempt) whose lease is gone
    std::vector<std::function<void()>> barriers;  // run after outcomes are queued
  } inbox;                                        // GUARDED_BY(inbox_mu)
  bool loop_alive = false;                        // GUARDED_BY(inbox_mu): async handle may be used
  void notify_loop(const std::function<void(Inbox &)> &fill);
  void post_hints(const WriteCtx &w);  // tells the loop what a commit changed

  // Loop thread only:
  std::unordered_map<int64_t, std::shared_ptr<JobCtx>> inflight;
  std::set<std::pair<int64_t, int64_t>> deadlines;  // (deadline, id)
  // Attempts the engine gave up on (timeout, lost lease) while the host still
  // holds the handle; at most one per job.
  std::unordered_map<int64_t, std::shared_ptr<JobCtx>> zombies;
  std::unordered_map<int64_t, std::shared_ptr<JobCtx>> deferred;  // waiting for its zombie
  bool claim_outstanding = false;
  bool maybe_ready = true;  // a claim may find something
  bool stopping = false;
  int64_t known_next_due = INT64_MAX;
  int64_t next_renew = 0;   // monotonic
  int64_t next_poll = 0;    // monotonic
  int64_t wall_offset = 0;  // now() - mono() at the last pass: detects clock steps
  int64_t last_data_version = -1;
  unsigned rr = 0;  // round-robin start over effects
  std::mt19937_64 rng{std::random_device{}()};
  // Saga runtime and scheduler (loop thread).
  bool saga_wake = true;
  bool saga_read_busy = false;
  std::set<std::string> saga_busy;  // instances with a step in the writer
  // Where the last saga pass stopped (tenant, saga, correlation_id): the next
  // one goes on from there, round-robin over instances with queued events.
  std::optional<std::array<std::string, 3>> saga_cursor;
  int64_t known_next_sched = INT64_MAX;
  bool fire_outstanding = false;
  bool sched_hold = false;  // firing failed: wait for the retry timer
  // Writer thread only: (tenant, key) -> [start, latest] of an "all" catch-up
  // being fired in chunks (FirePlan) and the cron and catch_up_max it was
  // planned for, so that later chunks skip the search.
  struct CatchUpWindow {
    int64_t start, latest, max;
    std::string cron, tz;
  };
  std::map<std::pair<std::string, std::string>, CatchUpWindow> catchup_window;
  void read_failed(const std::exception &ex);
  void refresh_next_due_unguarded(bool look_for_due = true, int64_t after = -1);
  void pump_sagas();
  void pump_schedules();
  void refresh_next_sched();
  void loop_main();
  void attach_providers();  // loop thread: built-in providers not yet attached
  void detach_providers();  // loop thread, when stopping
  void on_async();
  void on_async_body(Inbox &in);
  void pump();
  void arm_timer();
  void dispatch(const std::shared_ptr<JobCtx> &j);
  void finish_attempt(const std::shared_ptr<JobCtx> &j, const Outcome &o);
  void on_claimed(const struct ClaimResult &r);
  // Claim on insert: writer side (outbox.cpp) and loop side (relay.cpp).
  std::shared_ptr<EffectState> take_insert_slot(WriteCtx &w, const std::string &effect);
  void add_insert_claim(WriteCtx &w, std::shared_ptr<EffectState> eff, int64_t id, const NewJob &j);
  // Binds (state, lease_owner, lease_until, attempts, started_at) from `pos`:
  // claimed by this engine now, or ready.
  void bind_claim(Stmt &st, int pos, bool claimed, int64_t now, bool unindexed = false);
  void deliver_claims(WriteCtx &w);  // after the commit
  void on_insert_claimed(std::vector<InsertClaim> &claims);
  void grant_credits();
  void revoke_credits();
  bool backlog_seen = true;  // loop: evidence of due jobs not claimed (revoke credits)
  void release_jobs(std::vector<std::shared_ptr<JobCtx>> jobs);
  void dead_letter_claimed(const std::shared_ptr<JobCtx> &j, const std::string &reason);
  // Lease no longer ours. `j` must not be a map entry (erased): pass a copy.
  void lose_attempt(const std::shared_ptr<JobCtx> &j);
  void make_zombie(const std::shared_ptr<JobCtx> &j);
  void drop_inflight(const std::shared_ptr<JobCtx> &j);
  void check_abandoned();
  int64_t abandon_after(const std::string &effect);
  int max_interruptions(const std::string &effect);
  void circuit_record(EffectState &eff, bool failure);
  void check_timeouts();
  void renew_and_reclaim();
  // look_for_due: also set maybe_ready when a job is due now; after: the
  // instant to look from (-1: now).
  void refresh_next_due(bool look_for_due = true, int64_t after = -1);
  std::shared_ptr<EffectState> find_effect(const std::string &name);

  // Inflight count and handles held after the engine gave up on them
  // (zombies), visible to other threads (drain, stats).
  std::atomic<int> inflight_count{0};
  std::atomic<int> held_count{0};
  void notify_drain();
  // Handles point here; cleared by wf_close before the engine is freed.
  std::shared_ptr<EngineLink> link = std::make_shared<EngineLink>();
  // The boot's liveness lock (see lease.h).
  BootLock boot_lock;
  std::mutex drain_mu;
  std::condition_variable drain_cv;
  bool close_started = false;  // GUARDED_BY(drain_mu)

  // --- completion from any thread (the caller holds link->mu shared)
  int complete(JobCtx *j, Outcome o);

  // --- logging: lines are formatted on the thread that logs them and
  // delivered by a dedicated logger thread (bounded queue; a full queue drops
  // and counts), so no engine thread the API waits on ever runs host code.
  std::mutex log_mu;
  std::condition_variable log_cv;
  wf_log_fn log_fn = nullptr;  // GUARDED_BY(log_mu)
  void *log_user = nullptr;    // GUARDED_BY(log_mu)
  std::atomic<int> log_level{WF_LOG_INFO};
  std::deque<std::pair<int, std::string>> log_q;  // GUARDED_BY(log_mu)
  uint64_t log_queued = 0, log_delivered = 0;     // GUARDED_BY(log_mu): line counts
  bool log_stop = false;                          // GUARDED_BY(log_mu)
  bool log_busy = false;                          // GUARDED_BY(log_mu): fn running
  std::atomic<int64_t> n_log_dropped{0};
  std::thread logger;
  std::atomic<std::thread::id> logger_tid{};
  static constexpr size_t kLogQueueMax = 4096;
  void log(int level, const std::string &msg, json fields = json::object());
  // Whether a line at `level` would be delivered: callers test it before
  // building the fields of debug lines, so those cost one atomic load when
  // the level is above debug.
  bool log_enabled(int level) const { return level >= log_level.load(std::memory_order_relaxed); }
  void logger_main();
  void start_logger();
  void stop_logger();  // delivers what is queued, then joins
  // Waits until the lines queued before the call were delivered (not on the
  // logger thread itself).
  void flush_log(std::unique_lock<std::mutex> &lk);
  void set_logger(int min_level, wf_log_fn fn, void *user);
  bool on_engine_thread() const;  // writer, checkpointer, loop or logger

  // --- asynchronous enqueue / submit (async.cpp). An accepted call holds a
  // slot (count and bytes bounded by the options) until its callback was
  // called; the writer's `after` queues the result for the notifier thread,
  // which calls the host's callbacks in queue order (never the writer: host
  // code there could block every commit).
  struct AsyncReq;  // async.cpp
  std::mutex aq_mu;
  std::condition_variable aq_room_cv;                  // producers wait for a free slot
  std::condition_variable aq_cv;                       // notifier waits for results
  std::condition_variable aq_done_cv;                  // wf_sync waits for deliveries
  std::vector<std::shared_ptr<AsyncReq>> aq_results;   // GUARDED_BY(aq_mu)
  std::vector<std::shared_ptr<AsyncReq>> aq_done_now;  // writer only: this batch's results
  void flush_async_results();                          // writer: after a batch's callbacks
  int64_t aq_count = 0, aq_bytes = 0;                  // GUARDED_BY(aq_mu): slots in use
  uint64_t aq_accepted = 0, aq_delivered = 0;          // GUARDED_BY(aq_mu): sequence numbers
  bool aq_stop = false;                                // GUARDED_BY(aq_mu)
  std::atomic<int> aq_waiting{0};                      // producers waiting for room
  std::thread notifier;                                // started by the first async call
  std::atomic<std::thread::id> notifier_tid{};
  // Takes a slot (blocking while the queue is full, WF_EBUSY on an engine
  // thread) and queues `fn` as one write whose result reaches `cb`.
  void async_write(const std::shared_ptr<AsyncReq> &a);
  void notifier_main();
  void stop_notifier();  // delivers every queued result, then joins
  // Waits until the callbacks of async calls accepted so far were called
  // (no-op on the notifier thread).
  void wait_async_delivered();
  std::atomic<int64_t> n_async_accepted{0}, n_async_waits{0}, n_caller_commits{0};
  std::atomic<int64_t> n_insert_claims{0};  // jobs written claimed (claim on insert)

  // --- metrics (metrics.h): labelled counters and histograms
  Metrics metrics;
  // What a transaction's WriteCtx counted, once it committed (writer).
  void note_commit(const WriteCtx &w, const std::vector<Metrics::Tally> &t) {
    Metrics::apply(t);
    if (w.events_submitted) metrics.events_submitted.fetch_add(w.events_submitted);
    if (w.events_unmatched) metrics.events_unmatched.fetch_add(w.events_unmatched);
    if (w.schedules_fired) metrics.schedules_fired.fetch_add(w.schedules_fired);
    for (int64_t us : w.schedule_lateness_us) metrics.schedule_lateness.observe(us);
  }
  // --- admin HTTP endpoint (admin.cpp), on the loop when admin_listen is set:
  // the socket is bound at open, served from the loop's start to its stop.
  std::shared_ptr<struct AdminServer> admin;
  void admin_bind();    // at open: binds and listens (throws on failure)
  void admin_attach();  // loop thread, at start
  void admin_detach();  // loop thread, when stopping
  int admin_port() const;

  // --- counters
  std::atomic<int64_t> n_enqueued{0}, n_completed{0}, n_retried{0}, n_dead{0}, n_timeouts{0},
      n_commits{0}, n_dispatched{0}, n_checkpoints{0}, n_checkpoint_failures{0},
      n_writer_checkpoints{0}, n_tx_timeouts{0}, n_leases_lost{0}, n_abandoned{0};

  // --- API operations (outbox.cpp, ops.cpp)
  void insert_job(WriteCtx &w, const NewJob &j, std::string *id, bool *existing);
  // Many jobs in one transaction (wf_enqueue_batch): (id, existing) per job,
  // in order; new jobs are inserted eight rows per statement.
  void insert_jobs(WriteCtx &w, const std::vector<NewJob> &jobs,
                   std::vector<std::pair<int64_t, bool>> *out);
  // Consecutive asynchronous enqueues of one batch, [from, to), as
  // insert_jobs inserts them; each result goes to its request.
  void insert_job_group(WriteCtx &w, std::vector<WriteReq> &batch, size_t from, size_t to);
  // Consecutive plain completions of one batch, [from, to) (relay.cpp).
  void finish_done_group(WriteCtx &w, std::vector<WriteReq> &batch, size_t from, size_t to);
  // The id of the job holding (tenant, key), in the outbox or deduplicated; 0: none.
  int64_t existing_key(WriteCtx &w, const std::string &tenant, const std::string &key);
  // Inserts an event and routes it to sagas; false if (tenant, event_id) exists.
  bool insert_event(WriteCtx &w, const NewEvent &ev);
  void upsert_schedule(WriteCtx &w, const NewSchedule &s);
  // Marks a schedule whose firing failed as parked with the reason (writer).
  void park_schedule(WriteCtx &w, const std::string &tenant, const std::string &key,
                     const std::string &reason);
  // Outcome event of a saga-emitted job, in the completion's transaction.
  void emit_outcome_event(WriteCtx &w, const std::string &origin, const std::string &effect,
                          int64_t job_id, const std::string &key, bool ok, const std::string &text,
                          int attempts, const std::string &traceparent = "",
                          const std::string &tracestate = "");
  // The ids of a job for structured log lines (docs/operations.md, "Logs").
  json job_fields(const JobCtx &j, const char *event) const;
  void recover_on_open();
  void release_inflight_on_close();
};

// A whole retention pass (purge, and vacuum if asked) of the engine behind a handle, on
// the calling thread; `*removed_out` gets the rows removed. For tests and
// benchmarks (capi.cpp); the maintenance thread does the same in the
// background.
int purge_now(wf_engine *h, int64_t *removed_out, bool vacuum = true);

// The SQL of every statement the retention purge runs (tests check their
// query plans: each reads through an index, never a whole table).
std::vector<const char *> retention_statements();

// The process-wide logger new engines start with (wf_set_default_logger),
// so that what wf_open itself logs can be captured.
void set_default_logger(int min_level, wf_log_fn fn, void *user);

// Returns how an attempt's failure resolves: dead or retry at run_at.
int resolve_max_attempts(const Engine &e, const EffectPolicy *p, const std::optional<int64_t> &job);

}  // namespace wf
