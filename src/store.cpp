#include "store.h"

#include <fcntl.h>
#include <sched.h>
#include <sqlite3.h>
#include <strings.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <system_error>

namespace wf {

int map_sqlite_error(int rc) {
  switch (rc & 0xff) {
    case SQLITE_OK:
      return WF_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return WF_EBUSY;
    case SQLITE_NOMEM:
      return WF_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return WF_ECORRUPT;
    case SQLITE_TOOBIG:
      return WF_ETOOBIG;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_ERROR:
    case SQLITE_AUTH:
      return WF_EINVAL;
    default:
      return WF_EIO;
  }
}

// ---------------------------------------------------------------- Stmt

Stmt &Stmt::bind(int i, int64_t v) {
  sqlite3_bind_int64(s_, i, v);
  return *this;
}
Stmt &Stmt::bind(int i, double v) {
  sqlite3_bind_double(s_, i, v);
  return *this;
}
Stmt &Stmt::bind(int i, std::string_view v) {
  sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  return *this;
}
Stmt &Stmt::bind_static(int i, std::string_view v) {
  sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
  return *this;
}
Stmt &Stmt::bind_null(int i) {
  sqlite3_bind_null(s_, i);
  return *this;
}
Stmt &Stmt::bind_json(int i, const json &v) {
  if (v.is_null()) return bind_null(i);
  if (v.is_boolean()) return bind(i, static_cast<int64_t>(v.get<bool>() ? 1 : 0));
  if (v.is_number_integer()) return bind(i, v.get<int64_t>());
  if (v.is_number_unsigned()) return bind(i, static_cast<int64_t>(v.get<uint64_t>()));
  if (v.is_number_float()) return bind(i, v.get<double>());
  if (v.is_string()) return bind(i, v.get_ref<const std::string &>());
  return bind(i, v.dump());
}

bool Stmt::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3 *db = sqlite3_db_handle(s_);
  std::string msg = std::string("database: ") + sqlite3_errmsg(db);
  sqlite3_reset(s_);
  fail(map_sqlite_error(rc), msg);
}

namespace {
thread_local StmtWork t_stmt_work;
}

StmtWork thread_stmt_work() { return t_stmt_work; }

void Stmt::reset() {
  // Work counters for tests that show a cost does not grow with the data
  // (read and cleared on each use of a cached statement).
  t_stmt_work.vm_steps += sqlite3_stmt_status(s_, SQLITE_STMTSTATUS_VM_STEP, 1);
  t_stmt_work.fullscan_steps += sqlite3_stmt_status(s_, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}
int64_t Stmt::col_int(int i) const { return sqlite3_column_int64(s_, i); }
double Stmt::col_double(int i) const { return sqlite3_column_double(s_, i); }
std::string Stmt::col_text(int i) const {
  const unsigned char *t = sqlite3_column_text(s_, i);
  if (!t) return std::string();
  return std::string(reinterpret_cast<const char *>(t), sqlite3_column_bytes(s_, i));
}
std::string_view Stmt::col_view(int i) const {
  const unsigned char *t = sqlite3_column_text(s_, i);
  if (!t) return std::string_view();
  return std::string_view(reinterpret_cast<const char *>(t),
                          static_cast<size_t>(sqlite3_column_bytes(s_, i)));
}
bool Stmt::col_null(int i) const { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
int Stmt::col_type(int i) const { return sqlite3_column_type(s_, i); }
int Stmt::columns() const { return sqlite3_column_count(s_); }
const char *Stmt::col_name(int i) const { return sqlite3_column_name(s_, i); }

json Stmt::col_json_value(int i) const {
  switch (sqlite3_column_type(s_, i)) {
    case SQLITE_INTEGER:
      return json(col_int(i));
    case SQLITE_FLOAT:
      return json(col_double(i));
    case SQLITE_TEXT:
      return json(col_text(i));
    case SQLITE_BLOB: {
      static const char *hex = "0123456789abcdef";
      const unsigned char *p = static_cast<const unsigned char *>(sqlite3_column_blob(s_, i));
      int n = sqlite3_column_bytes(s_, i);
      std::string out;
      for (int k = 0; k < n; ++k) {
        out.push_back(hex[p[k] >> 4]);
        out.push_back(hex[p[k] & 15]);
      }
      return json(out);
    }
    default:
      return json(nullptr);
  }
}

// ------------------------------------------------------------------ Db

Db::Db(const std::string &path, bool readonly, int busy_timeout_ms, const std::string &vfs) {
  if (!readonly) {
    // Create the file ourselves so it is 0600 from its first instant; SQLite
    // gives -wal and -shm the same mode as the database file. Only when it
    // does not exist yet (O_EXCL): closing a descriptor of a file releases
    // every POSIX lock this process holds on it, including the SHARED locks
    // of connections already open on it (another engine of this process, or
    // this engine's other connections); another process could then take the
    // file for unused, checkpoint and reset its WAL under them.
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST)
      fail(WF_EIO, "cannot open or create \"" + path +
                       "\": " + std::error_code(errno, std::generic_category()).message());
    if (fd >= 0) ::close(fd);
  }
  int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
              SQLITE_OPEN_PRIVATECACHE;
  if (!vfs.empty() && !sqlite3_vfs_find(vfs.c_str()))
    fail(WF_EINVAL, "options: no SQLite VFS named \"" + vfs + "\" is registered");
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, vfs.empty() ? nullptr : vfs.c_str());
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close_v2(db_);
    db_ = nullptr;
    fail(map_sqlite_error(rc), "cannot open \"" + path + "\": " + msg);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, busy_timeout_ms);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
}

