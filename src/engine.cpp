// Engine construction, options, the writer thread (group commit), logging.
#include "engine.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include "admin.h"
#include "failpoint.h"
#include "trace.h"

namespace wf {

// ------------------------------------------------------------- options

static Backoff parse_backoff(const json &b, const Backoff &def, const char *what) {
  check_keys(b, {"base_ms", "cap_ms", "multiplier", "jitter"}, what);
  Backoff out = def;
  out.base_ms = get_int(b, "base_ms", what, def.base_ms, 0, INT64_C(1) << 40);
  out.cap_ms = get_int(b, "cap_ms", what, def.cap_ms, 0, INT64_C(1) << 40);
  out.multiplier = get_double(b, "multiplier", what, def.multiplier, 1.0, 1000.0);
  std::string j = get_string(b, "jitter", what, false, def.jitter ? "full" : "none");
  if (j == "full")
    out.jitter = true;
  else if (j == "none")
    out.jitter = false;
  else
    fail(WF_EINVAL, std::string(what) + ": \"jitter\" must be \"full\" or \"none\"");
  if (out.cap_ms < out.base_ms) fail(WF_EINVAL, std::string(what) + ": cap_ms < base_ms");
  return out;
}

int64_t Backoff::delay(int failures, std::mt19937_64 &rng) const {
  double d = static_cast<double>(base_ms) * std::pow(multiplier, std::max(0, failures - 1));
  if (!(d < static_cast<double>(cap_ms))) d = static_cast<double>(cap_ms);
  int64_t ms = static_cast<int64_t>(d);
  if (jitter && ms > 0) {
    std::uniform_int_distribution<int64_t> dist(0, ms);
    ms = dist(rng);
  }
  return ms;
}

namespace {
bool get_flag(const json &o, const char *field, const char *what, bool def) {
  auto it = o.find(field);
  if (it == o.end() || it->is_null()) return def;
  if (!it->is_boolean())
    fail(WF_EINVAL, std::string(what) + ": \"" + field + "\" must be true or false");
  return it->get<bool>();
}
}  // namespace

Options parse_options(const char *options_json) {
  Options o;
  if (!options_json || !*options_json) return o;
  Limits lim;
  json doc = parse_json(options_json, lim, "options", 1 << 16);
  const char *w = "options";
  // clang-format off
  check_keys(doc,
             {"durability", "busy_timeout_ms", "lease_ms", "max_attempts", "backoff",
              "dedupe_window_ms", "max_payload_bytes", "max_json_depth", "max_inflight", "poll_ms",
              "drain_timeout_ms", "group_commit_wait_us", "checkpoint_pages", "vfs",
              "encryption_key", "max_interruptions", "abandon_after_ms", "tx_timeout_ms",
              "retain_events_ms", "retain_sagas_ms", "retain_dead_ms", "retain_attempts_ms",
              "purge_interval_ms", "async_queue_max", "async_queue_bytes", "metrics_by_tenant",
              "admin_listen", "admin_allow_remote", "admin_max_connections",
              "admin_idle_timeout_ms", "read_only", "claim_on_insert"},
             w);
  // clang-format on
  std::string d = get_string(doc, "durability", w, false, "full");
  if (d == "full")
    o.durability_full = true;
  else if (d == "normal")
    o.durability_full = false;
  else
    fail(WF_EINVAL, "options: \"durability\" must be \"full\" or \"normal\", not \"" + d + "\"");
  o.busy_timeout_ms = static_cast<int>(get_int(doc, "busy_timeout_ms", w, 5000, 0, 3600000));
  o.lease_ms = get_int(doc, "lease_ms", w, 30000, 100, INT64_C(86400000) * 7);
  o.max_attempts = static_cast<int>(get_int(doc, "max_attempts", w, 25, 1, 1000000));
  if (doc.contains("backoff"))
    o.backoff = parse_backoff(doc["backoff"], o.backoff, "options.backoff");
  o.dedupe_window_ms = get_int(doc, "dedupe_window_ms", w, 86400000, 0, INT64_C(1) << 42);
  o.limits.max_payload_bytes =
      static_cast<size_t>(get_int(doc, "max_payload_bytes", w, 1 << 20, 16, INT64_C(256) << 20));
  o.limits.max_depth = static_cast<int>(get_int(doc, "max_json_depth", w, 64, 2, 1024));
  o.max_inflight = static_cast<int>(get_int(doc, "max_inflight", w, 1000, 1, 1000000));
  o.poll_ms = get_int(doc, "poll_ms", w, 500, 0, 3600000);
  o.drain_timeout_ms = get_int(doc, "drain_timeout_ms", w, 10000, 0, 3600000);
  o.group_commit_wait_us = get_int(doc, "group_commit_wait_us", w, 200, 0, 100000);
  o.checkpoint_pages = get_int(doc, "checkpoint_pages", w, 500, 0, INT64_C(1) << 30);
  o.tx_timeout_ms = get_int(doc, "tx_timeout_ms", w, 30000, 10, 3600000);
  o.vfs = get_string(doc, "vfs", w, false, "");
  o.encryption_key = get_string(doc, "encryption_key", w, false, "");
  o.max_interruptions = static_cast<int>(get_int(doc, "max_interruptions", w, 5, 1, 1000000));
  o.abandon_after_ms = get_int(doc, "abandon_after_ms", w, 300000, 0, INT64_C(86400000) * 7);
  // Retention windows: 0 keeps for ever; at most 2^42 ms (139 years).
  o.retain_events_ms = get_int(doc, "retain_events_ms", w, o.retain_events_ms, 0, INT64_C(1) << 42);
  o.retain_sagas_ms = get_int(doc, "retain_sagas_ms", w, o.retain_sagas_ms, 0, INT64_C(1) << 42);
  o.retain_dead_ms = get_int(doc, "retain_dead_ms", w, o.retain_dead_ms, 0, INT64_C(1) << 42);
  o.retain_attempts_ms =
      get_int(doc, "retain_attempts_ms", w, o.retain_attempts_ms, 0, INT64_C(1) << 42);
  o.purge_interval_ms = get_int(doc, "purge_interval_ms", w, 1000, 10, 3600000);
  o.async_queue_max = get_int(doc, "async_queue_max", w, 10000, 1, 10000000);
  o.async_queue_bytes =
      get_int(doc, "async_queue_bytes", w, INT64_C(64) << 20, 1024, INT64_C(1) << 40);
  if (doc.contains("read_only")) {
    if (!doc["read_only"].is_boolean()) fail(WF_EINVAL, "options: \"read_only\" must be a boolean");
    o.read_only = doc["read_only"].get<bool>();
  }
  o.metrics_by_tenant = get_flag(doc, "metrics_by_tenant", w, false);
  o.claim_on_insert = get_flag(doc, "claim_on_insert", w, true);
  o.admin_listen = get_string(doc, "admin_listen", w, false, "");
  o.admin_allow_remote = get_flag(doc, "admin_allow_remote", w, false);
  o.admin_max_connections = static_cast<int>(get_int(doc, "admin_max_connections", w, 16, 1, 1024));
  o.admin_idle_timeout_ms = get_int(doc, "admin_idle_timeout_ms", w, 10000, 10, 3600000);
  if (!o.admin_listen.empty()) {
    sockaddr_storage addr;
    socklen_t len;
    admin::parse_listen(o.admin_listen, o.admin_allow_remote, &addr, &len);
  }
  return o;
}

EffectPolicy parse_policy(const char *policy_json, const Limits &lim) {
  if (!policy_json || !*policy_json) return EffectPolicy{};
  json doc = parse_json(policy_json, lim, "policy", 1 << 16);
  check_keys(doc,
             {"timeout_ms", "max_attempts", "backoff", "concurrency", "tenant_concurrency",
              "circuit", "max_interruptions", "abandon_after_ms"},
             "policy");
  return parse_policy_doc(doc);
}

EffectPolicy parse_policy_doc(const json &doc) {
  EffectPolicy p;
  const char *w = "policy";
  p.timeout_ms = get_int(doc, "timeout_ms", w, 30000, 0, INT64_C(86400000) * 7);
  p.max_attempts = static_cast<int>(get_int(doc, "max_attempts", w, 0, 1, 1000000));
  if (doc.contains("backoff"))
    p.backoff = parse_backoff(doc["backoff"], Backoff{}, "policy.backoff");
  p.concurrency = static_cast<int>(get_int(doc, "concurrency", w, 0, 0, 1000000));
  p.tenant_concurrency = static_cast<int>(get_int(doc, "tenant_concurrency", w, 0, 0, 1000000));
  p.max_interruptions = static_cast<int>(get_int(doc, "max_interruptions", w, 0, 1, 1000000));
  p.abandon_after_ms = get_int(doc, "abandon_after_ms", w, -1, 0, INT64_C(86400000) * 7);
  if (doc.contains("circuit")) {
    const json &c = doc["circuit"];
    const char *cw = "policy.circuit";
    check_keys(c, {"failure_ratio", "window", "min_attempts", "cooldown_ms"}, cw);
    p.circuit.enabled = true;
    p.circuit.failure_ratio = get_double(c, "failure_ratio", cw, 0.5, 0.0001, 1.0);
    p.circuit.window = static_cast<int>(get_int(c, "window", cw, 20, 1, 100000));
    p.circuit.min_attempts = static_cast<int>(get_int(c, "min_attempts", cw, 10, 1, 100000));
    p.circuit.cooldown_ms = get_int(c, "cooldown_ms", cw, 30000, 0, INT64_C(86400000));
    if (p.circuit.min_attempts > p.circuit.window) p.circuit.min_attempts = p.circuit.window;
  }
  return p;
}

int resolve_max_attempts(const Engine &e, const EffectPolicy *p,
                         const std::optional<int64_t> &job) {
  if (job) return static_cast<int>(*job);
  if (p && p->max_attempts > 0) return p->max_attempts;
  return e.opt.max_attempts;
}

// ------------------------------------------------------------ job docs

NewJob decode_job(const json &doc, const Options &opt, int64_t now, const char *what) {
  if (!doc.is_object()) fail(WF_EINVAL, std::string(what) + " must be a JSON object");
  NewJob j;
  j.effect = get_string(doc, "effect", what, true);
  if (j.effect.empty() || j.effect.size() > 200)
    fail(WF_EINVAL, std::string(what) + ": \"effect\" must be 1 to 200 bytes");
  check_no_nul(j.effect, "effect", what);
  j.tenant = get_string(doc, "tenant", what, false, "");
  check_no_nul(j.tenant, "tenant", what);
  if (j.tenant.size() > 200)
    fail(WF_EINVAL, std::string(what) + ": \"tenant\" is longer than 200 bytes");
  if (doc.contains("key") && !doc["key"].is_null()) {
    j.key = get_string(doc, "key", what, true);
    if (j.key->empty() || j.key->size() > 1024)
      fail(WF_EINVAL, std::string(what) + ": \"key\" must be 1 to 1024 bytes");
    check_no_nul(*j.key, "key", what);
  }
  auto pit = doc.find("payload");
  j.payload = (pit == doc.end()) ? "null" : pit->dump();
  if (j.payload.size() > opt.limits.max_payload_bytes)
    fail(WF_ETOOBIG, std::string(what) + ": \"payload\" is " + std::to_string(j.payload.size()) +
                         " bytes, over max_payload_bytes " +
                         std::to_string(opt.limits.max_payload_bytes));
  json meta = json::object();
  auto mit = doc.find("metadata");
  if (mit != doc.end() && !mit->is_null()) {
    if (!mit->is_object())
      fail(WF_EINVAL, std::string(what) + ": \"metadata\" must be a JSON object");
    meta = *mit;
  }
  // Forward compatibility: unknown top-level fields are kept in metadata.
  static const char *known[] = {"effect",   "payload",      "tenant",   "key",     "run_at",
                                "delay_ms", "max_attempts", "priority", "metadata"};
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    bool k = false;
    for (const char *n : known)
      if (it.key() == n) k = true;
    if (!k && !meta.contains(it.key())) meta[it.key()] = it.value();
  }
  trace::check_fields(meta, what);
  j.metadata = meta.dump();
  if (j.metadata.size() > 65536)
    fail(WF_ETOOBIG, std::string(what) + ": \"metadata\" is over 65536 bytes");
  j.priority = get_int(doc, "priority", what, 0, -1000000000, 1000000000);
  if (doc.contains("run_at") && doc.contains("delay_ms") && !doc["run_at"].is_null() &&
      !doc["delay_ms"].is_null())
    fail(WF_EINVAL, std::string(what) + ": give either \"run_at\" or \"delay_ms\", not both");
  int64_t delay = get_int(doc, "delay_ms", what, 0, 0, INT64_C(1) << 45);
  j.run_at = get_time(doc, "run_at", what, sat_add(now, delay));
  if (doc.contains("max_attempts") && !doc["max_attempts"].is_null())
    j.max_attempts = get_int(doc, "max_attempts", what, 0, 1, 1000000);
  return j;
}

