// wf_bench_scale — costs that must not grow with the backlog (issue 9).
//
// Builds two databases, one empty and one holding N pending jobs spread over
// E effects and T tenants, and measures on each, in a fresh child process
// (its own address space, so RSS is the engine's):
//   - wf_open and wf_start (until the loop's start-up pass and its claims are
//     committed: wf_sync), RSS after each;
//   - wf_stats and wf_metrics (median and max of 20 calls);
//   - dispatch latency of an idle effect ("idle", nothing pending) while the
//     backlog effects are registered and at their concurrency limit: from
//     wf_enqueue's return (durable) to the provider's callback, 200 jobs one
//     after the other;
//   - a claim with hot tenants at their tenant_concurrency limit: effect e0
//     has tenant_concurrency 1 and every backlog tenant of e0 holds its one
//     slot; a job of a new tenant of e0 is dispatched (same measure, 50 jobs).
// Then, in this process, a drain under tenant_concurrency: D jobs (3/4 of
// them of one hot tenant, the rest over 50 tenants) with tenant_concurrency
// 2, completed at once; prints jobs/s and rows rewritten per job (claims +
// claims given back + the final delete), next to the same drain with the
// same number of slots as one effect limit (concurrency 102 = 2 + 50 x 2)
// and with concurrency 2 (the hot tenant's own limit, for the tail).
//
// The backlog is written with one SQL statement per 1M rows straight into
// wf_jobs (the rows wf_enqueue_batch would write, without the JSON), and the
// maintained counts are rebuilt as the schema migration does (--fill api uses
// wf_enqueue_batch of 100,000 jobs instead: honest but slow, ~30 µs a job).
//
// Usage: wf_bench_scale [--jobs N] [--effects E] [--tenants T] [--drain D]
//                       [--fill sql|api] [--dir DIR] [--json]
// Defaults: 10,000,000 jobs, 10 effects, 1,000 tenants, drain 20,000.

#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wfengine.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "lease.h"  // wf::lease::g_rows_claimed / g_rows_unclaimed (rewrite counts)
#include "store.h"  // wf::thread_stmt_work (SQLite VM steps of this thread's statements)

using namespace wfb;

namespace {

struct Config {
  int64_t jobs = 10000000;
  int effects = 10;
  int tenants = 1000;
  int drain = 20000;
  std::string fill = "sql";
  std::string dir = "/tmp";
  bool json_out = false;
};

double ms_between(int64_t a_ns, int64_t b_ns) { return double(b_ns - a_ns) / 1e6; }

int64_t proc_status_kib(const char *field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0) return std::strtoll(line.c_str() + n, nullptr, 10);
  return -1;
}

int64_t file_size(const std::string &p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? int64_t(st.st_size) : 0;
}

json pct(std::vector<double> v) {
  if (v.empty()) return json{{"n", 0}};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, size_t(q * double(v.size())))]; };
  return json{{"n", v.size()}, {"p50_ms", at(0.5)}, {"p99_ms", at(0.99)}, {"max_ms", v.back()}};
}

void sql(sqlite3 *db, const char *s) {
  char *err = nullptr;
  if (sqlite3_exec(db, s, nullptr, nullptr, &err) != SQLITE_OK)
    die(strf("sqlite: %s: %s", s, err ? err : "?"));
}