namespace {
int wal_hook_trampoline(void *user, sqlite3 *, const char *, int frames) {
  auto *fn = static_cast<std::function<void(int)> *>(user);
  (*fn)(frames);
  return SQLITE_OK;
}
}  // namespace

void Db::set_wal_hook(std::function<void(int)> fn) {
  wal_hook_ = std::move(fn);
  if (wal_hook_)
    sqlite3_wal_hook(db_, wal_hook_trampoline, &wal_hook_);
  else
    sqlite3_wal_hook(db_, nullptr, nullptr);
}

void Db::checkpoint_passive(int *wal_frames, int *done_frames) {
  int rc =
      sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, wal_frames, done_frames);
  if (rc != SQLITE_OK) raise(rc, "checkpoint");
}

Db::~Db() {
  for (auto &kv : cache_) sqlite3_finalize(kv.second);
  sqlite3_close_v2(db_);
}

void Db::raise(int rc, const char *what) const {
  fail(map_sqlite_error(rc), std::string(what) + ": " + sqlite3_errmsg(db_));
}

void Db::exec(const char *sql) {
  char *err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    fail(map_sqlite_error(rc), std::string("database: ") + msg);
  }
}

StmtRef Db::prepare(const char *sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return StmtRef(it->second);
  sqlite3_stmt *s = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) raise(rc, "prepare");
  cache_[sql] = s;
  return StmtRef(s);
}

std::unique_ptr<sqlite3_stmt, void (*)(sqlite3_stmt *)> Db::prepare_once(std::string_view sql,
                                                                         std::string_view *tail) {
  sqlite3_stmt *s = nullptr;
  const char *t = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, &t);
  auto holder = std::unique_ptr<sqlite3_stmt, void (*)(sqlite3_stmt *)>(
      s, [](sqlite3_stmt *p) { sqlite3_finalize(p); });
  if (rc != SQLITE_OK) fail(WF_EINVAL, std::string("sql: ") + sqlite3_errmsg(db_));
  if (tail) *tail = std::string_view(t, sql.data() + sql.size() - t);
  return holder;
}

bool Db::read_header(unsigned char *buf, int n) {
  // Through SQLite's own descriptor: opening and closing another one on the
  // file would drop this process's POSIX locks on it (see Db::Db).
  sqlite3_file *f = nullptr;
  if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
      !f->pMethods)
    return false;
  return f->pMethods->xRead(f, buf, n, 0) == SQLITE_OK;
}

int64_t Db::changes() const { return sqlite3_changes64(db_); }
int64_t Db::last_rowid() const { return sqlite3_last_insert_rowid(db_); }
bool Db::in_txn() const { return !sqlite3_get_autocommit(db_); }

bool Db::data_version(uint32_t *v) const {
  unsigned u = 0;
  if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_DATA_VERSION, &u) != SQLITE_OK) return false;
  *v = u;
  return true;
}

int64_t Db::total_changes() const { return sqlite3_total_changes64(db_); }

void Db::ids_committed(bool exact) {
  ids.valid = exact && ids_tx_next > 0 && ids_tx_through >= 0 && data_version(&ids.data_version);
  if (ids.valid) {
    ids.total_changes = total_changes();
    ids.next = ids_tx_next;
    ids.through = ids_tx_through;
  }
  ids_begin();
}