// -------------------------------------------------------------- engine

namespace {
std::mutex g_live_mu;
std::set<std::string> g_live_boots;  // boots alive in this process
// Database files of the engines open in this process (or inherited across
// fork(): an inherited engine is never destroyed in the child), by inode,
// with the fork generation they were opened in.
struct OpenFile {
  dev_t dev;
  ino_t ino;
  uint64_t gen;
  const void *engine;
};
std::vector<OpenFile> g_open_files;  // GUARDED_BY(g_live_mu)
}  // namespace

bool boot_alive_in_process(const std::string &boot) {
  std::lock_guard<std::mutex> g(g_live_mu);
  return g_live_boots.count(boot) != 0;
}

namespace {
struct Orphans {
  std::mutex mu;
  std::set<JobCtx *> set;  // GUARDED_BY(mu)
};
// Never destroyed: orphaned handles stay reachable until the host completes
// them, also at process exit.
Orphans &orphans() {
  static auto *o = new Orphans;
  return *o;
}
}  // namespace

void adopt_orphan(JobCtx *j) {
  std::lock_guard<std::mutex> g(orphans().mu);
  orphans().set.insert(j);
}

void forget_orphan(JobCtx *j) {
  std::lock_guard<std::mutex> g(orphans().mu);
  orphans().set.erase(j);
}