// Creates the engine's schema in `path`, then adds the backlog.
void build(const Config &c, const std::string &path, int64_t n) {
  wf_engine *e = nullptr;
  wf_check(wf_open(path.c_str(), "{\"durability\":\"normal\"}", &e), "wf_open");
  // e0 runs under tenant_concurrency (child): as when its jobs were enqueued
  // by an engine that had registered it so, they go in wf_jobs_tenant.
  // (Not started here: the callback is never called.)
  wf_check(wf_effect_register(
               e, "e0", "{\"tenant_concurrency\":1}", [](void *, wf_job *) {}, nullptr),
           "reg");
  wf_check(wf_sync(e), "wf_sync");
  if (n > 0 && c.fill == "api") {
    int64_t done = 0;
    while (done < n) {
      std::string batch = "[";
      int64_t k = std::min<int64_t>(100000, n - done);
      for (int64_t i = 0; i < k; ++i, ++done) {
        if (i) batch += ',';
        batch += strf("{\"effect\":\"e%d\",\"tenant\":\"t%d\",\"payload\":{}}",
                      int(done % c.effects), int((done / c.effects) % c.tenants));
      }
      batch += "]";
      char *ids = nullptr;
      wf_check(wf_enqueue_batch(e, batch.c_str(), &ids), "wf_enqueue_batch");
      wf_free(ids);
    }
  }
  wf_check(wf_close(e), "wf_close");
  if (n <= 0 || c.fill == "api") return;
  sqlite3 *db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) die("sqlite3_open");
  sql(db, "PRAGMA synchronous=OFF");
  sql(db, "PRAGMA cache_size=-262144");
  int64_t base = int64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count()) -
                 n;  // every job due, one ms apart, the oldest first
  const int64_t chunk = 1000000;
  sqlite3_stmt *st = nullptr;
  if (sqlite3_prepare_v2(
          db,
          "WITH RECURSIVE c(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?2) "
          "INSERT INTO wf_jobs(tenant, effect, payload, metadata, run_at, created_at, capped) "
          "SELECT 't' || ((i / ?3) % ?4), 'e' || (i % ?3), '{}', '{}', ?5 + i, ?5 + i, "
          "CASE WHEN i % ?3 = 0 THEN 1 END FROM c",
          -1, &st, nullptr) != SQLITE_OK)
    die(strf("prepare: %s", sqlite3_errmsg(db)));
  for (int64_t from = 0; from < n; from += chunk) {
    sql(db, "BEGIN");
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, std::min(n, from + chunk));
    sqlite3_bind_int64(st, 3, c.effects);
    sqlite3_bind_int64(st, 4, c.tenants);
    sqlite3_bind_int64(st, 5, base);
    if (sqlite3_step(st) != SQLITE_DONE) die(strf("fill: %s", sqlite3_errmsg(db)));
    sqlite3_reset(st);
    sql(db, "COMMIT");
    std::fprintf(stderr, "\r  filled %lld / %lld", (long long)std::min(n, from + chunk),
                 (long long)n);
  }
  std::fprintf(stderr, "\n");
  sqlite3_finalize(st);
  sql(db,
      "BEGIN; DELETE FROM wf_job_counts; INSERT INTO wf_job_counts(effect, tenant, pending, "
      "running) SELECT effect, tenant, sum(state = 0), sum(state = 1) FROM wf_jobs GROUP BY "
      "effect, tenant; UPDATE wf_meta SET v = (SELECT max(id) FROM wf_jobs) WHERE k = "
      "'counts_through' AND CAST(v AS INTEGER) < (SELECT max(id) FROM wf_jobs); COMMIT");
  sql(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
}

// ------------------------------------------------------------------ child

struct Probe {
  std::mutex mu;
  std::condition_variable cv;
  int64_t at_ns = 0;
  std::vector<wf_job *> held;
  std::atomic<int64_t> held_n{0};
};
Probe g_probe;

void hold_cb(void *, wf_job *j) {
  std::lock_guard<std::mutex> g(g_probe.mu);
  g_probe.held.push_back(j);
  g_probe.held_n.fetch_add(1);
}
void mark_cb(void *, wf_job *j) {
  int64_t t = now_ns();
  wf_job_complete(j, nullptr);
  std::lock_guard<std::mutex> g(g_probe.mu);
  g_probe.at_ns = t;
  g_probe.cv.notify_all();
}
// e0: backlog tenants are held (hold_cb); a job of a tenant "new..." marks
// its dispatch and is held too.
void e0_cb(void *u, wf_job *j) {
  if (std::strncmp(wf_job_tenant(j), "new", 3) != 0) return hold_cb(u, j);
  int64_t t = now_ns();
  std::lock_guard<std::mutex> g(g_probe.mu);
  g_probe.held.push_back(j);
  g_probe.at_ns = t;
  g_probe.cv.notify_all();
}

