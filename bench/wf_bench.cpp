// wf_bench — throughput and latency of wfengine, measured next to the
// machine's own durable-commit limits (plain SQLite on the same disk).
//
// One run measures, in order:
//   1. machine limits: 4 KiB write+fdatasync rate, single-row durable SQLite
//      commit rate, 100-row durable SQLite transaction rate (WAL, FULL);
//   2. wf_enqueue from 1 and from N threads (jobs/s, per-call p50/p99); from
//      1 thread again in slices alternating with bare single-row commits
//      (the ratio of issue 9, independent of the disk's drift);
//   3. end to end: batched producer + relay + no-op effect (jobs/s), until the
//      last callback and until wf_sync() confirms the outcomes are committed;
//   4. wf_enqueue from 1 thread paced at 1,000 jobs/s, relay idle (call p99),
//      then the bare single-row commit paced the same way;
//   5. enqueue-to-dispatch latency at a paced 1,000 jobs/s, relay running.
//
// Usage: wf_bench [--quick] [--json] [--verbose] [--limits-only] [--dir DIR] [--seconds S]
//                 [--jobs N] [--batch N] [--threads N] [--lat-seconds S]
//                 [--lat-rate N] [--lat-producers N]
// The table goes to stdout; with --json the table goes to stderr and stdout
// carries one JSON object with every figure. Exit status is non-zero when any
// wf_* call fails, the engine loses/duplicates jobs, or a step hangs.

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <wfengine.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common.h"

using namespace wfb;

namespace {

// ------------------------------------------------------------------ helpers

double secs_between(int64_t a_ns, int64_t b_ns) { return double(b_ns - a_ns) / 1e9; }

// Latency summary of a set of samples in nanoseconds (nearest-rank percentiles).
struct LatStats {
  int64_t count = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0, mean_ms = 0;
};

LatStats summarize(std::vector<int64_t> v) {
  LatStats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto rank = [&](double p) {
    size_t idx = size_t(std::max(1.0, std::ceil(p * double(v.size())))) - 1;
    return double(v[std::min(idx, v.size() - 1)]) / 1e6;
  };
  double sum = 0;
  for (int64_t x : v) sum += double(x);
  s.count = int64_t(v.size());
  s.p50_ms = rank(0.50);
  s.p99_ms = rank(0.99);
  s.max_ms = double(v.back()) / 1e6;
  s.mean_ms = sum / double(v.size()) / 1e6;
  return s;
}

json lat_json(const LatStats &s) {
  return json{{"count", s.count},
              {"p50_ms", s.p50_ms},
              {"p99_ms", s.p99_ms},
              {"max_ms", s.max_ms},
              {"mean_ms", s.mean_ms}};
}

// ------------------------------------------------------------ results

void set_result(const json::json_pointer &ptr, json value) {
  std::lock_guard<std::mutex> lk(g_results_mu);
  g_results[ptr] = std::move(value);
}

// ------------------------------------------------------------ configuration

struct Config {
  bool quick = false;
  bool json_out = false;
  bool verbose = false;
  bool limits_only = false;  // measure the machine only
  std::string dir;           // parent of the temp dir
  double phase_s = 3.0;      // per throughput phase
  int64_t e2e_jobs = 200000;
  int batch = 1000;
  int threads = 8;
  double lat_s = 5.0;
  int lat_rate = 1000;    // jobs/s in the latency phase
  int lat_producers = 8;  // open-loop pacing threads
};

[[noreturn]] void usage(int code) {
  std::fprintf(
      code ? stderr : stdout,
      "usage: wf_bench [--quick] [--json] [--verbose] [--limits-only] [--dir DIR] [--seconds S]\n"
      "                [--jobs N] [--batch N] [--threads N] [--lat-seconds S]\n"
      "                [--lat-rate N] [--lat-producers N]\n"
      "  --quick         short run: 1 s per phase, 20000 jobs end to end, 1 s latency\n"
      "  --json          JSON object of all figures on stdout (table on stderr)\n"
      "  --verbose       engine log at INFO, wf_stats after the end-to-end phase\n"
      "  --limits-only   measure only the machine limits (plain SQLite, fdatasync)\n"
      "  --dir DIR       where to create the temp dir (default $TMPDIR or /tmp)\n"
      "  --seconds S     duration of each throughput phase (default 3)\n"
      "  --jobs N        jobs in the end-to-end phase (default 200000)\n"
      "  --batch N       jobs per wf_enqueue_batch call (default 1000)\n"
      "  --threads N     threads of the multi-thread enqueue phase (default 8)\n"
      "  --lat-seconds S duration of the latency phase (default 5)\n"
      "  --lat-rate N    enqueue rate of the latency phase, jobs/s (default 1000)\n"
      "  --lat-producers N  pacing threads in the latency phase (default 8)\n");
  std::exit(code);
}

Config parse_args(int argc, char **argv) {
  Config c;
  // --quick first so that explicit sizes given with it win.
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      c.quick = true;
      c.phase_s = 1.0;
      c.e2e_jobs = 20000;
      c.lat_s = 1.0;
    }
  }
  auto need = [&](int &i) -> const char * {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "wf_bench: %s needs a value\n", argv[i]);
      usage(2);
    }
    return argv[++i];
  };
  auto num = [&](const char *s, double lo) {
    char *end = nullptr;
    double v = std::strtod(s, &end);
    if (!end || *end || !(v >= lo)) {
      std::fprintf(stderr, "wf_bench: bad number '%s'\n", s);
      usage(2);
    }
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--quick")
      continue;
    else if (a == "--json")
      c.json_out = true;
    else if (a == "--verbose")
      c.verbose = true;
    else if (a == "--limits-only")
      c.limits_only = true;
    else if (a == "--help" || a == "-h")
      usage(0);
    else if (a == "--dir")
      c.dir = need(i);
    else if (a == "--seconds")
      c.phase_s = num(need(i), 0.1);
    else if (a == "--jobs")
      c.e2e_jobs = int64_t(num(need(i), 1));
    else if (a == "--batch")
      c.batch = int(num(need(i), 1));
    else if (a == "--threads")
      c.threads = int(num(need(i), 1));
    else if (a == "--lat-seconds")
      c.lat_s = num(need(i), 0.1);
    else if (a == "--lat-rate")
      c.lat_rate = int(num(need(i), 1));
    else if (a == "--lat-producers")
      c.lat_producers = int(num(need(i), 1));
    else {
      std::fprintf(stderr, "wf_bench: unknown argument '%s'\n", argv[i]);
      usage(2);
    }
  }
  if (c.dir.empty()) {
    const char *t = std::getenv("TMPDIR");
    c.dir = (t && *t) ? t : "/tmp";
  }
  return c;
}

// ------------------------------------------------------------- machine info

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) {
        std::string m = line.substr(p + 1);
        m.erase(0, m.find_first_not_of(" \t"));
        return m;
      }
    }
  }
  return "unknown";
}

std::string fs_type(const std::string &path) {
  struct statfs s;
  if (statfs(path.c_str(), &s) != 0) return "unknown";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53UL:
      return "ext2/3/4";
    case 0x58465342UL:
      return "xfs";
    case 0x9123683EUL:
      return "btrfs";
    case 0x01021994UL:
      return "tmpfs (fsync is a no-op!)";
    case 0x794C7630UL:
      return "overlayfs";
    case 0x2FC12FC1UL:
      return "zfs";
    case 0xF2F52010UL:
      return "f2fs";
    default:
      return strf("0x%lx", static_cast<unsigned long>(s.f_type));
  }
}

// --------------------------------------------------------- machine limits

struct RateResult {
  int64_t ops = 0;  // fdatasyncs or transactions
  double secs = 0;
  double rate = 0;  // ops/s (rows/s for the multi-row phase)
  LatStats lat;     // per op / per transaction
};

RateResult bench_fdatasync(const std::string &path, double seconds, bool append) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) die(strf("open %s: %s", path.c_str(), std::strerror(errno)));
  alignas(4096) static char buf[4096];
  std::memset(buf, 'x', sizeof buf);
  auto write_at = [&](off_t off) {
    if (::pwrite(fd, buf, sizeof buf, off) != ssize_t(sizeof buf))
      die(strf("pwrite %s: %s", path.c_str(), std::strerror(errno)));
  };
  if (!append) {  // allocate the block once; the loop then only rewrites data
    write_at(0);
    if (::fsync(fd) != 0) die(strf("fsync: %s", std::strerror(errno)));
  }
  std::vector<int64_t> lat;
  lat.reserve(1 << 16);
  off_t off = 0;
  int64_t t0 = now_ns();
  int64_t deadline = t0 + int64_t(seconds * 1e9);
  int64_t t = t0;
  while (t < deadline) {
    write_at(append ? off : 0);
    if (::fdatasync(fd) != 0) die(strf("fdatasync: %s", std::strerror(errno)));
    int64_t t2 = now_ns();
    lat.push_back(t2 - t);
    t = t2;
    off += off_t(sizeof buf);
  }
  ::close(fd);
  ::unlink(path.c_str());
  RateResult r;
  r.ops = int64_t(lat.size());
  r.secs = secs_between(t0, t);
  r.rate = double(r.ops) / r.secs;
  r.lat = summarize(std::move(lat));
  return r;
}