namespace {
std::mutex g_default_log_mu;
wf_log_fn g_default_log_fn = nullptr;   // GUARDED_BY(g_default_log_mu)
void *g_default_log_user = nullptr;     // GUARDED_BY(g_default_log_mu)
int g_default_log_level = WF_LOG_INFO;  // GUARDED_BY(g_default_log_mu)
}  // namespace

void set_default_logger(int min_level, wf_log_fn fn, void *user) {
  std::lock_guard<std::mutex> g(g_default_log_mu);
  g_default_log_fn = fn;
  g_default_log_user = user;
  g_default_log_level = min_level;
}

// ---------------------------------------------------------------- fork

// A fork() copies only the calling thread: a mutex another thread held at
// that instant stays locked for ever in the child. The prepare handler takes
// the process-wide mutexes a fresh wf_open needs (ours, then SQLite's static
// ones), so none is held by a vanished thread; parent and child release them.
namespace {
std::atomic<uint64_t> g_fork_gen{0};

void fork_prepare() {
  g_default_log_mu.lock();
  g_live_mu.lock();
  sqlite_fork_prepare();
}
void fork_parent() {
  sqlite_fork_release();
  g_live_mu.unlock();
  g_default_log_mu.unlock();
}
void fork_child() {
  sqlite_fork_release();
  g_live_mu.unlock();
  g_default_log_mu.unlock();
  g_fork_gen.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

uint64_t fork_generation() { return g_fork_gen.load(std::memory_order_relaxed); }

void install_fork_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    sqlite_fork_init();
    if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
      fail(WF_ENOMEM, "pthread_atfork failed");
  });
}

Engine::Engine(const std::string &p, Options o) : path(p), opt(std::move(o)) {
  boot_id = random_hex(12);
  link->e = this;  // no handle exists yet: no lock needed
  {
    std::lock_guard<std::mutex> g(g_default_log_mu);
    log_fn = g_default_log_fn;
    log_user = g_default_log_user;
    log_level = g_default_log_level;
  }
  start_logger();
  try {
    open_body();
  } catch (...) {
    stop_logger();  // delivers what the failed open logged; no destructor runs
    throw;
  }
  // What wf_open logged reaches the logger before wf_open returns.
  std::unique_lock<std::mutex> lk(log_mu);
  flush_log(lk);
}