namespace {
// SQLite itself refuses direct writes to its schema table (defensive mode);
// CREATE TABLE and AUTOINCREMENT write sqlite_schema/sqlite_sequence
// internally, so only our own tables are protected here.
bool engine_table(const char *name) { return name && strncasecmp(name, "wf_", 3) == 0; }

int host_authorizer(void *, int action, const char *a1, const char *a2, const char *,
                    const char *) {
  switch (action) {
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
      // sqlite_sequence holds our id counters: rewinding them would reuse ids.
      // (SQLite's own AUTOINCREMENT bookkeeping is not authorized per row.)
      if (a1 && strcasecmp(a1, "sqlite_sequence") == 0) return SQLITE_DENY;
      return engine_table(a1) ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_DROP_TABLE:
    case SQLITE_CREATE_TABLE:
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_DROP_TEMP_TABLE:
      return engine_table(a1) ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_CREATE_INDEX:
    case SQLITE_DROP_INDEX:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_DROP_TRIGGER:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_INDEX:
      return (engine_table(a1) || engine_table(a2)) ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_ALTER_TABLE:
      return engine_table(a2) ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_CREATE_VIEW:
    case SQLITE_DROP_VIEW:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_DROP_TEMP_VIEW:
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
      return engine_table(a1) ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_DROP_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_INDEX:
      return (engine_table(a1) || engine_table(a2)) ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
    case SQLITE_PRAGMA:
      return SQLITE_DENY;
    default:
      return SQLITE_OK;
  }
}
}  // namespace

void Db::set_authorizer(bool host_mode) {
  sqlite3_set_authorizer(db_, host_mode ? host_authorizer : nullptr, nullptr);
}

// ----------------------------------------------------------- migrations