void remove_db_files(const std::string &path) {
  for (const char *suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((path + suffix).c_str());
}

void sq_check(sqlite3 *db, int rc, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    die(strf("sqlite %s: %d %s", what, rc, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

// A plain SQLite database (WAL, synchronous=FULL) taking durable commits of
// `rows` INSERTs each. The row mimics a job: effect name, small JSON payload,
// time.
class BareDb {
 public:
  explicit BareDb(const std::string &path) : path_(path) {
    remove_db_files(path);
    sq_check(
        db_,
        sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
        "open");
    sqlite3_stmt *st = nullptr;
    sq_check(db_, sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, &st, nullptr), "prepare");
    sq_check(db_, sqlite3_step(st), "journal_mode");
    std::string mode = reinterpret_cast<const char *>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (mode != "wal") die("sqlite: could not switch to WAL (got " + mode + ")");
    sq_check(db_, sqlite3_exec(db_, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr),
             "pragma");
    sq_check(db_,
             sqlite3_exec(db_,
                          "CREATE TABLE jobs(id INTEGER PRIMARY KEY, effect TEXT NOT NULL,"
                          " payload TEXT NOT NULL, run_at INTEGER NOT NULL)",
                          nullptr, nullptr, nullptr),
             "create");
    // Steady state first: a WAL that SQLite starts over (overwriting its
    // file) costs one flush per commit; one still growing also flushes the
    // file's new size. One transaction of 1,200 pages grows the WAL past the
    // 1,000-page autocheckpoint, and the checkpoint lets the next commit
    // start it over.
    sq_check(db_,
             sqlite3_exec(db_,
                          "CREATE TABLE warm(b BLOB); BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 "
                          "UNION ALL SELECT i + 1 FROM n WHERE i < 1200) INSERT INTO warm "
                          "SELECT zeroblob(4000) FROM n; COMMIT; DROP TABLE warm; "
                          "PRAGMA wal_checkpoint(PASSIVE);",
                          nullptr, nullptr, nullptr),
             "warm-up");
    sq_check(db_, sqlite3_prepare_v2(db_, "BEGIN IMMEDIATE", -1, &begin_, nullptr), "prepare");
    sq_check(db_, sqlite3_prepare_v2(db_, "COMMIT", -1, &commit_, nullptr), "prepare");
    sq_check(
        db_,
        sqlite3_prepare_v2(db_, "INSERT INTO jobs(effect, payload, run_at) VALUES('noop', ?, ?)",
                           -1, &ins_, nullptr),
        "prepare");
  }
  ~BareDb() {
    sqlite3_finalize(begin_);
    sqlite3_finalize(ins_);
    sqlite3_finalize(commit_);
    sq_check(db_, sqlite3_close(db_), "close");
    remove_db_files(path_);
  }
  BareDb(const BareDb &) = delete;
  BareDb &operator=(const BareDb &) = delete;

  // One durable transaction of `rows` INSERTs.
  void commit(int rows) {
    step(begin_, "BEGIN");
    int64_t ms = now_ns() / 1000000;
    for (int r = 0; r < rows; ++r) {
      char payload[64];
      int n = std::snprintf(payload, sizeof payload, "{\"i\":%lld}", static_cast<long long>(seq_));
      sqlite3_bind_text(ins_, 1, payload, n, SQLITE_TRANSIENT);
      sqlite3_bind_int64(ins_, 2, ms);
      step(ins_, "INSERT");
      ++seq_;
    }
    step(commit_, "COMMIT");
  }

 private:
  void step(sqlite3_stmt *s, const char *what) {
    sq_check(db_, sqlite3_step(s), what);
    sqlite3_reset(s);
  }
  std::string path_;
  sqlite3 *db_ = nullptr;
  sqlite3_stmt *begin_ = nullptr, *ins_ = nullptr, *commit_ = nullptr;
  int64_t seq_ = 0;
};

// Durable commits on plain SQLite, `rows` INSERTs per transaction.
RateResult bench_sqlite(const std::string &path, double seconds, int rows) {
  BareDb bare(path);
  std::vector<int64_t> lat;
  lat.reserve(1 << 16);
  int64_t t0 = now_ns();
  int64_t deadline = t0 + int64_t(seconds * 1e9);
  int64_t t = t0;
  while (t < deadline) {
    bare.commit(rows);
    int64_t t2 = now_ns();
    lat.push_back(t2 - t);
    t = t2;
  }
  RateResult r;
  r.ops = int64_t(lat.size());
  r.secs = secs_between(t0, t);
  r.rate = double(r.ops) * rows / r.secs;
  r.lat = summarize(std::move(lat));
  return r;
}

// ------------------------------------------------------------------ engine

int g_log_level = WF_LOG_WARN;
std::atomic<int> g_log_lines{0};
std::atomic<int> g_log_warnings{0};

void log_cb(void *, int level, const char *line) {
  if (level >= WF_LOG_WARN) g_log_warnings.fetch_add(1);
  int n = g_log_lines.fetch_add(1);
  if (n < 40) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    std::fprintf(stderr, "[engine %s] %s\n", (level >= 0 && level <= 3) ? names[level] : "?", line);
  } else if (n == 40) {
    std::fprintf(stderr, "[engine] further log lines suppressed\n");
  }
}

wf_engine *open_engine(const std::string &path) {
  remove_db_files(path);
  wf_engine *e = nullptr;
  {
    Step s("wf_open " + path, 60);
    wf_check(wf_open(path.c_str(), open_options(), &e), "wf_open");
  }
  if (!e) die("wf_open returned WF_OK but no engine");
  wf_check(wf_set_logger(e, g_log_level, log_cb, nullptr), "wf_set_logger");
  return e;
}

double close_engine(wf_engine *e, const std::string &path) {
  int64_t t = now_ns();
  {
    Step s("wf_close " + path, 120);
    wf_check(wf_close(e), "wf_close");
  }
  double secs = secs_between(t, now_ns());
  remove_db_files(path);
  return secs;
}

// Engine-side counters and process CPU time around a phase: commits/s and
// jobs per commit show how well the writer groups work; CPU shows whether the
// two cores, rather than the disk, are the limit.
// engine.commits from wf_stats, or -1 when the document has no such field.
int64_t engine_commits(wf_engine *e) {
  char *out = nullptr;
  wf_check(wf_stats(e, nullptr, &out), "wf_stats");
  int64_t n = -1;
  try {
    auto doc = nlohmann::json::parse(out ? out : "{}");
    if (doc.contains("engine") && doc["engine"].contains("commits"))
      n = doc["engine"]["commits"].get<int64_t>();
  } catch (const std::exception &) {
    n = -1;
  }
  wf_free(out);
  return n;
}

struct Probe {
  int64_t commits = -1;
  double cpu = 0;
  int64_t t = 0;
};

Probe probe(wf_engine *e) { return Probe{engine_commits(e), cpu_seconds(), now_ns()}; }

struct PhaseCost {
  double commits_s = -1;  // -1: engine does not report commits
  double jobs_per_commit = -1;
  double cpu_cores = 0;  // CPU seconds of the whole process per wall second
  int64_t commits = -1;
};

PhaseCost phase_cost(const Probe &a, const Probe &b, int64_t jobs) {
  PhaseCost c;
  double wall = secs_between(a.t, b.t);
  c.cpu_cores = wall > 0 ? (b.cpu - a.cpu) / wall : 0;
  if (a.commits >= 0 && b.commits >= 0) {
    c.commits = b.commits - a.commits;
    c.commits_s = wall > 0 ? double(c.commits) / wall : 0;
    c.jobs_per_commit = c.commits > 0 ? double(jobs) / double(c.commits) : 0;
  }
  return c;
}

json cost_json(const PhaseCost &c) {
  json j{{"cpu_cores_busy", c.cpu_cores}};
  if (c.commits >= 0) {
    j["commits"] = c.commits;
    j["commits_s"] = c.commits_s;
    j["jobs_per_commit"] = c.jobs_per_commit;
  }
  return j;
}

std::string cost_line(const PhaseCost &c) {
  std::string s;
  if (c.commits >= 0)
    s = strf("%.0f commits/s, %.1f jobs/commit, ", c.commits_s, c.jobs_per_commit);
  return s + strf("CPU %.2f cores busy", c.cpu_cores);
}

// ---------------------------------------------------------- enqueue phase

struct EnqueueResult {
  int64_t jobs = 0;
  double secs = 0;
  double rate = 0;
  LatStats lat;
  PhaseCost cost;
};

// One wf_enqueue of a small no-op job (payload {"i": i, "t": thread}); dies
// on an error or a missing id.
void enqueue_noop(wf_engine *e, int64_t i, int thread) {
  char doc[128];
  std::snprintf(doc, sizeof doc, "{\"effect\":\"noop\",\"payload\":{\"i\":%lld,\"t\":%d}}",
                static_cast<long long>(i), thread);
  char *id = nullptr;
  wf_check(wf_enqueue(e, doc, &id), "wf_enqueue");
  if (!id || !*id) die("wf_enqueue returned WF_OK without an id");
  wf_free(id);
}

EnqueueResult bench_enqueue(wf_engine *e, int threads, double seconds) {
  struct PerThread {
    std::vector<int64_t> lat;
    int64_t start = 0, end = 0;
  };
  std::vector<PerThread> per(static_cast<size_t>(threads));
  std::latch warmed(threads + 1), go(threads + 1);
  std::vector<std::thread> ts;
  for (int k = 0; k < threads; ++k) {
    ts.emplace_back([&, k] {
      PerThread &me = per[size_t(k)];
      me.lat.reserve(1 << 17);
      auto enqueue = [&](int64_t i) { enqueue_noop(e, i, k); };
      for (int w = 0; w < 20; ++w) enqueue(-1 - w);  // warm-up, not measured
      warmed.arrive_and_wait();
      go.arrive_and_wait();
      me.start = now_ns();
      int64_t deadline = me.start + int64_t(seconds * 1e9);
      int64_t t = me.start;
      for (int64_t i = 0; t < deadline; ++i) {
        enqueue(i);
        int64_t t2 = now_ns();
        me.lat.push_back(t2 - t);
        t = t2;
      }
      me.end = t;
    });
  }
  warmed.arrive_and_wait();
  Probe before = probe(e);
  go.arrive_and_wait();
  for (auto &t : ts) t.join();
  Probe after = probe(e);
  EnqueueResult r;
  int64_t start = INT64_MAX, end = 0;
  std::vector<int64_t> all;
  for (auto &p : per) {
    start = std::min(start, p.start);
    end = std::max(end, p.end);
    all.insert(all.end(), p.lat.begin(), p.lat.end());
  }
  r.jobs = int64_t(all.size());
  r.secs = secs_between(start, end);
  r.rate = double(r.jobs) / r.secs;
  r.lat = summarize(std::move(all));
  r.cost = phase_cost(before, after, r.jobs);
  return r;
}

// The engine's WAL in its steady state before a measured single-commit
// phase. Under a stream of one-page commits the WAL grows to 4 x
// checkpoint_pages frames (2,000 at the default 500) before the writer starts
// it over; from then on each commit overwrites a frame of the file. Until the
// file first reached that size every commit appended to it, and an append
// also flushes the file's new size: on the Xeon VM's ext4 0.19 ms against
// 0.12 ms for an overwrite (the limits above). A fresh engine would pay that
// for its first ~2,000 commits, ~7% of a 6 s phase (the interleaved ratio
// read 0.88x with a 600-page warm-up that stopped short of it, 0.92x after).
// The bare commit is warmed the same way (BareDb). `op` is one unmeasured
// call of the phase's own kind.
template <class Op>
void warm_wal(Op &&op) {
  for (int k = 0; k < 2200; ++k) op();
}

// One thread alternates slices of 50 bare single-row commits (BareDb on the
// same file system) and 50 wf_enqueue calls until the deadline: both see the
// same disk, so their ratio does not move with the disk's rate between
// phases (which on a shared VM changes 1.5x within a minute).
struct InterleavedResult {
  RateResult bare;
  EnqueueResult enq;
  double ratio = 0;
};

InterleavedResult bench_interleaved(wf_engine *e, const std::string &bare_path, double seconds) {
  constexpr int kSlice = 50;
  BareDb bare(bare_path);
  int64_t seq = 0;
  auto enqueue = [&] { enqueue_noop(e, seq++, 0); };
  warm_wal([&] { enqueue_noop(e, -1, 1); });
  for (int w = 0; w < 20; ++w) {  // warm-up, not measured
    bare.commit(1);
    enqueue();
  }
  std::vector<int64_t> bare_lat, enq_lat;
  bare_lat.reserve(1 << 16);
  enq_lat.reserve(1 << 16);
  // kSlice calls of `op`, each timed into `lat`; returns the slice's time.
  auto slice = [](auto &&op, std::vector<int64_t> &lat) {
    int64_t t0 = now_ns(), t = t0;
    for (int k = 0; k < kSlice; ++k) {
      op();
      int64_t t2 = now_ns();
      lat.push_back(t2 - t);
      t = t2;
    }
    return t - t0;
  };
  Probe before = probe(e);
  int64_t bare_ns = 0, enq_ns = 0;
  int64_t deadline = now_ns() + int64_t(seconds * 1e9);
  while (now_ns() < deadline) {
    bare_ns += slice([&] { bare.commit(1); }, bare_lat);
    enq_ns += slice(enqueue, enq_lat);
  }
  Probe after = probe(e);
  InterleavedResult r;
  r.bare.ops = int64_t(bare_lat.size());
  r.bare.secs = double(bare_ns) / 1e9;
  r.bare.rate = double(r.bare.ops) / r.bare.secs;
  r.bare.lat = summarize(std::move(bare_lat));
  r.enq.jobs = int64_t(enq_lat.size());
  r.enq.secs = double(enq_ns) / 1e9;
  r.enq.rate = double(r.enq.jobs) / r.enq.secs;
  r.enq.lat = summarize(std::move(enq_lat));
  r.enq.cost = phase_cost(before, after, r.enq.jobs);
  r.ratio = r.enq.rate / r.bare.rate;
  return r;
}

// ---------------------------------------------------- async enqueue phase

// `threads` producers call wf_enqueue_async until the deadline; the phase
// ends when wf_sync returned (every accepted job durable and called back).
// Checks: exactly one callback per accepted call, every one WF_OK.
struct AsyncCount {
  std::atomic<int64_t> ok{0}, bad{0}, null_id{0};
};

void async_done(void *user, int status, const char *id) {
  auto *c = static_cast<AsyncCount *>(user);
  if (status != WF_OK)
    c->bad.fetch_add(1, std::memory_order_relaxed);
  else if (!id || !*id)
    c->null_id.fetch_add(1, std::memory_order_relaxed);
  else
    c->ok.fetch_add(1, std::memory_order_relaxed);
}

struct AsyncResult {
  int64_t jobs = 0, callbacks = 0, bad = 0;
  double secs = 0, rate = 0;
  PhaseCost cost;
};

AsyncResult bench_enqueue_async(wf_engine *e, int threads, double seconds) {
  AsyncCount cnt;
  std::vector<int64_t> sent(size_t(threads), 0);
  std::latch go(threads + 1);
  std::vector<std::thread> ts;
  for (int k = 0; k < threads; ++k)
    ts.emplace_back([&, k] {
      char doc[128];
      go.arrive_and_wait();
      int64_t deadline = now_ns() + int64_t(seconds * 1e9);
      int64_t i = 0;
      for (; (i & 63) != 0 || now_ns() < deadline; ++i) {
        std::snprintf(doc, sizeof doc, "{\"effect\":\"noop\",\"payload\":{\"i\":%lld,\"t\":%d}}",
                      static_cast<long long>(i), k);
        wf_check(wf_enqueue_async(e, doc, async_done, &cnt), "wf_enqueue_async");
      }
      sent[size_t(k)] = i;
    });
  Probe before = probe(e);
  int64_t t0 = now_ns();
  go.arrive_and_wait();
  for (auto &t : ts) t.join();
  wf_check(wf_sync(e), "wf_sync");
  int64_t t1 = now_ns();
  Probe after = probe(e);
  AsyncResult r;
  for (auto n : sent) r.jobs += n;
  r.callbacks = cnt.ok.load() + cnt.bad.load() + cnt.null_id.load();
  r.bad = cnt.bad.load() + cnt.null_id.load();
  if (r.callbacks != r.jobs || r.bad)
    die(strf("wf_enqueue_async: %lld accepted, %lld callbacks, %lld not WF_OK with an id",
             static_cast<long long>(r.jobs), static_cast<long long>(r.callbacks),
             static_cast<long long>(r.bad)));
  r.secs = secs_between(t0, t1);
  r.rate = double(r.jobs) / r.secs;
  r.cost = phase_cost(before, after, r.jobs);
  return r;
}

// wf_enqueue_batch of `batch` jobs in a loop on an engine that is not
// started (no relay competing): the producer's own cost per job.
struct BatchResult {
  int64_t jobs = 0;
  double secs = 0, rate = 0;
  LatStats lat;
  PhaseCost cost;
};

BatchResult bench_batch(wf_engine *e, int batch, double seconds) {
  std::vector<std::string> docs;
  for (int b = 0; b < 4; ++b) {
    std::string doc = "[";
    for (int j = 0; j < batch; ++j) {
      if (j) doc += ',';
      doc += strf("{\"effect\":\"noop\",\"payload\":{\"i\":%d}}", b * batch + j);
    }
    docs.push_back(doc + "]");
  }
  wf_check(wf_enqueue_batch(e, docs[0].c_str(), nullptr), "wf_enqueue_batch");  // warm-up
  std::vector<int64_t> lat;
  Probe before = probe(e);
  int64_t t0 = now_ns(), deadline = t0 + int64_t(seconds * 1e9), t = t0;
  BatchResult r;
  for (size_t i = 0; t < deadline; ++i) {
    wf_check(wf_enqueue_batch(e, docs[i % docs.size()].c_str(), nullptr), "wf_enqueue_batch");
    int64_t t2 = now_ns();
    lat.push_back(t2 - t);
    t = t2;
    r.jobs += batch;
  }
  Probe after = probe(e);
  r.secs = secs_between(t0, t);
  r.rate = double(r.jobs) / r.secs;
  r.lat = summarize(std::move(lat));
  r.cost = phase_cost(before, after, r.jobs);
  return r;
}

// ------------------------------------------------------- end-to-end phase

struct E2EState {
  int64_t target = 0;
  std::unique_ptr<std::atomic<uint8_t>[]> seen;
  std::atomic<int64_t> callbacks{0}, completed{0}, duplicates{0}, bad_payload{0}, late_complete{0},
      complete_errors{0};
  std::mutex mu;
  std::condition_variable cv;
  std::string first_error;  // guarded by mu
};

// Cheap extraction of "i" from the payload {"i":123} (the loop thread is on the
// measured path, so no full JSON parse here).
int64_t payload_index(const char *p, size_t len) {
  if (!p) return -1;
  std::string_view s(p, len);
  size_t k = s.find("\"i\"");
  if (k == std::string_view::npos) return -1;
  k = s.find(':', k + 3);
  if (k == std::string_view::npos) return -1;
  ++k;
  while (k < s.size() && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r')) ++k;
  int64_t v = -1;
  auto res = std::from_chars(s.data() + k, s.data() + s.size(), v);
  if (res.ec != std::errc()) return -1;
  return v;
}

void noop_effect(void *user, wf_job *job) {
  auto *st = static_cast<E2EState *>(user);
  size_t len = 0;
  const char *payload = wf_job_payload(job, &len);
  int64_t i = payload_index(payload, len);
  int rc = wf_job_complete(job, nullptr);  // job is gone after this
  st->callbacks.fetch_add(1);
  if (rc == WF_ESTATE) {  // attempt had timed out: it will be delivered again
    st->late_complete.fetch_add(1);
    return;
  }
  if (rc != WF_OK) {
    std::string msg = strf("wf_job_complete: %d (%s): %s", rc, wf_strerror(rc), wf_last_error());
    st->complete_errors.fetch_add(1);
    std::lock_guard<std::mutex> lk(st->mu);
    if (st->first_error.empty()) st->first_error = msg;
    st->cv.notify_all();
    return;
  }
  if (i < 0 || i >= st->target) {
    st->bad_payload.fetch_add(1);
    return;
  }
  if (st->seen[size_t(i)].exchange(1) != 0) {
    st->duplicates.fetch_add(1);
    return;
  }
  if (st->completed.fetch_add(1) + 1 == st->target) {
    std::lock_guard<std::mutex> lk(st->mu);  // no lost wake-up
    st->cv.notify_all();
  }
}

struct E2EResult {
  int64_t jobs = 0;
  double secs = 0, rate = 0;                  // until the last callback
  double durable_secs = 0, durable_rate = 0;  // until wf_sync after it
  double producer_secs = 0, producer_rate = 0;
  int64_t completed_when_producer_done = 0;
  double close_secs = 0;
  LatStats batch_lat;  // per wf_enqueue_batch call
  PhaseCost cost;
  std::vector<int64_t> per_second;  // completions in each second
  int64_t callbacks = 0, duplicates = 0, bad_payload = 0, late_complete = 0;
};

E2EResult bench_e2e(const Config &cfg, const std::string &path) {
  E2EState st;
  st.target = cfg.e2e_jobs;
  st.seen = std::make_unique<std::atomic<uint8_t>[]>(size_t(st.target));
  for (int64_t i = 0; i < st.target; ++i) st.seen[size_t(i)].store(0, std::memory_order_relaxed);

  wf_engine *e = open_engine(path);
  wf_check(wf_effect_register(e, "noop", nullptr, noop_effect, &st), "wf_effect_register");
  wf_check(wf_start(e), "wf_start");

  // Pre-build the batch documents so the producer measures the engine only.
  std::vector<std::string> batches;
  for (int64_t i = 0; i < st.target;) {
    std::string doc = "[";
    int64_t end = std::min(st.target, i + cfg.batch);
    for (int64_t j = i; j < end; ++j) {
      if (j != i) doc += ',';
      doc += strf("{\"effect\":\"noop\",\"payload\":{\"i\":%lld}}", static_cast<long long>(j));
    }
    doc += ']';
    batches.push_back(std::move(doc));
    i = end;
  }

  E2EResult r;
  r.jobs = st.target;
  int64_t t_synced = 0;
  std::vector<int64_t> batch_lat;
  batch_lat.reserve(batches.size());
  std::atomic<int64_t> producer_done_ns{0};
  Probe before = probe(e);
  int64_t t0 = now_ns();
  std::thread producer([&] {
    for (const std::string &doc : batches) {
      int64_t t = now_ns();
      wf_check(wf_enqueue_batch(e, doc.c_str(), nullptr), "wf_enqueue_batch");
      batch_lat.push_back(now_ns() - t);
    }
    r.completed_when_producer_done = st.completed.load();
    producer_done_ns.store(now_ns());
  });

  // Wait for the last completion on the condition variable; wake once a
  // second to record progress and to detect a stall (no progress for 60 s).
  int64_t t_done = 0;
  {
    std::unique_lock<std::mutex> lk(st.mu);
    int64_t last = 0, stalled_s = 0;
    for (;;) {
      bool done = st.cv.wait_for(lk, std::chrono::seconds(1), [&] {
        return st.completed.load() >= st.target || !st.first_error.empty();
      });
      if (!st.first_error.empty()) {
        std::string err = st.first_error;
        lk.unlock();
        die(err);
      }
      int64_t c = st.completed.load();
      if (done) {
        t_done = now_ns();
        r.per_second.push_back(c - last);
        break;
      }
      r.per_second.push_back(c - last);
      stalled_s = (c == last) ? stalled_s + 1 : 0;
      last = c;
      if (cfg.verbose)
        std::fprintf(stderr, "  e2e: %lld/%lld completed, %lld callbacks\n",
                     static_cast<long long>(c), static_cast<long long>(st.target),
                     static_cast<long long>(st.callbacks.load()));
      if (stalled_s >= 60) {
        lk.unlock();
        char *stats = nullptr;
        std::string s =
            wf_stats(e, nullptr, &stats) == WF_OK && stats ? stats : "(wf_stats failed)";
        wf_free(stats);
        die(
            strf("end to end stalled: %lld/%lld completed, %lld callbacks, %lld duplicates, "
                 "%lld bad payloads, %lld late completions; wf_stats: %s",
                 static_cast<long long>(c), static_cast<long long>(st.target),
                 static_cast<long long>(st.callbacks.load()),
                 static_cast<long long>(st.duplicates.load()),
                 static_cast<long long>(st.bad_payload.load()),
                 static_cast<long long>(st.late_complete.load()), s.c_str()));
      }
    }
  }
  producer.join();
  // Completions are committed asynchronously (batched): wf_sync returns once
  // every outcome reported so far is committed, i.e. the work is durable.
  wf_check(wf_sync(e), "wf_sync");
  t_synced = now_ns();
  Probe after = probe(e);
  after.t = t_synced;
  r.cost = phase_cost(before, after, r.jobs);
  r.secs = secs_between(t0, t_done);
  r.durable_secs = secs_between(t0, t_synced);
  r.durable_rate = double(r.jobs) / r.durable_secs;
  r.rate = double(r.jobs) / r.secs;
  r.producer_secs = secs_between(t0, producer_done_ns.load());
  r.producer_rate = double(r.jobs) / r.producer_secs;
  r.batch_lat = summarize(std::move(batch_lat));

  if (cfg.verbose) {
    char *stats = nullptr;
    wf_check(wf_stats(e, nullptr, &stats), "wf_stats");
    std::fprintf(stderr, "  e2e wf_stats: %s\n", stats ? stats : "(null)");
    wf_free(stats);
  }
  // wf_close drains and flushes the batched completions.
  r.close_secs = close_engine(e, path);
  r.callbacks = st.callbacks.load();
  r.duplicates = st.duplicates.load();
  r.bad_payload = st.bad_payload.load();
  r.late_complete = st.late_complete.load();
  return r;
}

// ---------------------------------------------------------- latency phase

struct LatState {
  int64_t n = 0;
  std::unique_ptr<std::atomic<int64_t>[]> dispatch_ns;  // when the callback ran
  std::unique_ptr<std::atomic<int64_t>[]> payload_lat;  // now - payload "t"
  std::atomic<int64_t> dispatched{0}, duplicates{0}, bad_payload{0}, late_complete{0};
  std::mutex mu;
  std::condition_variable cv;
  std::string first_error;
};

void lat_effect(void *user, wf_job *job) {
  int64_t now = now_ns();
  auto *st = static_cast<LatState *>(user);
  size_t len = 0;
  const char *payload = wf_job_payload(job, &len);
  int64_t i = -1, t = 0;
  try {
    auto doc = nlohmann::json::parse(payload, payload + len);
    i = doc.at("i").get<int64_t>();
    t = doc.at("t").get<int64_t>();
  } catch (const std::exception &) {
    i = -1;
  }
  int rc = wf_job_complete(job, nullptr);
  if (rc == WF_ESTATE) {
    st->late_complete.fetch_add(1);
    return;
  }
  if (rc != WF_OK) {
    std::string msg = strf("wf_job_complete: %d (%s): %s", rc, wf_strerror(rc), wf_last_error());
    std::lock_guard<std::mutex> lk(st->mu);
    if (st->first_error.empty()) st->first_error = msg;
    st->cv.notify_all();
    return;
  }
  if (i < 0 || i >= st->n) {
    st->bad_payload.fetch_add(1);
    return;
  }
  int64_t expected = 0;
  if (!st->dispatch_ns[size_t(i)].compare_exchange_strong(expected, now)) {
    st->duplicates.fetch_add(1);
    return;
  }
  st->payload_lat[size_t(i)].store(now - t);
  if (st->dispatched.fetch_add(1) + 1 == st->n) {
    std::lock_guard<std::mutex> lk(st->mu);
    st->cv.notify_all();
  }
}

struct LatResult {
  int64_t jobs = 0;
  double achieved_rate = 0;
  int64_t late_starts = 0;  // enqueues that started > 1 ms after their slot
  int64_t dispatched_before_return = 0;
  LatStats from_return, from_call, enqueue_call;
  int64_t duplicates = 0, bad_payload = 0, late_complete = 0;
};

LatResult bench_latency(const Config &cfg, const std::string &path) {
  LatState st;
  st.n = std::max<int64_t>(1, int64_t(cfg.lat_s * cfg.lat_rate));
  st.dispatch_ns = std::make_unique<std::atomic<int64_t>[]>(size_t(st.n));
  st.payload_lat = std::make_unique<std::atomic<int64_t>[]>(size_t(st.n));
  for (int64_t i = 0; i < st.n; ++i) {
    st.dispatch_ns[size_t(i)].store(0);
    st.payload_lat[size_t(i)].store(0);
  }
  std::vector<int64_t> t_before(size_t(st.n)), t_after(size_t(st.n));

  wf_engine *e = open_engine(path);
  wf_check(wf_effect_register(e, "lat", nullptr, lat_effect, &st), "wf_effect_register");
  wf_check(wf_start(e), "wf_start");

  // Open-loop pacing: job i is due at t0 + i * period, whatever happened to
  // the previous ones. Several pacing threads so that a slow durable commit
  // (one call can take longer than the period) does not lower the rate.
  const int64_t period_ns = 1000000000LL / cfg.lat_rate;
  std::atomic<int64_t> next{0}, late{0};
  const auto t0 = Clock::now() + std::chrono::milliseconds(50);
  std::vector<std::thread> producers;
  for (int k = 0; k < cfg.lat_producers; ++k) {
    producers.emplace_back([&] {
      char doc[160];
      for (;;) {
        int64_t i = next.fetch_add(1);
        if (i >= st.n) break;
        auto slot = t0 + std::chrono::nanoseconds(i * period_ns);
        std::this_thread::sleep_until(slot);  // pacing, not synchronisation
        if (Clock::now() - slot > std::chrono::milliseconds(1)) late.fetch_add(1);
        int64_t tb = now_ns();
        std::snprintf(doc, sizeof doc, "{\"effect\":\"lat\",\"payload\":{\"i\":%lld,\"t\":%lld}}",
                      static_cast<long long>(i), static_cast<long long>(tb));
        char *id = nullptr;
        wf_check(wf_enqueue(e, doc, &id), "wf_enqueue");
        int64_t ta = now_ns();
        wf_free(id);
        t_before[size_t(i)] = tb;
        t_after[size_t(i)] = ta;
      }
    });
  }
  for (auto &p : producers) p.join();

  {
    Step s("latency phase: waiting for dispatch of the paced jobs", 120);
    std::unique_lock<std::mutex> lk(st.mu);
    st.cv.wait(lk, [&] { return st.dispatched.load() >= st.n || !st.first_error.empty(); });
    if (!st.first_error.empty()) {
      std::string err = st.first_error;
      lk.unlock();
      die(err);
    }
  }
  close_engine(e, path);

  LatResult r;
  r.jobs = st.n;
  r.late_starts = late.load();
  std::vector<int64_t> from_return, from_call, payload, call;
  int64_t first = INT64_MAX, last = 0;
  for (int64_t i = 0; i < st.n; ++i) {
    size_t u = size_t(i);
    int64_t d = st.dispatch_ns[u].load();
    from_return.push_back(d - t_after[u]);
    from_call.push_back(d - t_before[u]);
    payload.push_back(st.payload_lat[u].load());
    call.push_back(t_after[u] - t_before[u]);
    if (d < t_after[u]) ++r.dispatched_before_return;
    first = std::min(first, t_before[u]);
    last = std::max(last, t_after[u]);
  }
  // The callback's own "now - payload.t" must agree with dispatch - t_before.
  for (size_t u = 0; u < payload.size(); ++u)
    if (payload[u] != from_call[u]) die("latency bookkeeping mismatch (bench bug)");
  r.achieved_rate = st.n > 1 ? double(st.n) / secs_between(first, last) : 0;
  r.from_return = summarize(std::move(from_return));
  r.from_call = summarize(std::move(from_call));
  r.enqueue_call = summarize(std::move(call));
  r.duplicates = st.duplicates.load();
  r.bad_payload = st.bad_payload.load();
  r.late_complete = st.late_complete.load();
  return r;
}

// ---------------------------------------------- paced synchronous enqueue

// Issue 9's paced figure: one thread calls wf_enqueue at cfg.lat_rate jobs/s
// for cfg.lat_s seconds, open loop, on an engine whose relay is not started
// (the engine's own background work, the checkpointer, still runs), its WAL
// warmed to its steady state first (warm_wal). The reference is the bare
// single-row durable commit paced the same way, in the same seconds: each
// period starts with the wf_enqueue call and has the bare commit at its
// middle, so that both see the same disk (on this VM the p99 of a paced bare
// commit moved 0.28-0.80 ms between runs a minute apart, and a commit after
// a period of idleness is slower than one of a back-to-back stream, whose
// p99 the limits above show). The latency phase below repeats the pacing
// with the relay dispatching every job, for the dispatch latency.
struct PacedResult {
  int64_t jobs = 0;
  double achieved_rate = 0;
  int64_t late_starts = 0;
  LatStats call, bare;
};

PacedResult bench_paced_sync(const Config &cfg, const std::string &path,
                             const std::string &bare_path) {
  wf_engine *e = open_engine(path);
  BareDb bare(bare_path);
  const int64_t n = std::max<int64_t>(1, int64_t(cfg.lat_s * cfg.lat_rate));
  const int64_t period_ns = 1000000000LL / cfg.lat_rate;
  std::vector<int64_t> call, bare_call;
  call.reserve(size_t(n));
  bare_call.reserve(size_t(n));
  PacedResult r;
  r.jobs = n;
  warm_wal([&] {
    wf_check(wf_enqueue(e, "{\"effect\":\"paced\",\"payload\":{}}", nullptr), "wf_enqueue");
  });
  const auto t0 = Clock::now() + std::chrono::milliseconds(50);
  int64_t first = 0, last = 0;
  char doc[160];
  for (int64_t i = 0; i < n; ++i) {
    auto slot = t0 + std::chrono::nanoseconds(i * period_ns);
    std::this_thread::sleep_until(slot);  // pacing, not synchronisation
    if (Clock::now() - slot > std::chrono::milliseconds(1)) ++r.late_starts;
    int64_t tb = now_ns();
    std::snprintf(doc, sizeof doc, "{\"effect\":\"paced\",\"payload\":{\"i\":%lld}}",
                  static_cast<long long>(i));
    char *id = nullptr;
    wf_check(wf_enqueue(e, doc, &id), "wf_enqueue");
    int64_t ta = now_ns();
    wf_free(id);
    call.push_back(ta - tb);
    if (i == 0) first = tb;
    last = ta;
    std::this_thread::sleep_until(slot + std::chrono::nanoseconds(period_ns / 2));  // pacing
    tb = now_ns();
    bare.commit(1);
    bare_call.push_back(now_ns() - tb);
  }
  close_engine(e, path);
  r.achieved_rate = n > 1 ? double(n) / secs_between(first, last) : 0;
  r.call = summarize(std::move(call));
  r.bare = summarize(std::move(bare_call));
  return r;
}

// ------------------------------------------------------------------ output

std::string fmt_int(double v) {
  // 1234567.8 -> "1,234,568"
  long long n = std::llround(v);
  std::string s = std::to_string(n < 0 ? -n : n);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return n < 0 ? "-" + s : s;
}

std::string fmt_lat(const LatStats &s) {
  return strf("p50 %7.3f ms  p99 %7.3f ms", s.p50_ms, s.p99_ms);
}

const char *verdict(bool ok) { return ok ? "MET" : "MISSED"; }

}  // namespace

int main(int argc, char **argv) {
  Config cfg = parse_args(argc, argv);
  g_log_level = cfg.verbose ? WF_LOG_INFO : WF_LOG_WARN;
  FILE *out = cfg.json_out ? stderr : stdout;  // human table
  Watchdog watchdog;
  g_watchdog = &watchdog;

  std::string tmpl = cfg.dir + "/wf_bench.XXXXXX";
  std::vector<char> tbuf(tmpl.begin(), tmpl.end());
  tbuf.push_back('\0');
  if (!::mkdtemp(tbuf.data()))
    die(strf("mkdtemp in %s: %s", cfg.dir.c_str(), std::strerror(errno)));
  g_tmpdir = tbuf.data();

  struct utsname un {};
  ::uname(&un);
  unsigned ncpu = std::thread::hardware_concurrency();
  std::string cpu = cpu_model(), fs = fs_type(g_tmpdir);
  {
    std::lock_guard<std::mutex> lk(g_results_mu);
    g_results["wf_version"] = wf_version();
    g_results["mode"] = cfg.quick ? "quick" : "default";
    g_results["machine"] = {{"nproc", ncpu},
                            {"cpu", cpu},
                            {"kernel", un.release},
                            {"dir", g_tmpdir},
                            {"filesystem", fs}};
    g_results["config"] = {{"open_options", open_options()}, {"phase_s", cfg.phase_s},
                           {"e2e_jobs", cfg.e2e_jobs},       {"batch", cfg.batch},
                           {"threads", cfg.threads},         {"lat_s", cfg.lat_s},
                           {"lat_rate", cfg.lat_rate},       {"lat_producers", cfg.lat_producers}};
    g_results["targets"] = {{"enqueue_multi_thread_jobs_s", 50000},
                            {"end_to_end_jobs_s", 30000},
                            {"dispatch_p99_ms_at_1000_jobs_s", 5.0}};
  }

  std::fprintf(out, "wf_bench — wfengine %s, %s mode\n", wf_version(),
               cfg.quick ? "quick" : "default");
  std::fprintf(out, "machine: %u CPU (%s), kernel %s, %s on %s\n\n", ncpu, cpu.c_str(), un.release,
               g_tmpdir.c_str(), fs.c_str());
  std::fflush(out);

  // ---- 1. machine limits
  std::fprintf(out, "Machine limits (plain SQLite %s, WAL, synchronous=FULL)\n",
               sqlite3_libversion());
  RateResult fs_app, fs_over, sq1, sq100;
  {
    Step s("fdatasync (append)", cfg.phase_s + 60);
    fs_app = bench_fdatasync(g_tmpdir + "/fsync.bin", cfg.phase_s, true);
  }
  std::fprintf(out, "  %-40s %12s ops/s   %s\n", "write 4 KiB + fdatasync (append)",
               fmt_int(fs_app.rate).c_str(), fmt_lat(fs_app.lat).c_str());
  std::fflush(out);
  {
    Step s("fdatasync (overwrite)", cfg.phase_s + 60);
    fs_over = bench_fdatasync(g_tmpdir + "/fsync.bin", cfg.phase_s, false);
  }
  std::fprintf(out, "  %-40s %12s ops/s   %s\n", "write 4 KiB + fdatasync (overwrite)",
               fmt_int(fs_over.rate).c_str(), fmt_lat(fs_over.lat).c_str());
  std::fflush(out);
  {
    Step s("sqlite single-row commits", cfg.phase_s + 60);
    sq1 = bench_sqlite(g_tmpdir + "/plain.db", cfg.phase_s, 1);
  }
  std::fprintf(out, "  %-40s %12s tx/s    %s\n", "single-row durable commit",
               fmt_int(sq1.rate).c_str(), fmt_lat(sq1.lat).c_str());
  std::fflush(out);
  {
    Step s("sqlite 100-row transactions", cfg.phase_s + 60);
    sq100 = bench_sqlite(g_tmpdir + "/plain.db", cfg.phase_s, 100);
  }
  std::fprintf(out, "  %-40s %12s rows/s  %s  (%s tx/s)\n", "100-row durable transaction",
               fmt_int(sq100.rate).c_str(), fmt_lat(sq100.lat).c_str(),
               fmt_int(sq100.rate / 100).c_str());
  std::fflush(out);
  auto rate_json = [](const RateResult &r, const char *unit) {
    return json{{unit, r.rate}, {"ops", r.ops}, {"secs", r.secs}, {"latency", lat_json(r.lat)}};
  };
  set_result(json::json_pointer("/limits"),
             json{{"fdatasync_append", rate_json(fs_app, "ops_s")},
                  {"fdatasync_overwrite", rate_json(fs_over, "ops_s")},
                  {"sqlite_single_row_commit", rate_json(sq1, "tx_s")},
                  {"sqlite_100_row_tx", rate_json(sq100, "rows_s")}});

  if (cfg.limits_only) {
    if (cfg.json_out) {
      std::lock_guard<std::mutex> lk(g_results_mu);
      std::printf("%s\n", g_results.dump(2).c_str());
    }
    remove_tmpdir();
    return 0;
  }

  // ---- 2. engine enqueue
  std::fprintf(out, "\nEngine (wf_open %s)\n", open_options());
  EnqueueResult enq1, enqN;
  {
    std::string path = g_tmpdir + "/enqueue1.db";
    wf_engine *e = open_engine(path);
    {
      Step s("wf_enqueue, 1 thread", cfg.phase_s + 120);
      enq1 = bench_enqueue(e, 1, cfg.phase_s);
    }
    close_engine(e, path);
  }
  double r1 = enq1.rate / sq1.rate;
  std::fprintf(out, "  %-40s %12s jobs/s  %s  = %.2fx single-row commit\n", "wf_enqueue, 1 thread",
               fmt_int(enq1.rate).c_str(), fmt_lat(enq1.lat).c_str(), r1);
  std::fprintf(out, "  %-40s %s\n", "", cost_line(enq1.cost).c_str());
  std::fflush(out);
  set_result(json::json_pointer("/engine/enqueue_1_thread"),
             json{{"jobs_s", enq1.rate},
                  {"jobs", enq1.jobs},
                  {"secs", enq1.secs},
                  {"latency", lat_json(enq1.lat)},
                  {"ratio_vs_single_row_commit", r1},
                  {"cost", cost_json(enq1.cost)}});
  InterleavedResult il;
  {
    std::string path = g_tmpdir + "/interleaved.db";
    wf_engine *e = open_engine(path);
    {
      Step s("wf_enqueue interleaved with bare commits", cfg.phase_s * 2 + 120);
      il = bench_interleaved(e, g_tmpdir + "/interleaved_bare.db", cfg.phase_s * 2);
    }
    close_engine(e, path);
  }
  std::fprintf(out, "  %-40s %12s jobs/s  %s  = %.2fx single-row commit\n",
               "wf_enqueue, 1 thread, interleaved", fmt_int(il.enq.rate).c_str(),
               fmt_lat(il.enq.lat).c_str(), il.ratio);
  std::fprintf(out, "  %-40s %12s tx/s    %s  (bare commits, same slices)\n", "",
               fmt_int(il.bare.rate).c_str(), fmt_lat(il.bare.lat).c_str());
  std::fflush(out);
  set_result(json::json_pointer("/engine/enqueue_1_thread_interleaved"),
             json{{"jobs_s", il.enq.rate},
                  {"jobs", il.enq.jobs},
                  {"secs", il.enq.secs},
                  {"latency", lat_json(il.enq.lat)},
                  {"bare_single_row_commit_tx_s", il.bare.rate},
                  {"bare_latency", lat_json(il.bare.lat)},
                  {"ratio_vs_single_row_commit", il.ratio},
                  {"jobs_per_commit", il.enq.cost.jobs_per_commit}});
  {
    std::string path = g_tmpdir + "/enqueueN.db";
    wf_engine *e = open_engine(path);
    {
      Step s("wf_enqueue, N threads", cfg.phase_s + 120);
      enqN = bench_enqueue(e, cfg.threads, cfg.phase_s);
    }
    close_engine(e, path);
  }
  double rN100 = enqN.rate / sq100.rate, rN1 = enqN.rate / sq1.rate;
  std::string label = strf("wf_enqueue, %d threads", cfg.threads);
  std::fprintf(out, "  %-40s %12s jobs/s  %s  = %.3fx 100-row tx, %.2fx single-row commit\n",
               label.c_str(), fmt_int(enqN.rate).c_str(), fmt_lat(enqN.lat).c_str(), rN100, rN1);
  std::fprintf(out, "  %-40s %s\n", "", cost_line(enqN.cost).c_str());
  std::fflush(out);
  set_result(json::json_pointer("/engine/enqueue_n_threads"),
             json{{"threads", cfg.threads},
                  {"jobs_s", enqN.rate},
                  {"jobs", enqN.jobs},
                  {"secs", enqN.secs},
                  {"latency", lat_json(enqN.lat)},
                  {"ratio_vs_100_row_tx", rN100},
                  {"ratio_vs_single_row_commit", rN1},
                  {"cost", cost_json(enqN.cost)}});

  // ---- 2b. pipelined enqueue and batches
  AsyncResult asN, as1;
  BatchResult bat;
  {
    std::string path = g_tmpdir + "/asyncN.db";
    wf_engine *e = open_engine(path);
    {
      Step s("wf_enqueue_async, N threads", cfg.phase_s + 120);
      asN = bench_enqueue_async(e, cfg.threads, cfg.phase_s);
    }
    close_engine(e, path);
  }
  {
    std::string path = g_tmpdir + "/async1.db";
    wf_engine *e = open_engine(path);
    {
      Step s("wf_enqueue_async, 1 thread", cfg.phase_s + 120);
      as1 = bench_enqueue_async(e, 1, cfg.phase_s);
    }
    close_engine(e, path);
  }
  {
    std::string path = g_tmpdir + "/batch.db";
    wf_engine *e = open_engine(path);
    {
      Step s("wf_enqueue_batch alone", cfg.phase_s + 120);
      bat = bench_batch(e, cfg.batch, cfg.phase_s);
    }
    close_engine(e, path);
  }
  label = strf("wf_enqueue_async, %d threads", cfg.threads);
  std::fprintf(out, "  %-40s %12s jobs/s  %-29s  = %.3fx 100-row tx\n", label.c_str(),
               fmt_int(asN.rate).c_str(), "(until wf_sync)", asN.rate / sq100.rate);
  std::fprintf(out, "  %-40s %s\n", "", cost_line(asN.cost).c_str());
  std::fprintf(out, "  %-40s %12s jobs/s  %-29s  = %.3fx 100-row tx\n",
               "wf_enqueue_async, 1 thread", fmt_int(as1.rate).c_str(), "(until wf_sync)",
               as1.rate / sq100.rate);
  std::fprintf(out, "  %-40s %s\n", "", cost_line(as1.cost).c_str());
  label = strf("wf_enqueue_batch of %d, alone", cfg.batch);
  std::fprintf(out, "  %-40s %12s jobs/s  batch %s  = %.3fx 100-row tx\n", label.c_str(),
               fmt_int(bat.rate).c_str(), fmt_lat(bat.lat).c_str(), bat.rate / sq100.rate);
  std::fprintf(out, "  %-40s %s\n", "", cost_line(bat.cost).c_str());
  std::fflush(out);
  set_result(json::json_pointer("/engine/enqueue_async_n_threads"),
             json{{"threads", cfg.threads},
                  {"jobs_s", asN.rate},
                  {"jobs", asN.jobs},
                  {"secs", asN.secs},
                  {"ratio_vs_100_row_tx", asN.rate / sq100.rate},
                  {"cost", cost_json(asN.cost)}});
  set_result(json::json_pointer("/engine/enqueue_async_1_thread"),
             json{{"jobs_s", as1.rate},
                  {"jobs", as1.jobs},
                  {"secs", as1.secs},
                  {"ratio_vs_100_row_tx", as1.rate / sq100.rate},
                  {"cost", cost_json(as1.cost)}});
  set_result(json::json_pointer("/engine/enqueue_batch_alone"),
             json{{"batch", cfg.batch},
                  {"jobs_s", bat.rate},
                  {"jobs", bat.jobs},
                  {"secs", bat.secs},
                  {"batch_latency", lat_json(bat.lat)},
                  {"ratio_vs_100_row_tx", bat.rate / sq100.rate},
                  {"cost", cost_json(bat.cost)}});

  // ---- 3. end to end
  E2EResult e2e;
  {
    Step s("end to end", 60.0 + double(cfg.e2e_jobs) / 50.0 + 120);  // >= 50 jobs/s or a hang
    e2e = bench_e2e(cfg, g_tmpdir + "/e2e.db");
  }
  double re2e = e2e.rate / sq100.rate;
  label = strf("end to end, %s no-op jobs", fmt_int(double(e2e.jobs)).c_str());
  std::fprintf(out, "  %-40s %12s jobs/s  %-29s  = %.3fx 100-row tx\n", label.c_str(),
               fmt_int(e2e.rate).c_str(), strf("(%.2f s)", e2e.secs).c_str(), re2e);
  std::fprintf(out, "  %-40s %12s jobs/s  %-29s  = %.3fx 100-row tx\n",
               "  ... until outcomes durable (wf_sync)", fmt_int(e2e.durable_rate).c_str(),
               strf("(%.2f s)", e2e.durable_secs).c_str(), e2e.durable_rate / sq100.rate);
  std::fprintf(out, "  %-40s %12s jobs/s  batch %s\n", "  producer (wf_enqueue_batch) alone",
               fmt_int(e2e.producer_rate).c_str(), fmt_lat(e2e.batch_lat).c_str());
  std::fprintf(out, "  %-40s %s\n", "", cost_line(e2e.cost).c_str());
  std::fflush(out);
  json per_second = e2e.per_second;
  set_result(json::json_pointer("/engine/end_to_end"),
             json{{"jobs", e2e.jobs},
                  {"batch", cfg.batch},
                  {"jobs_s", e2e.rate},
                  {"secs", e2e.secs},
                  {"ratio_vs_100_row_tx", re2e},
                  {"durable_jobs_s", e2e.durable_rate},
                  {"durable_secs", e2e.durable_secs},
                  {"durable_ratio_vs_100_row_tx", e2e.durable_rate / sq100.rate},
                  {"producer_secs", e2e.producer_secs},
                  {"producer_jobs_s", e2e.producer_rate},
                  {"completed_when_producer_done", e2e.completed_when_producer_done},
                  {"enqueue_batch_latency", lat_json(e2e.batch_lat)},
                  {"close_secs", e2e.close_secs},
                  {"callbacks", e2e.callbacks},
                  {"duplicates", e2e.duplicates},
                  {"bad_payload", e2e.bad_payload},
                  {"late_complete", e2e.late_complete},
                  {"completions_per_second", per_second},
                  {"cost", cost_json(e2e.cost)}});

  // ---- 4. paced wf_enqueue, one thread, relay idle
  PacedResult paced;
  {
    Step s("paced wf_enqueue and bare commit", cfg.lat_s + 120);
    paced = bench_paced_sync(cfg, g_tmpdir + "/paced.db", g_tmpdir + "/paced_bare.db");
  }
  const LatStats &paced_bare = paced.bare;
  label = strf("paced wf_enqueue @%s jobs/s, 1 thread", fmt_int(cfg.lat_rate).c_str());
  std::fprintf(out, "  %-40s %12s jobs/s  %s  max %.3f ms  (%lld late slots; relay idle)\n",
               label.c_str(), fmt_int(paced.achieved_rate).c_str(), fmt_lat(paced.call).c_str(),
               paced.call.max_ms, static_cast<long long>(paced.late_starts));
  label = strf("paced bare commit @%s tx/s", fmt_int(cfg.lat_rate).c_str());
  std::fprintf(out, "  %-40s %12s        %s  max %.3f ms  (plain SQLite, same periods)\n",
               label.c_str(), "", fmt_lat(paced_bare).c_str(), paced_bare.max_ms);
  std::fflush(out);
  set_result(json::json_pointer("/limits/paced_single_row_commit"), lat_json(paced_bare));
  set_result(json::json_pointer("/engine/paced_enqueue_1_thread"),
             json{{"rate_target_jobs_s", cfg.lat_rate},
                  {"achieved_jobs_s", paced.achieved_rate},
                  {"jobs", paced.jobs},
                  {"late_slots", paced.late_starts},
                  {"enqueue_call", lat_json(paced.call)}});

  // ---- 5. dispatch latency
  LatResult lat;
  {
    Step s("dispatch latency", cfg.lat_s + 180);
    lat = bench_latency(cfg, g_tmpdir + "/lat.db");
  }
  label = strf("dispatch latency @%s jobs/s", fmt_int(cfg.lat_rate).c_str());
  std::fprintf(out, "  %-40s %12s        %s  max %.3f ms  (after wf_enqueue returned)\n",
               label.c_str(), "", fmt_lat(lat.from_return).c_str(), lat.from_return.max_ms);
  std::fprintf(out, "  %-40s %12s        %s  max %.3f ms  (before wf_enqueue was called)\n", "", "",
               fmt_lat(lat.from_call).c_str(), lat.from_call.max_ms);
  std::fprintf(out, "  %-40s %12s jobs/s  %s  max %.3f ms  (%lld late slots)\n",
               "  paced wf_enqueue call", fmt_int(lat.achieved_rate).c_str(),
               fmt_lat(lat.enqueue_call).c_str(), lat.enqueue_call.max_ms,
               static_cast<long long>(lat.late_starts));
  std::fflush(out);
  set_result(json::json_pointer("/engine/dispatch_latency"),
             json{{"rate_target_jobs_s", cfg.lat_rate},
                  {"achieved_jobs_s", lat.achieved_rate},
                  {"jobs", lat.jobs},
                  {"producers", cfg.lat_producers},
                  {"late_slots", lat.late_starts},
                  {"from_enqueue_return", lat_json(lat.from_return)},
                  {"from_enqueue_call", lat_json(lat.from_call)},
                  {"enqueue_call", lat_json(lat.enqueue_call)},
                  {"dispatched_before_enqueue_returned", lat.dispatched_before_return},
                  {"duplicates", lat.duplicates},
                  {"bad_payload", lat.bad_payload},
                  {"late_complete", lat.late_complete}});

  // ---- targets
  bool t_enq = enqN.rate >= 50000, t_e2e = e2e.rate >= 30000, t_lat = lat.from_return.p99_ms <= 5.0;
  std::fprintf(out, "\nTargets\n");
  std::fprintf(out, "  %-40s %12s jobs/s  >= 50,000      %s\n",
               strf("durable enqueue, %d threads", cfg.threads).c_str(), fmt_int(enqN.rate).c_str(),
               verdict(t_enq));
  std::fprintf(out, "  %-40s %12s jobs/s  >= 30,000      %s\n", "end to end",
               fmt_int(e2e.rate).c_str(), verdict(t_e2e));
  std::fprintf(out, "  %-40s %12.3f ms      <= 5 ms        %s\n", "dispatch p99 @1,000 jobs/s",
               lat.from_return.p99_ms, verdict(t_lat));
  // Issue 9 targets (pipelined enqueue), against the limits of this run.
  double lim8 = std::min(150000.0, 0.5 * sq100.rate), lim1 = std::min(100000.0, 0.5 * sq100.rate);
  bool t_as8 = asN.rate >= lim8, t_as1 = as1.rate >= lim1;
  bool t_sync1 = il.ratio >= 0.9, t_bat = bat.rate >= 0.6 * sq100.rate,
       t_e2e100 = e2e.rate >= 100000;
  // The paced target is the one-thread phase (relay idle) against the bare
  // commit paced in the same periods. Beside it: the same call against the
  // back-to-back bare commit's p99 (a different regime: plain SQLite paced
  // reads 1.3-3.7x that on this VM), and the calls of the latency phase
  // (relay dispatching every job, 8 pacing threads) against the paced bare.
  double p99_ratio = paced_bare.p99_ms > 0 ? paced.call.p99_ms / paced_bare.p99_ms : 0;
  double p99_ratio_loaded = paced_bare.p99_ms > 0 ? lat.enqueue_call.p99_ms / paced_bare.p99_ms : 0;
  double p99_ratio_unpaced = sq1.lat.p99_ms > 0 ? paced.call.p99_ms / sq1.lat.p99_ms : 0;
  bool t_p99 = p99_ratio <= 2.0;
  std::fprintf(out, "  %-40s %12s jobs/s  >= %-11s %s\n",
               strf("wf_enqueue_async, %d threads", cfg.threads).c_str(), fmt_int(asN.rate).c_str(),
               fmt_int(lim8).c_str(), verdict(t_as8));
  std::fprintf(out, "  %-40s %12s jobs/s  >= %-11s %s\n", "wf_enqueue_async, 1 thread",
               fmt_int(as1.rate).c_str(), fmt_int(lim1).c_str(), verdict(t_as1));
  std::fprintf(out, "  %-40s %12.2fx        >= 0.9x        %s\n",
               "wf_enqueue 1 thread / commit, interleaved", il.ratio, verdict(t_sync1));
  std::fprintf(out, "  %-40s %12.2fx        <= 2x          %s\n",
               "paced wf_enqueue p99 / paced bare p99", p99_ratio, verdict(t_p99));
  std::fprintf(out, "  %-40s %12.2fx        (not a target)\n",
               "  against the back-to-back commit's p99", p99_ratio_unpaced);
  std::fprintf(out, "  %-40s %12.2fx        (not a target)\n", "  relay dispatching, 8 pacers",
               p99_ratio_loaded);
  std::fprintf(out, "  %-40s %12.2fx        >= 0.6x        %s\n",
               "wf_enqueue_batch / 100-row tx rows", bat.rate / sq100.rate, verdict(t_bat));
  std::fprintf(out, "  %-40s %12s jobs/s  >= 100,000     %s\n", "end to end (issue 9)",
               fmt_int(e2e.rate).c_str(), verdict(t_e2e100));

  bool anomalies = e2e.duplicates || e2e.bad_payload || lat.duplicates || lat.bad_payload;
  int warnings = g_log_warnings.load();
  if (anomalies || e2e.late_complete || lat.late_complete || warnings) {
    std::fprintf(out,
                 "\nObserved: e2e %lld duplicate deliveries, %lld unparsable payloads, %lld late "
                 "completions; latency phase %lld duplicates, %lld unparsable, %lld late; "
                 "%d engine warnings/errors logged\n",
                 static_cast<long long>(e2e.duplicates), static_cast<long long>(e2e.bad_payload),
                 static_cast<long long>(e2e.late_complete), static_cast<long long>(lat.duplicates),
                 static_cast<long long>(lat.bad_payload), static_cast<long long>(lat.late_complete),
                 warnings);
  }
  std::fflush(out);
  set_result(json::json_pointer("/verdict_issue9"),
             json{{"enqueue_async_n_threads", t_as8},
                  {"enqueue_async_1_thread", t_as1},
                  {"enqueue_1_thread_ratio", t_sync1},
                  {"paced_p99_ratio", t_p99},
                  {"paced_p99_ratio_value", p99_ratio},
                  {"paced_p99_ratio_relay_dispatching", p99_ratio_loaded},
                  {"paced_p99_ratio_against_back_to_back_commit", p99_ratio_unpaced},
                  {"enqueue_batch_ratio", t_bat},
                  {"end_to_end_100k", t_e2e100}});
  set_result(json::json_pointer("/verdict"), json{{"enqueue_multi_thread", t_enq},
                                                  {"end_to_end", t_e2e},
                                                  {"dispatch_p99", t_lat},
                                                  {"anomalies", anomalies},
                                                  {"engine_warnings", warnings}});

  if (cfg.json_out) {
    std::lock_guard<std::mutex> lk(g_results_mu);
    std::printf("%s\n", g_results.dump(2).c_str());
    std::fflush(stdout);
  }
  remove_tmpdir();
  // Duplicates or foreign payloads mean the engine is wrong: fail the run.
  return anomalies ? 1 : 0;
}