void Engine::open_body() {
  // Nothing is created for a name that cannot be a database file.
  check_db_path(path);
  install_fork_handlers();
  fork_gen = fork_generation();
  {
    // SQLite keeps per-file lock bookkeeping in process memory; in a child
    // that inherited a connection to this file it describes locks the child
    // does not hold, and a new connection would fail or hang at random.
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
      std::lock_guard<std::mutex> g(g_live_mu);
      for (const auto &f : g_open_files)
        if (f.dev == st.st_dev && f.ino == st.st_ino && f.gen != fork_gen)
          fail(WF_EFORKED, "wf_open: this process inherited (across fork()) an engine open on \"" +
                               path +
                               "\": SQLite cannot open the same file again in the child; open "
                               "engines after fork (or exec)");
    }
  }
  metrics.by_tenant = opt.metrics_by_tenant;
  if (opt.read_only) {
    open_read_only();
    return;
  }
  // The admin endpoint's socket first: a bad address or a port in use fails
  // the open before any thread starts or anything in the file changes.
  admin_bind();
  write_db = std::make_unique<Db>(path, false, opt.busy_timeout_ms, opt.vfs);
  // Decide whether the file is usable before changing anything in it (the
  // WAL switch below rewrites the header): a newer schema, tables named like
  // ours without a version, or a file that is not a SQLite database is
  // refused here, untouched. migrate() decides again under the write lock.
  inspect_schema(*write_db, path);
  {
    // A new file (no table yet) uses incremental auto-vacuum, so that the
    // maintenance thread can give free pages back to the file system
    // (retention.cpp). It must be chosen before the first table exists; an
    // existing file keeps its mode (docs/operations.md says how to convert).
    auto st = write_db->prepare("SELECT count(*) FROM sqlite_schema");
    bool empty = st->step() && st->col_int(0) == 0;
    st->reset();
    if (empty) write_db->exec("PRAGMA auto_vacuum=INCREMENTAL");
  }
  {
    // WAL must be set outside a transaction; it is persistent in the file.
    auto st = write_db->prepare("PRAGMA journal_mode=WAL");
    if (!st->step() || st->col_text(0) != "wal")
      fail(WF_EIO, "cannot switch \"" + path + "\" to WAL mode");
  }
  {
    // The switch commits when the statement is reset, and a failure there
    // is not reported by it: read the mode back from the file.
    auto st = write_db->prepare("PRAGMA journal_mode");
    if (!st->step() || st->col_text(0) != "wal")
      fail(WF_EIO, "cannot switch \"" + path + "\" to WAL mode (the change did not commit)");
  }
  write_db->exec("PRAGMA trusted_schema=OFF");
  write_db->exec("PRAGMA foreign_keys=OFF");
  // When SQLite starts the WAL over, the first commit truncates the file to
  // this size: after a burst (a large host transaction, a big purge) the WAL
  // does not keep its largest size on disk. 16 MiB is twice its normal
  // working size at the default checkpoint_pages.
  write_db->exec("PRAGMA journal_size_limit=16777216");
  write_db->exec(opt.durability_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  sync_full_now = opt.durability_full;
  migrate(*write_db, path);
  {
    // The database header says WAL (bytes 18-19 == 2) once the switch really
    // reached the file; a write or sync error during the switch is otherwise
    // silent and leaves a rollback-journal database behind.
    // (Read through SQLite's descriptor: closing one of our own would drop
    // the connections' POSIX locks on the file.)
    unsigned char hdr[20] = {0};
    if (write_db->read_header(hdr, sizeof hdr) && (hdr[18] != 2 || hdr[19] != 2))
      fail(WF_EIO, "cannot switch \"" + path + "\" to WAL mode: the file header did not change");
  }
  if (!opt.encryption_key.empty()) cipher = Cipher::from_hex(opt.encryption_key);
  opt.encryption_key.assign(opt.encryption_key.size(), '0');  // keep no copy around
  opt.encryption_key.clear();
  check_encryption_key();
  read_db = std::make_unique<Db>(path, true, opt.busy_timeout_ms, opt.vfs);
  read_db->exec("PRAGMA trusted_schema=OFF");
  api_db = std::make_unique<Db>(path, true, opt.busy_timeout_ms, opt.vfs);
  api_db->exec("PRAGMA trusted_schema=OFF");
  {
    std::lock_guard<std::mutex> g(g_live_mu);
    g_live_boots.insert(boot_id);
  }
  recover_on_open();
  if (opt.checkpoint_pages > 0) {
    ckpt_db = std::make_unique<Db>(path, false, opt.busy_timeout_ms, opt.vfs);
    {
      // A new connection learns the file is in WAL mode on its first read;
      // until then a checkpoint on it does nothing.
      auto st = ckpt_db->prepare("PRAGMA journal_mode");
      if (!st->step() || st->col_text(0) != "wal")
        fail(WF_EIO, "checkpoint connection: \"" + path + "\" is not in WAL mode");
    }
    write_db->set_wal_hook([this](int frames) {
      // Pages not yet copied: the WAL's size minus what the last pass copied
      // (less than that when SQLite has started the WAL over since). Asking
      // on every commit over the threshold would run checkpoints back to back,
      // each with two fsyncs, while the WAL waits for a restart.
      int64_t copied = ckpt_copied.load(std::memory_order_relaxed);
      if (copied > frames) copied = 0;
      if (frames - copied < opt.checkpoint_pages) return;
      // Under a steady stream of commits the background checkpoint never
      // catches up with the last frame, and SQLite starts the WAL over only
      // when a write begins with every frame copied back: past this size the
      // writer finishes the copy itself before its next transaction.
      if (frames >= opt.checkpoint_pages * kWalRestartFactor)
        wal_restart_due.store(true, std::memory_order_relaxed);
      std::lock_guard<std::mutex> g(ckpt_mu);
      if (ckpt_wanted) return;
      ckpt_wanted = true;
      ckpt_cv.notify_one();
    });
    checkpointer = std::thread([this] {
      ckpt_tid = std::this_thread::get_id();
      checkpointer_main();
    });
  }
  try {
    writer = std::thread([this] {
      writer_tid = std::this_thread::get_id();
      writer_main();
    });
  } catch (...) {
    stop_checkpointer();  // no destructor runs for a constructor that throws
    throw;
  }
  try {
    start_maintenance();
  } catch (...) {
    {
      std::lock_guard<std::mutex> g(wq_mu);
      writer_stop = true;
    }
    wq_cv.notify_all();
    writer.join();
    stop_checkpointer();
    throw;
  }
  {
    // Registered once nothing can fail any more (the destructor removes it).
    struct stat st;
    std::lock_guard<std::mutex> g(g_live_mu);
    if (::stat(path.c_str(), &st) == 0)
      g_open_files.push_back({st.st_dev, st.st_ino, fork_gen, this});
  }
  log(WF_LOG_INFO, "engine opened",
      json{{"event", "engine.opened"},
           {"path", path},
           {"schema_version", kSchemaVersion},
           {"encrypted", cipher != nullptr}});
}

void Engine::checkpointer_main() {
  std::unique_lock<std::mutex> lk(ckpt_mu);
  bool failing = false;
  for (;;) {
    ckpt_cv.wait(lk, [&] { return ckpt_stop || ckpt_wanted; });
    if (ckpt_stop) return;
    lk.unlock();
    int wal = 0, done = 0;
    std::string err;
    try {
      std::lock_guard<std::mutex> g(ckpt_run_mu);
      ckpt_db->checkpoint_passive(&wal, &done);
      ckpt_copied.store(done, std::memory_order_relaxed);
      n_checkpoints.fetch_add(1, std::memory_order_relaxed);
    } catch (const Error &ex) {
      // Busy: another process is checkpointing; the next commit asks again.
      if (ex.code() != WF_EBUSY) {
        err = ex.what();
        n_checkpoint_failures.fetch_add(1, std::memory_order_relaxed);
      }
    } catch (const std::exception &ex) {
      err = ex.what();
      n_checkpoint_failures.fetch_add(1, std::memory_order_relaxed);
    }
    if (!err.empty() && !failing)
      log(WF_LOG_WARN, "checkpoint failed; retrying", json{{"error", err}});
    else if (err.empty() && failing)
      log(WF_LOG_INFO, "checkpoint succeeded again", json{{"wal_frames", wal}});
    failing = !err.empty();
    lk.lock();
    // The next commit asks again if the WAL is still over the threshold. A
    // failing checkpoint (I/O error) is retried at most every 100 ms.
    ckpt_wanted = false;
    if (failing) ckpt_cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return ckpt_stop; });
  }
}