int child(const std::string &path, int effects, int tenants, bool backlog) {
  g_prog = "wf_bench_scale (child)";
  ::alarm(900);
  json r;
  r["rss_before_kib"] = proc_status_kib("VmRSS:");
  wf_engine *e = nullptr;
  int64_t t = now_ns();
  wf_check(wf_open(path.c_str(),
                   "{\"durability\":\"full\",\"max_inflight\":5000,\"drain_timeout_ms\":0}", &e),
           "wf_open");
  r["open_ms"] = ms_between(t, now_ns());
  r["rss_after_open_kib"] = proc_status_kib("VmRSS:");
  // e0: tenant_concurrency 1 (each backlog tenant takes its one slot);
  // e1..: concurrency 20; all held. "idle": nothing pending, completes.
  wf_check(wf_effect_register(e, "e0", "{\"tenant_concurrency\":1}", e0_cb, nullptr), "reg");
  for (int k = 1; k < effects; ++k)
    wf_check(
        wf_effect_register(e, strf("e%d", k).c_str(), "{\"concurrency\":20}", hold_cb, nullptr),
        "reg");
  wf_check(wf_effect_register(e, "idle", nullptr, mark_cb, nullptr), "reg");
  t = now_ns();
  wf_check(wf_start(e), "wf_start");
  r["start_ms"] = ms_between(t, now_ns());
  wf_check(wf_sync(e), "wf_sync");
  r["start_sync_ms"] = ms_between(t, now_ns());
  int64_t want = backlog ? std::min(tenants, 5000 - 20 * (effects - 1)) + 20 * (effects - 1) : 0;
  auto until = Clock::now() + std::chrono::seconds(120);
  while (g_probe.held_n.load() < want && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  r["held_at_limit"] = g_probe.held_n.load();
  r["limits_reached_ms"] = ms_between(t, now_ns());
  wf_check(wf_sync(e), "wf_sync");
  r["rss_after_start_kib"] = proc_status_kib("VmRSS:");
  std::vector<double> st_ms, me_ms;
  // WF_BENCH_STATS_LOOP=N: N calls instead of 20 (to profile them).
  const char *loop_env = std::getenv("WF_BENCH_STATS_LOOP");
  int loops = loop_env ? std::max(1, std::atoi(loop_env)) : 20;
  for (int i = 0; i < loops; ++i) {
    char *o = nullptr;
    int64_t a = now_ns();
    wf_check(wf_stats(e, nullptr, &o), "wf_stats");
    st_ms.push_back(ms_between(a, now_ns()));
    if (i == 0) r["stats_bytes"] = std::strlen(o);
    wf_free(o);
    a = now_ns();
    wf_check(wf_metrics(e, &o), "wf_metrics");
    me_ms.push_back(ms_between(a, now_ns()));
    wf_free(o);
  }
  r["stats"] = pct(st_ms);
  r["metrics"] = pct(me_ms);
  // Work, not time: SQLite VM steps of one call (wf_stats runs its queries on
  // the calling thread).
  auto vm = [&](const char *filter, bool metrics) {
    char *o = nullptr;
    int64_t before = wf::thread_stmt_work().vm_steps;
    if (metrics)
      wf_check(wf_metrics(e, &o), "wf_metrics");
    else
      wf_check(wf_stats(e, filter, &o), "wf_stats");
    wf_free(o);
    return wf::thread_stmt_work().vm_steps - before;
  };
  r["stats_vm_steps"] = vm(nullptr, false);
  r["stats_effect_vm_steps"] = vm("{\"effect\":\"e3\"}", false);
  r["metrics_vm_steps"] = vm(nullptr, true);
  {
    std::vector<double> filt;
    for (int i = 0; i < 20; ++i) {
      char *o = nullptr;
      int64_t a = now_ns();
      wf_check(wf_stats(e, "{\"effect\":\"e3\"}", &o), "wf_stats");
      filt.push_back(ms_between(a, now_ns()));
      wf_free(o);
    }
    r["stats_effect_filter"] = pct(filt);
  }
  auto dispatch = [&](const char *effect, int n, bool new_tenant, const char *label) {
    std::vector<double> lat;
    for (int i = 0; i < n; ++i) {
      {
        std::lock_guard<std::mutex> g(g_probe.mu);
        g_probe.at_ns = 0;
      }
      std::string doc = new_tenant ? strf("{\"effect\":\"%s\",\"tenant\":\"new%d\"}", effect, i)
                                   : strf("{\"effect\":\"%s\"}", effect);
      wf_check(wf_enqueue(e, doc.c_str(), nullptr), "wf_enqueue");
      int64_t a = now_ns();
      std::unique_lock<std::mutex> lk(g_probe.mu);
      if (!g_probe.cv.wait_for(lk, std::chrono::seconds(30), [] { return g_probe.at_ns != 0; }))
        die(strf("%s: job not dispatched within 30 s", label));
      lat.push_back(ms_between(a, g_probe.at_ns));
    }
    r[label] = pct(lat);
  };
  dispatch("idle", 200, false, "dispatch_idle_effect");
  // e0's tenants are all at their limit: a new tenant's job (e0_cb marks
  // the dispatch and holds it).
  dispatch("e0", 50, true, "dispatch_new_tenant_hot_at_limit");
  r["rss_end_kib"] = proc_status_kib("VmRSS:");
  r["hwm_kib"] = proc_status_kib("VmHWM:");
  std::printf("%s\n", r.dump().c_str());
  std::fflush(stdout);
  std::_Exit(0);  // held handles: no drain
}

json run_child(const char *self, const std::string &path, int effects, int tenants, bool backlog) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    std::string ef = std::to_string(effects), te = std::to_string(tenants);
    execl(self, self, "--child", path.c_str(), ef.c_str(), te.c_str(), backlog ? "1" : "0",
          (char *)nullptr);
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t k;
  while ((k = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, size_t(k));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out.empty())
    die(strf("child failed (status %d): %s", status, out.c_str()));
  return json::parse(out);
}