static const char *kSchemaV1 = R"sql(
CREATE TABLE wf_meta(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE wf_jobs(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  effect TEXT NOT NULL,
  key TEXT,
  payload TEXT NOT NULL,
  metadata TEXT NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  run_at INTEGER NOT NULL,
  state INTEGER NOT NULL DEFAULT 0,      -- 0 ready, 1 running
  attempts INTEGER NOT NULL DEFAULT 0,   -- deliveries so far
  failures INTEGER NOT NULL DEFAULT 0,   -- counted against max_attempts
  max_attempts INTEGER,                  -- NULL: effect policy / engine default
  lease_owner TEXT,
  lease_until INTEGER,
  started_at INTEGER,
  last_error TEXT,
  origin TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX wf_jobs_claim ON wf_jobs(effect, priority DESC, run_at, id) WHERE state = 0;
CREATE INDEX wf_jobs_due ON wf_jobs(run_at) WHERE state = 0;
CREATE INDEX wf_jobs_lease ON wf_jobs(lease_until) WHERE state = 1;
CREATE UNIQUE INDEX wf_jobs_key ON wf_jobs(tenant, key) WHERE key IS NOT NULL;
CREATE TABLE wf_attempts(
  job_id INTEGER NOT NULL,
  n INTEGER NOT NULL,
  started_at INTEGER,
  ended_at INTEGER NOT NULL,
  outcome TEXT NOT NULL,                 -- retry | failed | timeout | interrupted
  error TEXT
);
CREATE INDEX wf_attempts_job ON wf_attempts(job_id);
CREATE TABLE wf_done_keys(
  tenant TEXT NOT NULL,
  key TEXT NOT NULL,
  job_id INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY(tenant, key)
) WITHOUT ROWID;
CREATE INDEX wf_done_keys_exp ON wf_done_keys(expires_at);
CREATE TABLE wf_dead(
  id INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL,
  effect TEXT NOT NULL,
  key TEXT,
  payload TEXT NOT NULL,
  metadata TEXT NOT NULL,
  priority INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  failures INTEGER NOT NULL,
  max_attempts INTEGER,
  origin TEXT,
  created_at INTEGER NOT NULL,
  reason TEXT NOT NULL,
  dead_at INTEGER NOT NULL
);
CREATE INDEX wf_dead_at ON wf_dead(dead_at);
CREATE TABLE wf_boots(
  boot_id TEXT PRIMARY KEY,
  pid INTEGER NOT NULL,
  hostname TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

static const char *kSchemaV2 = R"sql(
CREATE TABLE wf_schedules(
  tenant TEXT NOT NULL,
  key TEXT NOT NULL,
  cron TEXT,                             -- NULL: one-shot
  tz TEXT NOT NULL,
  catch_up TEXT NOT NULL,                -- latest | all | none
  catch_up_max INTEGER NOT NULL,
  target TEXT NOT NULL,                  -- job | event
  body TEXT NOT NULL,                    -- the job or event document
  next_due INTEGER NOT NULL,
  fired INTEGER NOT NULL DEFAULT 0,
  last_due INTEGER,
  origin TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(tenant, key)
) WITHOUT ROWID;
CREATE INDEX wf_schedules_due ON wf_schedules(next_due);
CREATE TABLE wf_events(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  event_id TEXT NOT NULL,
  type TEXT NOT NULL,
  correlation_id TEXT,
  envelope TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  routed INTEGER NOT NULL                -- saga deliveries; 0 = unmatched
);
CREATE UNIQUE INDEX wf_events_id ON wf_events(tenant, event_id);
CREATE INDEX wf_events_unmatched ON wf_events(received_at) WHERE routed = 0;
CREATE TABLE wf_saga_inbox(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  saga TEXT NOT NULL,
  correlation_id TEXT NOT NULL,
  event_seq INTEGER NOT NULL,
  start INTEGER NOT NULL,                -- may create the instance
  state INTEGER NOT NULL DEFAULT 0,      -- 0 pending, 2 parked
  error TEXT
);
CREATE INDEX wf_saga_inbox_inst ON wf_saga_inbox(tenant, saga, correlation_id, seq);
CREATE TABLE wf_sagas(
  tenant TEXT NOT NULL,
  saga TEXT NOT NULL,
  correlation_id TEXT NOT NULL,
  state TEXT NOT NULL,
  version INTEGER NOT NULL,
  status TEXT NOT NULL,                  -- active | done
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY(tenant, saga, correlation_id)
) WITHOUT ROWID;
CREATE TABLE wf_saga_log(
  tenant TEXT NOT NULL,
  saga TEXT NOT NULL,
  correlation_id TEXT NOT NULL,
  n INTEGER NOT NULL,
  event_seq INTEGER NOT NULL,
  PRIMARY KEY(tenant, saga, correlation_id, n)
) WITHOUT ROWID;
)sql";

// Version 3 keeps the schema version in wf_meta (earlier releases used PRAGMA
// user_version, which belongs to the host) and parks schedules whose firing
// fails instead of deleting them.
static const char *kSchemaV3 = R"sql(
ALTER TABLE wf_schedules ADD COLUMN parked_reason TEXT;   -- NULL: active
ALTER TABLE wf_schedules ADD COLUMN parked_at INTEGER;
DROP INDEX wf_schedules_due;
CREATE INDEX wf_schedules_due ON wf_schedules(next_due) WHERE parked_reason IS NULL;
CREATE INDEX wf_schedules_parked ON wf_schedules(parked_at) WHERE parked_reason IS NOT NULL;
)sql";

// Version 4: interrupted attempts are counted (a job that keeps crashing its
// process becomes a dead letter after max_interruptions), and each boot
// records the slot of its liveness lock (lease.h, BootLock).
static const char *kSchemaV4 = R"sql(
ALTER TABLE wf_jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE wf_boots ADD COLUMN lock_slot INTEGER;
)sql";

// Version 5: indexes for the background purge (src/retention.cpp), so that
// finding expired rows and checking what still refers to an event read only
// the rows concerned.
static const char *kSchemaV5 = R"sql(
CREATE INDEX wf_attempts_ended ON wf_attempts(ended_at);
CREATE INDEX wf_sagas_done ON wf_sagas(updated_at) WHERE status = 'done';
CREATE INDEX wf_saga_log_event ON wf_saga_log(event_seq);
CREATE INDEX wf_saga_inbox_event ON wf_saga_inbox(event_seq);
)sql";