// Writer thread, outside a transaction: copies the frames the background
// checkpointer has not reached yet, so that the next write transaction starts
// the WAL over. A failure (a reader in the way, the checkpointer busy, I/O) is
// harmless: the next commit over the limit asks again.
void Engine::restart_wal() {
  int wal = 0, done = 0;
  try {
    // After the background pass in progress, if any: two checkpoints at once
    // make one of them fail with SQLITE_BUSY.
    std::lock_guard<std::mutex> g(ckpt_run_mu);
    write_db->checkpoint_passive(&wal, &done);
    ckpt_copied.store(done, std::memory_order_relaxed);
    n_writer_checkpoints.fetch_add(1, std::memory_order_relaxed);
  } catch (const std::exception &ex) {
    log(WF_LOG_DEBUG, "WAL restart checkpoint did not run", json{{"error", ex.what()}});
  }
}

void Engine::stop_checkpointer() {
  {
    std::lock_guard<std::mutex> g(ckpt_mu);
    ckpt_stop = true;
  }
  ckpt_cv.notify_all();
  if (checkpointer.joinable()) checkpointer.join();
  ckpt_db.reset();
}

Engine::~Engine() {
  stop_maintenance();  // it waits on the writer
  {
    std::lock_guard<std::mutex> g(wq_mu);
    writer_stop = true;
  }
  wq_cv.notify_all();
  if (writer.joinable()) writer.join();
  stop_notifier();  // after the writer: every accepted async write has its result
  stop_checkpointer();
  if (write_db) write_db->set_wal_hook(nullptr);
  {
    std::lock_guard<std::mutex> g(g_live_mu);
    g_live_boots.erase(boot_id);
    for (size_t i = 0; i < g_open_files.size(); ++i)
      if (g_open_files[i].engine == this) {
        g_open_files.erase(g_open_files.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
  }
  api_db.reset();
  read_db.reset();
  write_db.reset();
  stop_logger();
}

int64_t Engine::mono() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

int64_t Engine::now() const {
  auto *self = const_cast<Engine *>(this);
  std::lock_guard<std::mutex> g(self->clock_mu);
  // An injected clock is kept within +-2^62 ms (146 million years), so that
  // now + any duration the engine accepts (at most 2^45 ms) cannot overflow.
  constexpr int64_t kClockLimit = INT64_C(1) << 62;
  if (clock_fn) return std::clamp(clock_fn(clock_user), -kClockLimit, kClockLimit);
  return system_now_ms();
}

void Engine::log(int level, const std::string &msg, json fields) {
  if (level < log_level.load(std::memory_order_relaxed)) return;
  {
    std::lock_guard<std::mutex> g(log_mu);
    if (!log_fn || log_stop) return;
  }
  static const char *names[] = {"debug", "info", "warn", "error"};
  json line = json::object();
  line["ts"] = format_rfc3339(system_now_ms());
  line["level"] = names[std::clamp(level, 0, 3)];
  line["msg"] = msg;
  line["boot_id"] = boot_id;
  for (auto it = fields.begin(); it != fields.end(); ++it) line[it.key()] = it.value();
  std::string s = line.dump(-1, ' ', false, json::error_handler_t::replace);
  std::lock_guard<std::mutex> g(log_mu);
  if (log_stop) return;
  if (log_q.size() >= kLogQueueMax) {
    // Never block the thread that logs (it may be the writer the logger's
    // own API calls wait on): drop, count, and say so when there is room.
    n_log_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  log_q.emplace_back(level, std::move(s));
  ++log_queued;
  log_cv.notify_all();
}

void Engine::start_logger() {
  logger = std::thread([this] {
    logger_tid = std::this_thread::get_id();
    logger_main();
  });
}

void Engine::logger_main() {
  int64_t dropped_told = 0;
  std::unique_lock<std::mutex> lk(log_mu);
  for (;;) {
    log_cv.wait(lk, [&] { return log_stop || !log_q.empty(); });
    if (log_q.empty()) return;  // stopping, everything delivered
    auto item = std::move(log_q.front());
    log_q.pop_front();
    wf_log_fn fn = log_fn;
    void *user = log_user;
    log_busy = true;
    lk.unlock();
    if (fn) fn(user, item.first, item.second.c_str());
    int64_t dropped = n_log_dropped.load(std::memory_order_relaxed);
    if (fn && dropped != dropped_told) {
      json line{{"ts", format_rfc3339(system_now_ms())},
                {"level", "warn"},
                {"msg", "log lines dropped (logger too slow)"},
                {"boot_id", boot_id},
                {"dropped_total", dropped}};
      fn(user, WF_LOG_WARN, line.dump().c_str());
      dropped_told = dropped;
    }
    lk.lock();
    log_busy = false;
    ++log_delivered;
    log_cv.notify_all();
  }
}

void Engine::flush_log(std::unique_lock<std::mutex> &lk) {
  if (std::this_thread::get_id() == logger_tid.load()) return;
  uint64_t target = log_queued;
  log_cv.wait(lk, [&] { return log_delivered >= target; });
}

void Engine::set_logger(int min_level, wf_log_fn fn, void *user) {
  std::unique_lock<std::mutex> lk(log_mu);
  // Lines logged before this call go to the previous logger; once this
  // returns, the previous logger is not running and is not called again.
  // Not on an engine thread: a logger calling wf_sync would wait for the
  // loop that would wait here.
  if (!on_engine_thread()) {
    flush_log(lk);
    log_cv.wait(lk, [&] { return !log_busy; });
  }
  log_fn = fn;
  log_user = user;
  log_level = min_level;
}

void Engine::stop_logger() {
  {
    std::lock_guard<std::mutex> g(log_mu);
    log_stop = true;
  }
  log_cv.notify_all();
  if (logger.joinable()) logger.join();
}

bool Engine::on_engine_thread() const {
  auto me = std::this_thread::get_id();
  return me == writer_tid.load() || me == ckpt_tid.load() || me == loop_tid.load() ||
         me == logger_tid.load() || me == notifier_tid.load();
}

void Engine::check_own_tx(const char *what) {
  std::lock_guard<std::mutex> g(htx_mu);
  if (open_tx && open_tx->last_thread.load() == std::this_thread::get_id())
    fail(WF_EBUSY, std::string(what) +
                       ": this thread made the last call on the engine's open wf_tx, which "
                       "holds the writer: use the wf_tx_* functions, or commit or roll back first");
}

// A database written with a key records a sealed check value; opening it
// without the key, or with another key, fails here rather than later.
void Engine::check_encryption_key() {
  Db &db = opt.read_only ? *api_db : *write_db;
  db.exec(opt.read_only ? "BEGIN" : "BEGIN IMMEDIATE");
  try {
    static const char *kCheck = "wfengine encryption key check";
    std::string stored;
    bool have = false;
    {
      auto st = db.prepare("SELECT v FROM wf_meta WHERE k = 'enc_check'");
      if (st->step()) {
        have = true;
        stored = st->col_text(0);
      }
    }
    if (have && !cipher)
      fail(WF_EINVAL, "the database is encrypted: give the encryption_key option");
    if (have) {
      std::string plain;
      try {
        plain = cipher->open(stored, "wf_meta.enc_check");
      } catch (const Error &) {
        fail(WF_EINVAL, "encryption_key does not match the key this database was written with");
      }
      if (plain != kCheck)
        fail(WF_EINVAL, "encryption_key does not match the key this database was written with");
    } else if (cipher && !opt.read_only) {
      auto st = db.prepare("INSERT INTO wf_meta(k, v) VALUES('enc_check', ?1)");
      st->bind(1, cipher->seal(kCheck, "wf_meta.enc_check")).exec();
    }
    db.exec("COMMIT");
  } catch (...) {
    if (db.in_txn()) db.exec("ROLLBACK");
    throw;
  }
}

// Jobs leased by boots that are gone return to ready; their attempt is
// recorded as interrupted and counted in wf_jobs.interruptions (not against
// max_attempts). A boot is gone when its heartbeat is older than lease_ms
// (any host), or, on this host, when nobody holds its liveness lock (the
// kernel released it when its process died: this works across PID
// namespaces, where kill(pid, 0) cannot see the other process). Rows written
// without a lock slot (older rows, or file systems without OFD locks) fall
// back to the pid check.
void Engine::recover_on_open() {
  Db &db = *write_db;
  int64_t t = now();
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  boot_lock.open(path);
  db.exec("BEGIN IMMEDIATE");
  try {
    std::vector<std::string> gone;
    std::vector<int64_t> taken;  // slots of boots that stay
    {
      auto st = db.prepare("SELECT boot_id, pid, hostname, heartbeat_at, lock_slot FROM wf_boots");
      while (st->step()) {
        std::string b = st->col_text(0);
        pid_t pid = static_cast<pid_t>(st->col_int(1));
        bool same_host = st->col_text(2) == host;
        bool stale = st->col_int(3) < t - opt.lease_ms;
        bool has_slot = !st->col_null(4);
        int64_t slot = st->col_int(4);
        bool dead = false;
        int held = has_slot ? boot_lock.held_by_other(slot) : -1;
        if (same_host) {
          if (held >= 0)
            dead = held == 0;
          else if (pid == getpid())
            dead = !boot_alive_in_process(b);
          else
            dead = (kill(pid, 0) != 0 && errno == ESRCH);
        }
        if (dead || stale)
          gone.push_back(b);
        else if (has_slot)
          taken.push_back(slot);
      }
    }
    int64_t reclaimed = 0;
    lease::CountDeltas counts;
    lease::count_catch_up(db, counts);
    for (const auto &b : gone) {
      std::string why = "engine " + b + " stopped during the attempt";
      reclaimed += lease::interrupt_owner(db, counts, b, t, why.c_str());
      auto st = db.prepare("DELETE FROM wf_boots WHERE boot_id = ?1");
      st->bind(1, b).exec();
    }
    if (!gone.empty()) forget_boot_effects(db);
    // Our slot: free in the table and not locked by anyone (a live engine
    // whose row was removed as stale still holds its lock).
    int64_t slot = boot_lock.acquire(taken);
    auto st = db.prepare(
        "INSERT INTO wf_boots(boot_id, pid, hostname, started_at, heartbeat_at, lock_slot) "
        "VALUES(?1, ?2, ?3, ?4, ?4, ?5)");
    st->bind(1, boot_id).bind(2, static_cast<int64_t>(getpid())).bind(3, host).bind(4, t);
    if (slot >= 0)
      st->bind(5, slot);
    else
      st->bind_null(5);  // no OFD locks here: liveness by heartbeat (and pid)
    st->exec();
    auto tally = metrics.tally(counts);
    lease::flush_counts(db, counts);
    db.exec("COMMIT");
    Metrics::apply(tally);
    if (reclaimed) {
      json f;
      f["event"] = "jobs.recovered";
      f["jobs"] = reclaimed;
      f["boots"] = gone;
      log(WF_LOG_WARN, "recovered jobs leased by stopped engines", f);
    }
  } catch (...) {
    if (db.in_txn()) db.exec("ROLLBACK");
    boot_lock.close();
    throw;
  }
}

// ------------------------------------------------------------- writer

void Engine::post_hints(const WriteCtx &w) {
  if (!w.ready_now && w.next_due == INT64_MAX && !w.saga_ready && w.next_sched == INT64_MAX) return;
  notify_loop([&](Inbox &in) {
    in.ready_now |= w.ready_now;
    in.next_due = std::min(in.next_due, w.next_due);
    in.saga_ready |= w.saga_ready;
    in.next_sched = std::min(in.next_sched, w.next_sched);
  });
}

void Engine::submit(WriteReq req) {
  if (opt.read_only) {
    // No writer runs: the request fails at once (its waiter must not hang).
    if (req.after) req.after(WF_ESTATE, kReadOnlyRefusal);
    return;
  }
  {
    std::lock_guard<std::mutex> g(wq_mu);
    if (req.durable) ++wq_durable;
    wq.push_back(std::move(req));
  }
  wq_cv.notify_one();
}

namespace {
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int rc = WF_OK;
  std::string err;
};
}  // namespace

int Engine::submit_wait(std::function<void(WriteCtx &)> fn, bool savepoint, bool inserts_only,
                        bool one_id) {
  if (opt.read_only) {
    set_last_error(kReadOnlyRefusal);
    return WF_ESTATE;
  }
  Waiter w;
  WriteReq r;
  r.fn = std::move(fn);
  r.durable = true;
  r.savepoint = savepoint;
  r.inserts_only = inserts_only;
  r.one_id = one_id;
  r.after = [&w](int rc, const std::string &err) {
    std::lock_guard<std::mutex> g(w.mu);
    w.rc = rc;
    w.err = err;
    w.done = true;
    w.cv.notify_one();
  };
  {
    // The writer is idle and nothing is queued: run the request here, on
    // the caller's thread, saving two thread hand-offs (the writer would
    // take it alone anyway). Requests queued meanwhile wait for wq_busy.
    std::unique_lock<std::mutex> q(wq_mu);
    if (!wq_busy && wq.empty() && !writer_stop) {
      wq_busy = true;
      last_durable = 1;
      q.unlock();
      n_caller_commits.fetch_add(1, std::memory_order_relaxed);
      std::vector<WriteReq> batch;
      batch.push_back(std::move(r));
      try {
        run_batch(batch);
      } catch (...) {
        q.lock();
        wq_busy = false;
        q.unlock();
        wq_cv.notify_one();
        throw;
      }
      q.lock();
      wq_busy = false;
      bool more = !wq.empty();
      q.unlock();
      if (more) wq_cv.notify_one();
    } else {
      q.unlock();
      submit(std::move(r));
    }
  }
  std::unique_lock<std::mutex> lk(w.mu);
  w.cv.wait(lk, [&] { return w.done; });
  if (w.rc != WF_OK) set_last_error(w.err);
  return w.rc;
}

void Engine::writer_main() {
  std::vector<WriteReq> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(wq_mu);
      wq_cv.wait(lk, [&] { return (writer_stop || !wq.empty()) && !wq_busy; });
      if (wq.empty() && writer_stop) return;
      wq_busy = true;  // until this batch ran (see submit_wait)
      // Adaptive group commit: when the last commit carried several waiting
      // callers and fewer are queued now, the others are usually on their way
      // (woken by that commit); wait a few microseconds for them so one fsync
      // serves them all. A lone caller never waits.
      if (opt.group_commit_wait_us > 0 && last_durable > 1 && wq_durable > 0 &&
          wq_durable < last_durable && !wq.front().host_tx) {
        int want = last_durable;
        wq_cv.wait_for(lk, std::chrono::microseconds(opt.group_commit_wait_us),
                       [&] { return writer_stop || wq_durable >= want; });
      }
      // Take everything up to the first host transaction (which runs alone).
      while (!wq.empty() && batch.size() < 8192) {
        if (wq.front().host_tx) {
          if (batch.empty()) {
            batch.push_back(std::move(wq.front()));
            wq.pop_front();
          }
          break;
        }
        batch.push_back(std::move(wq.front()));
        wq.pop_front();
      }
      int durable = 0;
      for (auto &r : batch) durable += r.durable;
      wq_durable -= durable;
      last_durable = durable;
    }
    if (batch.size() == 1 && batch[0].host_tx)
      run_host_tx(batch[0]);
    else
      run_batch(batch);
    batch.clear();
    std::lock_guard<std::mutex> g(wq_mu);
    wq_busy = false;
  }
}