// --------------------------------------------------------------- drain

std::atomic<int64_t> g_done{0};
void complete_cb(void *, wf_job *j) {
  wf_job_complete(j, nullptr);
  g_done.fetch_add(1);
}

json drain(const Config &c, const std::string &path, const char *policy) {
  wf_engine *e = nullptr;
  wf_check(wf_open(path.c_str(), "{\"durability\":\"normal\"}", &e), "wf_open");
  int n = c.drain, hot = n * 3 / 4;
  for (int from = 0; from < n; from += 10000) {
    std::string batch = "[";
    for (int i = from; i < std::min(n, from + 10000); ++i) {
      if (i > from) batch += ',';
      batch += i < hot ? std::string("{\"effect\":\"d\",\"tenant\":\"hot\"}")
                       : strf("{\"effect\":\"d\",\"tenant\":\"c%d\"}", i % 50);
    }
    batch += "]";
    wf_check(wf_enqueue_batch(e, batch.c_str(), nullptr), "wf_enqueue_batch");
  }
  g_done = 0;
  wf_check(wf_effect_register(e, "d", policy, complete_cb, nullptr), "reg");
  int64_t c0 = wf::lease::g_rows_claimed.load(), u0 = wf::lease::g_rows_unclaimed.load();
  int64_t t = now_ns();
  wf_check(wf_start(e), "wf_start");
  auto until = Clock::now() + std::chrono::seconds(600);
  while (g_done.load() < n && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  double s = ms_between(t, now_ns()) / 1e3;
  wf_check(wf_sync(e), "wf_sync");
  int64_t cl = wf::lease::g_rows_claimed.load() - c0, un = wf::lease::g_rows_unclaimed.load() - u0;
  wf_check(wf_close(e), "wf_close");
  return json{{"policy", policy},
              {"jobs", n},
              {"done", g_done.load()},
              {"seconds", s},
              {"jobs_per_s", double(g_done.load()) / s},
              {"claims", cl},
              {"claims_given_back", un},
              {"rewrites_per_job", double(cl + un + g_done.load()) / double(n)}};
}

Config parse_args(int argc, char **argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--jobs")
      c.jobs = std::stoll(next());
    else if (a == "--effects")
      c.effects = std::stoi(next());
    else if (a == "--tenants")
      c.tenants = std::stoi(next());
    else if (a == "--drain")
      c.drain = std::stoi(next());
    else if (a == "--fill")
      c.fill = next();
    else if (a == "--dir")
      c.dir = next();
    else if (a == "--json")
      c.json_out = true;
    else
      die("unknown argument " + a);
  }
  if (c.effects < 2 || c.tenants < 1 || c.jobs < 0 || c.drain < 100)
    die("need --effects >= 2, --tenants >= 1, --drain >= 100");
  return c;
}

}  // namespace