// Version 6: maintained job counts per (effect, tenant) for wf_stats and
// wf_metrics (lease.h, flush_counts), filled once from the jobs of an
// existing file; the due-time index is per effect so that the loop's
// next-due lookups never read other effects' rows; claims under
// tenant_concurrency read each tenant's jobs from its own index range.
static const char *kSchemaV6 = R"sql(
CREATE TABLE wf_job_counts(
  effect TEXT NOT NULL,
  tenant TEXT NOT NULL,
  pending INTEGER NOT NULL,              -- state 0 (ready or scheduled)
  running INTEGER NOT NULL,              -- state 1
  PRIMARY KEY(effect, tenant)
) WITHOUT ROWID;
INSERT INTO wf_job_counts(effect, tenant, pending, running)
  SELECT effect, tenant, sum(state = 0), sum(state = 1) FROM wf_jobs GROUP BY effect, tenant;
CREATE TABLE wf_tenant_counts(             -- the same summed over effects
  tenant TEXT PRIMARY KEY,
  pending INTEGER NOT NULL,
  running INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO wf_tenant_counts(tenant, pending, running)
  SELECT tenant, sum(pending), sum(running) FROM wf_job_counts GROUP BY tenant;
DROP INDEX wf_jobs_due;
CREATE INDEX wf_jobs_due ON wf_jobs(effect, run_at) WHERE state = 0;
CREATE INDEX wf_jobs_tenant ON wf_jobs(effect, tenant, priority DESC, run_at, id) WHERE state = 0;
)sql";

// Version 7: the due-time index holds only jobs that were due later than
// their creation (delayed jobs, retries in backoff, reclaimed leases): every
// job due in the future is one of these (run_at > now >= created_at), so the
// loop's next-due lookup and the stats' count of scheduled jobs read it as
// before, while an immediately ready job (run_at = created_at, the common
// case) no longer costs a third index entry on insert, claim and completion.
// Ready jobs are found on wf_jobs_claim.
static const char *kSchemaV7 = R"sql(
DROP INDEX wf_jobs_due;
CREATE INDEX wf_jobs_due ON wf_jobs(effect, run_at) WHERE state = 0 AND run_at > created_at;
)sql";

// ---- Version 8 (issue 11, read API / wfctl): effects registered per boot,
// so another process (wfctl stuck) can tell whether any live engine serves
// an effect. Written at registration (lifecycle.cpp, record_effect), removed
// with the boot's row (close, recovery of stopped boots). Self-contained:
// renumber freely at merge.
static const char *kSchemaV8 = R"sql(
CREATE TABLE wf_boot_effects(
  boot_id TEXT NOT NULL,
  effect TEXT NOT NULL,
  registered_at INTEGER NOT NULL,
  PRIMARY KEY(boot_id, effect)
) WITHOUT ROWID;
CREATE INDEX wf_boot_effects_effect ON wf_boot_effects(effect);
)sql";
// ---- end of version 8

// ---- Version 9 (issue 11, wfctl stuck): the circuit breaker's state per
// boot and effect, so another process can say "circuit open" instead of
// guessing. NULL: closed. Otherwise the time the open circuit lets a probe
// through (in the past: half-open, probing). Written on each transition
// (relay.cpp, circuit_record -> record_circuit), not awaited.
static const char *kSchemaV9 = R"sql(
ALTER TABLE wf_boot_effects ADD COLUMN circuit_until INTEGER;
)sql";
// ---- end of version 9

// Version 10: no per-tenant totals table. Every commit that changed counts
// wrote its row too, one more WAL page per commit (a synchronous wf_enqueue
// wrote six); wf_stats sums wf_job_counts per tenant instead, as it already
// sums it per effect.
static const char *kSchemaV10 = R"sql(
DROP TABLE wf_tenant_counts;
)sql";

// Version 11: job ids without AUTOINCREMENT. Its bookkeeping row in
// sqlite_sequence was one more WAL page in every commit that inserted a job
// (a synchronous wf_enqueue wrote five). Every INSERT INTO wf_jobs now gives
// the id itself (lease::next_job_id): one more than the largest id in the
// table or in the floor below, which every transaction that deletes job rows
// raises to the largest id it deleted (lease::flush_counts), so that an id is
// never given twice (dead letters, done keys, attempts and handles refer to
// ids). The floor starts at the sequence AUTOINCREMENT kept. The table itself
// is rebuilt without AUTOINCREMENT when it is empty (kJobsRebuildSql, at any
// open): at once for a new file; a file with pending jobs keeps AUTOINCREMENT
// (ids stay correct, the page stays) until an open finds it drained.
static const char *kSchemaV11 = R"sql(
INSERT OR REPLACE INTO wf_meta(k, v) SELECT 'job_id_floor',
  CAST(max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'wf_jobs'), 0),
           coalesce((SELECT max(id) FROM wf_jobs), 0),
           coalesce((SELECT max(id) FROM wf_dead), 0)) AS TEXT);
)sql";
// ---- end of version 11