namespace {
constexpr const char *kSqlBegin = "BEGIN IMMEDIATE";
constexpr const char *kSqlCommit = "COMMIT";
constexpr const char *kSqlSavepoint = "SAVEPOINT r";
constexpr const char *kSqlRelease = "RELEASE r";
constexpr const char *kSqlRollbackTo = "ROLLBACK TO r";
// Failures that belong to the database or the process, not to one request's
// data: the whole transaction is lost and re-running it would not help.
bool batch_wide(int code) {
  return code == WF_EIO || code == WF_EBUSY || code == WF_ENOMEM || code == WF_ECORRUPT;
}
// Requests the first pass runs in groups: 1 an asynchronous enqueue, 2 a
// plain completion; 0 none.
int group_kind(const WriteReq &r) {
  if (r.savepoint) return 0;
  if (r.job) return 1;
  return r.done_id != 0 ? 2 : 0;
}
}  // namespace

void Engine::run_batch(std::vector<WriteReq> &batch) {
  Db &db = *write_db;
  bool want_full = false;
  if (opt.durability_full)
    for (auto &r : batch)
      if (r.durable) want_full = true;
  std::vector<int> rcs(batch.size(), WF_OK);
  std::vector<std::string> errs(batch.size());
  // Requests without a savepoint (claims, outcomes, renewals) run bare for
  // speed; when one of them throws on its own data, the transaction is
  // rolled back and run again without it, so that it fails alone and the
  // others in the batch still commit (a few passes at most).
  std::vector<char> dropped(batch.size(), 0);
  constexpr int kMaxPasses = 4;
  const int64_t t = now();
  int batch_rc = WF_OK;
  std::string batch_err;
  // Consecutive asynchronous enqueues are inserted together in the first
  // pass (Engine::insert_job_group), consecutive plain completions deleted
  // together (finish_done_group); when such a group fails, the next pass
  // runs every request alone in its savepoint.
  bool group_failed = false;
  bool inserts_only = true;
  for (auto &r : batch)
    if (!r.inserts_only && !r.job) inserts_only = false;
  // Db::ids may keep what this transaction's only next_job_id call noted.
  const bool one_id = batch.size() == 1 && batch[0].one_id;
  for (int pass = 1;; ++pass) {
    WriteCtx w{db, t};
    w.may_claim = opt.claim_on_insert;
    w.inserts_only = inserts_only;
    batch_rc = WF_OK;
    batch_err.clear();
    size_t culprit = batch.size();  // a bare request that failed on its own
    try {
      if (want_full != sync_full_now) {
        db.exec(want_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        sync_full_now = want_full;
      }
      if (wal_restart_due.exchange(false, std::memory_order_relaxed)) restart_wal();
      // Cached statements: sqlite3_exec parses the text on every call (3%
      // of a synchronous wf_enqueue's CPU for the two).
      db.ids_begin();
      db.prepare(kSqlBegin)->exec();
      // A batch that may change existing jobs counts the rows above the
      // counts watermark first (lease.h); one that only inserts may leave
      // its own rows uncounted (flush_counts below).
      if (!inserts_only) lease::count_catch_up(db, w.counts);
      for (size_t i = 0; i < batch.size(); ++i) {
        if (dropped[i]) continue;
        WriteReq &r = batch[i];
        rcs[i] = WF_OK;
        errs[i].clear();
        const int kind = group_kind(r);
        if (pass == 1 && kind != 0 && i + 1 < batch.size() && group_kind(batch[i + 1]) == kind) {
          size_t end = i + 2;
          while (end < batch.size() && group_kind(batch[end]) == kind) ++end;
          try {
            if (r.job)
              insert_job_group(w, batch, i, end);
            else
              finish_done_group(w, batch, i, end);
          } catch (const Error &e) {
            if (!batch_wide(e.code())) group_failed = true;
            throw;
          } catch (const std::bad_alloc &) {
            throw;
          } catch (const std::exception &) {
            group_failed = true;
            throw;
          }
          i = end - 1;
          continue;
        }
        // From the second pass on every request runs in a savepoint: a
        // request that fails there fails alone, however many do. A request
        // alone in its batch needs none in the first pass (its failure rolls
        // back the transaction, which holds nothing else).
        if ((!r.savepoint || batch.size() == 1) && pass == 1) {
          try {
            r.fn(w);
          } catch (const Error &e) {
            if (!batch_wide(e.code())) {
              culprit = i;
              rcs[i] = e.code();
              errs[i] = e.what();
            }
            throw;
          } catch (const std::bad_alloc &) {
            throw;
          } catch (const std::exception &e) {
            culprit = i;
            rcs[i] = WF_EINTERNAL;
            errs[i] = std::string("internal error: ") + e.what();
            throw;
          }
          continue;
        }
        // Cached prepared statements: sqlite3_exec would parse them again
        // for every request.
        db.prepare(kSqlSavepoint)->exec();
        WriteCtx sub{db, w.now};
        sub.start_sub(w);
        try {
          r.fn(sub);
          db.prepare(kSqlRelease)->exec();
          w.merge(sub);
        } catch (const Error &e) {
          rcs[i] = e.code();
          errs[i] = e.what();
          db.prepare(kSqlRollbackTo)->exec();
          db.prepare(kSqlRelease)->exec();
        } catch (const std::bad_alloc &) {
          rcs[i] = WF_ENOMEM;
          errs[i] = "out of memory";
          db.prepare(kSqlRollbackTo)->exec();
          db.prepare(kSqlRelease)->exec();
        } catch (const std::exception &e) {
          rcs[i] = WF_EINTERNAL;
          errs[i] = std::string("internal error: ") + e.what();
          db.prepare(kSqlRollbackTo)->exec();
          db.prepare(kSqlRelease)->exec();
        }
      }
      auto tally = metrics.tally(w.counts);
      lease::flush_counts(db, w.counts, inserts_only);
      int64_t c0 = mono_us();
      db.prepare(kSqlCommit)->exec();
      db.ids_committed(one_id);
      metrics.commit_latency.observe(mono_us() - c0);
      metrics.batch_size.observe(static_cast<int64_t>(batch.size()));
      note_commit(w, tally);
      n_commits.fetch_add(1, std::memory_order_relaxed);
      if (want_full) WF_FAILPOINT("after_commit_before_return");
    } catch (const Error &e) {
      batch_rc = e.code();
      batch_err = e.what();
    } catch (const std::exception &e) {
      batch_rc = WF_EINTERNAL;
      batch_err = e.what();
    }
    if (batch_rc == WF_OK) {
      deliver_claims(w);
      post_hints(w);
      break;
    }
    if (db.in_txn()) {
      try {
        db.exec("ROLLBACK");
      } catch (...) {
      }
    }
    if (group_failed && pass == 1 && !db.in_txn()) continue;  // each alone next
    if (culprit == batch.size() || pass >= kMaxPasses || db.in_txn()) break;
    dropped[culprit] = 1;
    log(WF_LOG_ERROR, "write request failed; the rest of its batch runs again without it",
        json{{"error", errs[culprit]}});
  }
  if (batch_rc != WF_OK) {
    log(WF_LOG_ERROR, "write transaction failed", json{{"error", batch_err}});
    for (size_t i = 0; i < batch.size(); ++i) {
      if (dropped[i]) continue;
      rcs[i] = batch_rc;
      errs[i] = batch_err;
    }
  }
  for (size_t i = 0; i < batch.size(); ++i)
    if (batch[i].after) batch[i].after(rcs[i], errs[i]);
  flush_async_results();
}

void Engine::run_host_tx(WriteReq &req) {
  std::shared_ptr<HostTx> tx = req.tx;
  Db &db = *write_db;
  int rc = WF_OK;
  std::string err;
  try {
    if (opt.durability_full && !sync_full_now) {
      db.exec("PRAGMA synchronous=FULL");
      sync_full_now = true;
    }
    if (wal_restart_due.exchange(false, std::memory_order_relaxed)) restart_wal();
    db.exec("BEGIN IMMEDIATE");
  } catch (const Error &e) {
    rc = e.code();
    err = e.what();
  }
  std::unique_lock<std::mutex> lk(tx->mu);
  if (rc == WF_OK) {
    // The host's wf_tx_* calls may change jobs: count the rows above the
    // counts watermark first (lease.h).
    try {
      lease::count_catch_up(db, tx->counts);
    } catch (const Error &e) {
      rc = e.code();
      err = e.what();
      try {
        db.exec("ROLLBACK");
      } catch (...) {
      }
    }
  }
  if (rc == WF_OK) {
    std::lock_guard<std::mutex> g(htx_mu);
    open_tx = tx.get();
  }
  tx->granted = true;
  tx->grant_rc = rc;
  tx->grant_err = err;
  tx->cv.notify_all();
  if (rc != WF_OK) return;
  // The host commits or rolls back (from any thread), tells the loop what
  // changed, then releases the connection back to us. A transaction open
  // longer than tx_timeout_ms is abandoned: roll it back here (tx->mu is held
  // again once wait_for returns, so no host call on it is running).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opt.tx_timeout_ms);
  if (tx->cv.wait_until(lk, deadline, [&] { return tx->released; })) return;
  try {
    if (db.in_txn()) db.exec("ROLLBACK");
  } catch (const std::exception &ex) {
    log(WF_LOG_ERROR, "rollback of an abandoned host transaction failed",
        json{{"error", ex.what()}});
  }
  tx->state = HostTx::kTimedOut;
  tx->released = true;
  n_tx_timeouts.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> g(htx_mu);
    if (open_tx == tx.get()) open_tx = nullptr;
  }
  lk.unlock();
  log(WF_LOG_WARN, "host transaction rolled back: open longer than tx_timeout_ms",
      json{{"tx_timeout_ms", opt.tx_timeout_ms}});
}

}  // namespace wf
