// store: the only module that includes sqlite3.h. A thin RAII wrapper over a
// connection with a prepared-statement cache, the schema and its migrations.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "util.h"

struct sqlite3;
struct sqlite3_stmt;

namespace wf {

// SQLite work done by this thread's statements (cached statements, counted
// when a use ends): virtual machine steps and full-scan steps. Tests use it
// to show that a cost does not grow with the number of rows.
struct StmtWork {
  int64_t vm_steps = 0, fullscan_steps = 0;
};
StmtWork thread_stmt_work();

class Stmt {
 public:
  explicit Stmt(sqlite3_stmt *s) : s_(s) {}
  Stmt &bind(int i, int64_t v);
  Stmt &bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Stmt &bind(int i, double v);
  Stmt &bind(int i, std::string_view v);
  Stmt &bind(int i, const char *v) { return v ? bind(i, std::string_view(v)) : bind_null(i); }
  Stmt &bind(int i, const std::string &v) { return bind(i, std::string_view(v)); }
  // Binds without a copy: `v` must stay valid until the statement is reset
  // (a StmtRef resets and clears its bindings when it goes out of scope).
  Stmt &bind_static(int i, std::string_view v);
  Stmt &bind_null(int i);
  Stmt &bind_json(int i, const json &v);  // null/int/real/text/bool; others as JSON text
  bool step();                            // true: a row is ready
  void exec() {
    while (step()) {
    }
  }
  void reset();
  int64_t col_int(int i) const;
  double col_double(int i) const;
  std::string col_text(int i) const;
  // The same without a copy: valid until the next step or reset.
  std::string_view col_view(int i) const;
  bool col_null(int i) const;
  int col_type(int i) const;
  int columns() const;
  const char *col_name(int i) const;
  json col_json_value(int i) const;  // column as a JSON scalar
  sqlite3_stmt *raw() const { return s_; }

 private:
  sqlite3_stmt *s_;
};

// Scoped use of a cached statement: resets and clears bindings on exit.
class StmtRef {
 public:
  explicit StmtRef(sqlite3_stmt *s) : st_(s) {}
  ~StmtRef() { st_.reset(); }
  StmtRef(const StmtRef &) = delete;
  StmtRef &operator=(const StmtRef &) = delete;
  Stmt *operator->() { return &st_; }
  Stmt &operator*() { return st_; }

 private:
  Stmt st_;
};

class Db {
 public:
  // Opens `path`, creating it with mode 0600 when `create` is set.
  Db(const std::string &path, bool readonly, int busy_timeout_ms, const std::string &vfs = "");
  ~Db();
  Db(const Db &) = delete;
  Db &operator=(const Db &) = delete;

  void exec(const char *sql);
  StmtRef prepare(const char *sql);  // cached by pointer identity of `sql`
  // Uncached statement (host SQL). Caller finalizes via the returned holder.
  std::unique_ptr<sqlite3_stmt, void (*)(sqlite3_stmt *)> prepare_once(std::string_view sql,
                                                                       std::string_view *tail);
  // Reads the first `n` bytes of the database file; false if it cannot.
  bool read_header(unsigned char *buf, int n);
  int64_t changes() const;
  int64_t last_rowid() const;
  bool in_txn() const;
  void set_authorizer(bool host_mode);
  // Replaces SQLite's automatic checkpoint on this connection: `fn(frames)`
  // runs after each commit with the number of frames in the WAL, on the
  // committing thread. An empty function restores no hook (and no automatic
  // checkpoint either).
  void set_wal_hook(std::function<void(int)> fn);
  // A PASSIVE checkpoint: copies what it can without waiting for readers or
  // writers. `*wal_frames` / `*done_frames` get the WAL's size and how much of
  // it is now in the database. Throws Error on failure.
  void checkpoint_passive(int *wal_frames, int *done_frames);
  sqlite3 *raw() const { return db_; }
  // The largest wf_jobs id this connection deleted (lease::note_deleted):
  // ids given after it are larger even before the transaction that deleted
  // it wrote the id floor (lease::next_job_id). Only ever a lower bound for
  // new ids, so a rolled-back delete merely skips ids.
  int64_t deleted_job_id_max = 0;
  // What lease::next_job_id last read, kept between the engine's own
  // transactions so that a synchronous wf_enqueue, one insert per commit,
  // does not read the largest id and the watermark again (10% of its CPU).
  // Valid only while nothing changed the file since: the data version
  // (SQLITE_FCNTL_DATA_VERSION, which moves with every commit, this
  // connection's included, and with any other connection's at the next
  // transaction) and this connection's change counter are both as recorded.
  // The transaction's own ids and W are noted as it goes (ids_tx_*) and
  // become the cache only after its COMMIT succeeded (ids_committed).
  struct IdCache {
    bool valid = false;
    uint32_t data_version = 0;
    int64_t total_changes = 0;
    int64_t next = 0;     // the next id to give
    int64_t through = 0;  // W (wf_meta 'counts_through'); INT64_MAX: none
  } ids;
  int64_t ids_tx_next = 0;      // past the largest id given in the transaction (0: none)
  int64_t ids_tx_through = -1;  // W as the transaction leaves it (-1: unknown)
  // SQLITE_FCNTL_DATA_VERSION of the main database; false if unknown.
  bool data_version(uint32_t *v) const;
  int64_t total_changes() const;
  // At BEGIN of a transaction that ends with ids_committed.
  void ids_begin() {
    ids_tx_next = 0;
    ids_tx_through = -1;
  }
  // Right after that transaction's COMMIT returned. `exact`: every id the
  // transaction gave came from one next_job_id call each (a single
  // wf_enqueue; a batch numbers its rows itself), so its ids and W are the
  // file's now. Otherwise, or when it noted neither, the cache is dropped.
  void ids_committed(bool exact);

  // Throws Error with a status mapped from the SQLite result code.
  [[noreturn]] void raise(int rc, const char *what) const;

 private:
  sqlite3 *db_ = nullptr;
  std::map<const char *, sqlite3_stmt *> cache_;
  std::function<void(int)> wal_hook_;
};

int map_sqlite_error(int rc);

// The engine's schema version, kept in wf_meta (k = 'schema_version'); the
// host's PRAGMA user_version is never read or written for it (a file of a
// release before version 3 has it reset to 0 once, when it is migrated).
constexpr int kSchemaVersion = 13;

// Refuses paths that cannot be the engine's database file (":memory:", "",
// URI filenames) before anything is created. Throws Error(WF_EINVAL).
void check_db_path(const std::string &path);

// What a database file holds, read without changing it.
struct SchemaState {
  int version = 0;      // 0: no engine tables (a new file or the host's database)
  bool legacy = false;  // written by a release before version 3 (version in user_version)
};
// Throws Error(WF_ECORRUPT) naming the reason when the engine cannot use the
// file: not a SQLite database, a newer schema version, or tables named wf_*
// without a schema version. `path` is for messages.
SchemaState inspect_schema(Db &db, const std::string &path);

// Applies migrations up to kSchemaVersion in one transaction (deciding again
// under the write lock, with inspect_schema's checks).
void migrate(Db &db, const std::string &path);
// The SQL of the migration step to version `to` (tests build files of
// earlier releases with it); nullptr for an unknown step.
const char *migration_sql(int to);

// fork() safety (engine.cpp's pthread_atfork handlers): sqlite_fork_init
// once before the handlers are installed; prepare takes SQLite's static
// mutexes, release gives them back (in the parent and in the child).
void sqlite_fork_init();
void sqlite_fork_prepare();
void sqlite_fork_release();

}  // namespace wf