// Version 12: wf_jobs_tenant holds only the ready jobs of effects that have
// a tenant_concurrency (the only claims that read it). For every other
// effect it was one more index change in each insert and each claim, and one
// more WAL page in each synchronous wf_enqueue. An effect is marked in
// wf_capped_effects the first time it is registered with tenant_concurrency
// (lease::mark_capped, which sets `capped` on the jobs it already has); every
// INSERT INTO wf_jobs sets `capped` when its effect is marked. Marks are
// never removed. The index starts empty here: each capped effect is marked
// again when the engine registers it.
static const char *kSchemaV12 = R"sql(
ALTER TABLE wf_jobs ADD COLUMN capped INTEGER;
CREATE TABLE wf_capped_effects(effect TEXT PRIMARY KEY) WITHOUT ROWID;
DROP INDEX wf_jobs_tenant;
CREATE INDEX wf_jobs_tenant ON wf_jobs(effect, tenant, priority DESC, run_at, id)
  WHERE state = 0 AND capped = 1;
)sql";
// ---- end of version 12

// Version 13: the counts watermark (lease.h): wf_job_counts is exact for the
// rows with id <= counts_through and holds none above it, so that a
// synchronous wf_enqueue may leave its row to be counted by a later
// transaction instead of writing a counts page in its own commit. Every row
// of the file is counted here: the watermark starts past every id given.
static const char *kSchemaV13 = R"sql(
INSERT OR REPLACE INTO wf_meta(k, v) SELECT 'counts_through',
  max(coalesce((SELECT max(id) FROM wf_jobs), 0),
      coalesce((SELECT CAST(v AS INTEGER) FROM wf_meta WHERE k = 'job_id_floor'), 0));
)sql";
// ---- end of version 13

// wf_jobs as the migrations up to version 12 leave it, without AUTOINCREMENT
// (the 12-step table change of SQLite's ALTER TABLE documentation, on an
// empty table: nothing is copied). Columns and indexes must follow any later
// change of wf_jobs (StoreTest.JobsRebuildKeepsTheSchema compares them).
static const char *kJobsRebuildSql = R"sql(
CREATE TABLE wf_jobs_new(
  id INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL,
  effect TEXT NOT NULL,
  key TEXT,
  payload TEXT NOT NULL,
  metadata TEXT NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  run_at INTEGER NOT NULL,
  state INTEGER NOT NULL DEFAULT 0,      -- 0 ready, 1 running
  attempts INTEGER NOT NULL DEFAULT 0,   -- deliveries so far
  failures INTEGER NOT NULL DEFAULT 0,   -- counted against max_attempts
  max_attempts INTEGER,                  -- NULL: effect policy / engine default
  lease_owner TEXT,
  lease_until INTEGER,
  started_at INTEGER,
  last_error TEXT,
  origin TEXT,
  created_at INTEGER NOT NULL,
  interruptions INTEGER NOT NULL DEFAULT 0,
  capped INTEGER
);
DROP TABLE wf_jobs;
ALTER TABLE wf_jobs_new RENAME TO wf_jobs;
CREATE INDEX wf_jobs_claim ON wf_jobs(effect, priority DESC, run_at, id) WHERE state = 0;
CREATE INDEX wf_jobs_lease ON wf_jobs(lease_until) WHERE state = 1;
CREATE UNIQUE INDEX wf_jobs_key ON wf_jobs(tenant, key) WHERE key IS NOT NULL;
CREATE INDEX wf_jobs_tenant ON wf_jobs(effect, tenant, priority DESC, run_at, id)
  WHERE state = 0 AND capped = 1;
CREATE INDEX wf_jobs_due ON wf_jobs(effect, run_at) WHERE state = 0 AND run_at > created_at;
DELETE FROM sqlite_sequence WHERE name = 'wf_jobs';
)sql";