int main(int argc, char **argv) {
  g_prog = "wf_bench_scale";
  if (argc == 6 && std::strcmp(argv[1], "--child") == 0)
    return child(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), argv[5][0] == '1');
  Config c = parse_args(argc, argv);
  Watchdog watchdog;
  g_watchdog = &watchdog;
  std::string tmpl = c.dir + "/wf_bench_scale.XXXXXX";
  std::vector<char> tb(tmpl.begin(), tmpl.end());
  tb.push_back('\0');
  if (!::mkdtemp(tb.data())) die(strf("mkdtemp in %s: %s", c.dir.c_str(), std::strerror(errno)));
  g_tmpdir = tb.data();
  json res;
  res["config"] = {{"jobs", c.jobs},   {"effects", c.effects}, {"tenants", c.tenants},
                   {"drain", c.drain}, {"fill", c.fill},       {"dir", g_tmpdir}};
  std::string empty = g_tmpdir + "/empty.db", big = g_tmpdir + "/backlog.db";
  {
    Step s("build empty", 60);
    build(c, empty, 0);
  }
  int64_t t = now_ns();
  {
    Step s("build backlog", 7200);
    build(c, big, c.jobs);
  }
  double fill_s = ms_between(t, now_ns()) / 1e3;
  res["fill"] = {
      {"seconds", fill_s}, {"jobs_per_s", double(c.jobs) / fill_s}, {"file_bytes", file_size(big)}};
  {
    Step s("child empty", 900);
    res["empty"] = run_child("/proc/self/exe", empty, c.effects, c.tenants, false);
  }
  {
    Step s("child backlog", 900);
    res["backlog"] = run_child("/proc/self/exe", big, c.effects, c.tenants, true);
  }
  std::remove(big.c_str());
  std::remove((big + "-wal").c_str());
  std::remove((big + "-shm").c_str());
  {
    Step s("drain", 900);
    res["drain_tenant_concurrency"] =
        drain(c, g_tmpdir + "/drain1.db", "{\"tenant_concurrency\":2}");
    res["drain_same_slots"] = drain(c, g_tmpdir + "/drain2.db", "{\"concurrency\":102}");
    res["drain_concurrency_2"] = drain(c, g_tmpdir + "/drain3.db", "{\"concurrency\":2}");
  }
  FILE *out = c.json_out ? stderr : stdout;
  std::fprintf(out,
               "wf_bench_scale: %lld jobs over %d effects and %d tenants (fill %s: %.1f s, %.0f "
               "jobs/s, file %.1f MiB)\n",
               (long long)c.jobs, c.effects, c.tenants, c.fill.c_str(), fill_s,
               double(c.jobs) / fill_s,
               double(res["fill"]["file_bytes"].get<int64_t>()) / 1048576.0);
  auto row = [&](const char *name, const json &a, const json &b, const char *unit) {
    std::fprintf(out, "  %-52s %12s %12s  %s\n", name, a.dump().c_str(), b.dump().c_str(), unit);
  };
  const json &E = res["empty"], &B = res["backlog"];
  std::fprintf(out, "  %-52s %12s %12s\n", "", "empty", "backlog");
  row("wf_open", E["open_ms"], B["open_ms"], "ms");
  row("wf_start (returns)", E["start_ms"], B["start_ms"], "ms");
  row("wf_start + wf_sync (start-up pass committed)", E["start_sync_ms"], B["start_sync_ms"], "ms");
  row("RSS after open", E["rss_after_open_kib"], B["rss_after_open_kib"], "KiB");
  row("RSS after start (limits reached)", E["rss_after_start_kib"], B["rss_after_start_kib"],
      "KiB");
  row("RSS high-water mark", E["hwm_kib"], B["hwm_kib"], "KiB");
  row("attempts held at their limits", E["held_at_limit"], B["held_at_limit"], "");
  row("wf_stats p50", E["stats"]["p50_ms"], B["stats"]["p50_ms"], "ms");
  row("wf_stats max", E["stats"]["max_ms"], B["stats"]["max_ms"], "ms");
  row("wf_stats {effect} p50", E["stats_effect_filter"]["p50_ms"],
      B["stats_effect_filter"]["p50_ms"], "ms");
  row("wf_metrics p50", E["metrics"]["p50_ms"], B["metrics"]["p50_ms"], "ms");
  row("wf_stats SQLite VM steps", E["stats_vm_steps"], B["stats_vm_steps"], "");
  row("wf_stats {effect} SQLite VM steps", E["stats_effect_vm_steps"], B["stats_effect_vm_steps"],
      "");
  row("wf_metrics SQLite VM steps", E["metrics_vm_steps"], B["metrics_vm_steps"], "");
  row("wf_metrics max", E["metrics"]["max_ms"], B["metrics"]["max_ms"], "ms");
  row("dispatch, idle effect, p50", E["dispatch_idle_effect"]["p50_ms"],
      B["dispatch_idle_effect"]["p50_ms"], "ms");
  row("dispatch, idle effect, p99", E["dispatch_idle_effect"]["p99_ms"],
      B["dispatch_idle_effect"]["p99_ms"], "ms");
  row("dispatch, new tenant, hot tenants at limit, p50",
      E["dispatch_new_tenant_hot_at_limit"]["p50_ms"],
      B["dispatch_new_tenant_hot_at_limit"]["p50_ms"], "ms");
  row("dispatch, new tenant, hot tenants at limit, p99",
      E["dispatch_new_tenant_hot_at_limit"]["p99_ms"],
      B["dispatch_new_tenant_hot_at_limit"]["p99_ms"], "ms");
  for (const char *k : {"drain_tenant_concurrency", "drain_same_slots", "drain_concurrency_2"}) {
    const json &d = res[k];
    std::fprintf(out,
                 "  drain %d jobs (3/4 one tenant) %-26s %8.0f jobs/s, %lld claims, %lld given "
                 "back, %.2f rewrites/job\n",
                 d["jobs"].get<int>(), d["policy"].get<std::string>().c_str(),
                 d["jobs_per_s"].get<double>(), (long long)d["claims"].get<int64_t>(),
                 (long long)d["claims_given_back"].get<int64_t>(),
                 d["rewrites_per_job"].get<double>());
  }
  if (c.json_out) std::printf("%s\n", res.dump().c_str());
  remove_tmpdir();
  return 0;
}