namespace {

// The migration steps: step N brings a file from version N - 1 to N. To add
// one, define kSchemaV<N>, add a case to both switches below and raise
// kSchemaVersion in store.h. (Each exec names its constant: scripts/check_sql.sh
// accepts only literal SQL.)
void apply_migration(Db &db, int to) {
  switch (to) {
    case 1:
      db.exec(kSchemaV1);
      return;
    case 2:
      db.exec(kSchemaV2);
      return;
    case 3:
      db.exec(kSchemaV3);
      return;
    case 4:
      db.exec(kSchemaV4);
      return;
    case 5:
      db.exec(kSchemaV5);
      return;
    case 6:
      db.exec(kSchemaV6);
      return;
    case 7:
      db.exec(kSchemaV7);
      return;
    case 8:
      db.exec(kSchemaV8);
      return;
    case 9:
      db.exec(kSchemaV9);
      return;
    case 10:
      db.exec(kSchemaV10);
      return;
    case 11:
      db.exec(kSchemaV11);
      return;
    case 12:
      db.exec(kSchemaV12);
      return;
    case 13:
      db.exec(kSchemaV13);
      return;
    default:
      fail(WF_EINTERNAL, "no migration step to schema version " + std::to_string(to));
  }
}

// The engine tables each release before version 3 created: a file holding
// exactly one of these sets (and no version row) is a wfengine file of that
// version.
const std::set<std::string> kTablesV1 = {"wf_meta",      "wf_jobs", "wf_attempts",
                                         "wf_done_keys", "wf_dead", "wf_boots"};
const std::set<std::string> kTablesV2 = {
    "wf_meta",      "wf_jobs",   "wf_attempts",   "wf_done_keys", "wf_dead",    "wf_boots",
    "wf_schedules", "wf_events", "wf_saga_inbox", "wf_sagas",     "wf_saga_log"};

std::string list_names(const std::set<std::string> &names) {
  std::string out;
  size_t n = 0;
  for (const auto &t : names) {
    if (n++ == 8) {
      out += ", ...";
      break;
    }
    if (!out.empty()) out += ", ";
    out += t;
  }
  return out;
}

}  // namespace

const char *migration_sql(int to) {
  switch (to) {
    case 1:
      return kSchemaV1;
    case 2:
      return kSchemaV2;
    case 3:
      return kSchemaV3;
    case 4:
      return kSchemaV4;
    case 5:
      return kSchemaV5;
    case 6:
      return kSchemaV6;
    case 7:
      return kSchemaV7;
    case 8:
      return kSchemaV8;
    case 9:
      return kSchemaV9;
    case 10:
      return kSchemaV10;
    case 11:
      return kSchemaV11;
    case 12:
      return kSchemaV12;
    case 13:
      return kSchemaV13;
    default:
      return nullptr;
  }
}

void check_db_path(const std::string &path) {
  if (path.empty()) fail(WF_EINVAL, "wf_open: path is empty");
  if (path == ":memory:" || path.rfind("file:", 0) == 0)
    fail(WF_EINVAL, "wf_open: \"" + path +
                        "\" is not accepted: the engine needs a database file on disk (WAL mode, "
                        "several connections); in-memory databases and URI filenames are not "
                        "supported, pass a file path");
}

SchemaState inspect_schema(Db &db, const std::string &path) {
  SchemaState out;
  std::set<std::string> tables;
  try {
    auto st = db.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'wf\\_%' ESCAPE '\\'");
    while (st->step()) tables.insert(st->col_text(0));
  } catch (const Error &e) {
    if (e.code() == WF_ECORRUPT)
      fail(WF_ECORRUPT,
           "cannot use \"" + path +
               "\": it is not a SQLite database (or its header is damaged): " + e.what());
    throw;
  }
  if (tables.empty()) return out;  // a new file, or the host's database without our tables
  if (tables.count("wf_meta")) {
    auto st = db.prepare("SELECT v FROM wf_meta WHERE k = 'schema_version'");
    if (st->step()) {
      std::string v = st->col_text(0);
      int version = 0;
      if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos ||
          (version = std::stoi(v)) < 1)
        fail(WF_ECORRUPT, "cannot use \"" + path + "\": its wfengine schema version \"" + v +
                              "\" is not a version number");
      if (version > kSchemaVersion)
        fail(WF_ECORRUPT, "cannot use \"" + path + "\": its wfengine schema version " +
                              std::to_string(version) + " is newer than this library supports (" +
                              std::to_string(kSchemaVersion) + "); open it with a newer release");
      out.version = version;
      return out;
    }
  }
  // Files written before version 3 kept the version in user_version; they
  // are recognised by their exact set of tables, so user_version is not read.
  if (tables == kTablesV1 || tables == kTablesV2) {
    out.version = tables == kTablesV1 ? 1 : 2;
    out.legacy = true;
    return out;
  }
  fail(WF_ECORRUPT, "cannot use \"" + path + "\": it has tables named like the engine's (" +
                        list_names(tables) +
                        ") but no wfengine schema version; the wf_ prefix is reserved for the "
                        "engine's tables");
}

static bool jobs_autoincrement(Db &db) {
  auto st = db.prepare(
      "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'wf_jobs' AND "
      "sql LIKE '%AUTOINCREMENT%'");
  return st->step();
}

void migrate(Db &db, const std::string &path) {
  db.exec("BEGIN IMMEDIATE");
  try {
    // Decided again under the write lock: another process may have created or
    // migrated the schema since the caller's look.
    SchemaState s = inspect_schema(db, path);
    if (s.version < kSchemaVersion) {
      for (int to = s.version + 1; to <= kSchemaVersion; ++to) apply_migration(db, to);
      // A file of an earlier release: its user_version held the engine's
      // version, never the host's. Reset it to SQLite's default once, so a
      // release before 3 refuses the file ("wfengine tables but no schema
      // version") instead of running on a schema it does not know. Files
      // created from version 3 on never have user_version read or written.
      if (s.legacy) db.exec("PRAGMA user_version = 0");
      auto st = db.prepare("INSERT OR REPLACE INTO wf_meta(k, v) VALUES('schema_version', ?1)");
      st->bind(1, std::to_string(kSchemaVersion)).exec();
    }
    if (jobs_autoincrement(db)) {
      auto any = db.prepare("SELECT 1 FROM wf_jobs LIMIT 1");
      bool empty = !any->step();
      any->reset();
      if (empty) db.exec(kJobsRebuildSql);
    }
    db.exec("COMMIT");
  } catch (...) {
    if (db.in_txn()) sqlite3_exec(db.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

// ------------------------------------------------------------ fork safety

// SQLite's process-wide static mutexes (memory allocator, VFS inode list and
// temp names, page cache, PRNG, open list): taken by the pthread_atfork
// prepare handler so that no thread holds one at the instant of fork(),
// released in parent and child. SQLite nests them in orders that are not one
// total order (PRNG then MAIN in sqlite3_randomness, VFS1 then PRNG for temp
// names, ...), so they are taken all-or-none with try-locks, backing off and
// retrying while another thread holds one.
namespace {
sqlite3_mutex *g_fork_mutexes[9] = {};
int g_fork_nmutex = 0;
}  // namespace

void sqlite_fork_init() {
  if (sqlite3_initialize() != SQLITE_OK) fail(WF_ENOMEM, "sqlite3_initialize failed");
  static const int ids[] = {
      SQLITE_MUTEX_STATIC_MAIN, SQLITE_MUTEX_STATIC_OPEN, SQLITE_MUTEX_STATIC_VFS1,
      SQLITE_MUTEX_STATIC_VFS2, SQLITE_MUTEX_STATIC_VFS3, SQLITE_MUTEX_STATIC_LRU,
      SQLITE_MUTEX_STATIC_PMEM, SQLITE_MUTEX_STATIC_PRNG, SQLITE_MUTEX_STATIC_MEM};
  int n = 0;
  for (int id : ids) {
    sqlite3_mutex *m = sqlite3_mutex_alloc(id);
    if (m) g_fork_mutexes[n++] = m;  // NULL when SQLite is built without mutexes
  }
  g_fork_nmutex = n;
}

void sqlite_fork_prepare() {
  for (int attempt = 0;; ++attempt) {
    int held = 0;
    while (held < g_fork_nmutex && sqlite3_mutex_try(g_fork_mutexes[held]) == SQLITE_OK) ++held;
    if (held == g_fork_nmutex) return;
    for (int i = held - 1; i >= 0; --i) sqlite3_mutex_leave(g_fork_mutexes[i]);
    if (attempt >= 100000) {
      // A build whose try-lock never succeeds (SQLite allows that; the POSIX
      // mutexes do not do it): take them in turn and hope.
      for (int i = 0; i < g_fork_nmutex; ++i) sqlite3_mutex_enter(g_fork_mutexes[i]);
      return;
    }
    sched_yield();
  }
}

void sqlite_fork_release() {
  for (int i = g_fork_nmutex - 1; i >= 0; --i) sqlite3_mutex_leave(g_fork_mutexes[i]);
}

}  // namespace wf
