// wf_bench_saga — throughput and latency of the scheduler and the saga runtime.
//
// One run measures, in order:
//   1. saga steps/s with a no-op reducer: (a) one instance that receives N
//      events, (b) M instances x K events each. The events are submitted (in
//      host transactions) before wf_start; the clock runs from wf_start until
//      wf_stats reports no pending saga event;
//   2. wf_saga_replay (no commit) of the big instance of 1a, events/s;
//   3. timer lateness: T one-shot schedules due uniformly over S seconds, each
//      firing a job to a no-op effect; lateness = dispatch time - due time;
//   4. scale: a database holding P pending schedules (due in a year); in a
//      fresh child process: wf_open, wf_start, time until idle, RSS, and the
//      lateness of one schedule added afterwards.
//
// Usage: wf_bench_saga [--quick] [--json] [--verbose] [--dir DIR] [--only LIST]
//                      [--events N] [--instances M] [--per-instance K]
//                      [--timers T] [--spread S] [--no-split] [--scale P]
//                      [--chunk N] [--dump-timers FILE]
// The table goes to stdout; with --json the table goes to stderr and stdout
// carries one JSON object with every figure. The exit status is non-zero when
// a wf_* call fails, a result is wrong (lost, doubled or early firings, wrong
// saga state) or a step hangs.

#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
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
#include <functional>
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

// Event submission and schedule creation are durable (fsync per host
// transaction). Saga steps, schedule firings and claims are commits the engine
// makes without fsync whatever this option says (they are replayed from the
// durable rows after a power loss), so "full" costs the measured paths nothing.
constexpr double kTargetStepsS = 50000;  // issue 9: 1,000 x 20 >= 50,000
constexpr double kTargetReplayS = 200000;
constexpr double kTargetLatenessP99Ms = 10;

// ------------------------------------------------------------------ helpers

// Wall clock in microseconds since the epoch: schedules are due in wall time.
int64_t wall_us() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000 + int64_t(ts.tv_nsec) / 1000;
}

int64_t wall_ms() { return wall_us() / 1000; }

double secs_between(int64_t a_ns, int64_t b_ns) { return double(b_ns - a_ns) / 1e9; }
double ms_between(int64_t a_ns, int64_t b_ns) { return double(b_ns - a_ns) / 1e6; }

std::string fmt_int(double v) {
  long long n = std::llround(v);
  std::string digits = std::to_string(n < 0 ? -n : n);
  // Built by appending (GCC 12 -O3 gives a false -Wrestrict on string::insert).
  std::string s;
  if (n < 0) s.push_back('-');
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return s;
}

const char *verdict(bool ok) { return ok ? "MET" : "MISSED"; }

// Distribution of samples given in microseconds (nearest-rank percentiles).
struct Dist {
  int64_t count = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0, min_ms = 0, mean_ms = 0;
};

Dist summarize_us(std::vector<int64_t> v) {
  Dist d;
  if (v.empty()) return d;
  std::sort(v.begin(), v.end());
  auto rank = [&](double p) {
    size_t idx = size_t(std::max(1.0, std::ceil(p * double(v.size())))) - 1;
    return double(v[std::min(idx, v.size() - 1)]) / 1e3;
  };
  double sum = 0;
  for (int64_t x : v) sum += double(x);
  d.count = int64_t(v.size());
  d.p50_ms = rank(0.50);
  d.p90_ms = rank(0.90);
  d.p99_ms = rank(0.99);
  d.max_ms = double(v.back()) / 1e3;
  d.min_ms = double(v.front()) / 1e3;
  d.mean_ms = sum / double(v.size()) / 1e3;
  return d;
}

json dist_json(const Dist &d) {
  return json{{"count", d.count},    {"min_ms", d.min_ms}, {"p50_ms", d.p50_ms},
              {"p90_ms", d.p90_ms},  {"p99_ms", d.p99_ms}, {"max_ms", d.max_ms},
              {"mean_ms", d.mean_ms}};
}

std::string dist_line(const Dist &d) {
  return strf("p50 %7.3f  p99 %7.3f  max %8.3f ms", d.p50_ms, d.p99_ms, d.max_ms);
}

// Seconds that the threads of this process spent runnable but waiting for a
// CPU (sum over live threads of /proc/self/task/*/schedstat field 2). On a
// shared machine this separates "the engine was slow" from "it had no core".
double run_delay_s() {
  double sum = 0;
  std::error_code ec;
  for (const auto &ent : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream f(ent.path() / "schedstat");
    long long on_cpu = 0, waited = 0;
    if (f >> on_cpu >> waited) sum += double(waited) / 1e9;
  }
  return sum;
}

// A "VmRSS:" style field of /proc/self/status in KiB, -1 if absent.
int64_t proc_status_kib(const char *field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  size_t n = std::strlen(field);
  while (std::getline(f, line)) {
    if (line.compare(0, n, field) == 0) return std::strtoll(line.c_str() + n, nullptr, 10);
  }
  return -1;
}

int64_t file_size(const std::string &p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? int64_t(st.st_size) : 0;
}

// ------------------------------------------------------------ results

void set_result(const char *ptr, json value) {
  std::lock_guard<std::mutex> lk(g_results_mu);
  g_results[json::json_pointer(ptr)] = std::move(value);
}

// ------------------------------------------------------------ configuration

struct Config {
  bool quick = false, json_out = false, verbose = false, split = true;
  std::string dir;
  std::string only;  // comma list of saga,replay,timers,scale; empty = all
  std::string dump;  // CSV of every timer firing, for analysis
  int64_t single_events = 20000;
  int64_t instances = 1000;
  int64_t per_instance = 20;
  int64_t timers = 100000;
  double spread_s = 10;
  int64_t scale = 1000000;
  int chunk = 1000;  // submissions per host transaction
  // catch-up: crons per-second in one zone, days down, catch_up_max for "all",
  // paced durable wf_enqueue calls per second measured meanwhile
  int64_t catchup_crons = 100;
  double catchup_days = 30;
  int64_t catchup_max = 10000;
  double catchup_write_rate = 500;
  // timers: extra schedules pending (due in a year) while the lateness run fires
  int64_t timer_pending = 0;

  // Phases: saga (= saga1 + sagaN), replay (needs saga1's instance), timers, scale.
  bool want(const char *phase) const {
    std::string list = "," + only + ",";
    auto has = [&](const std::string &p) { return list.find("," + p + ",") != std::string::npos; };
    std::string ph = phase;
    if (ph == "catchup") return has(ph);  // not part of the default run (minutes long)
    if (only.empty()) return true;
    if (ph == "saga1" || ph == "sagaN") return has(ph) || has("saga");
    return has(ph);
  }
};

[[noreturn]] void usage(int code) {
  std::fprintf(
      code ? stderr : stdout,
      "usage: wf_bench_saga [--quick] [--json] [--verbose] [--dir DIR] [--only LIST]\n"
      "                     [--events N] [--instances M] [--per-instance K] [--timers T]\n"
      "                     [--spread S] [--no-split] [--scale P] [--chunk N]\n"
      "  --quick          short run: 5,000 events, 200 x 20 instances, 20,000 timers over\n"
      "                   5 s, 100,000 pending schedules\n"
      "  --json           JSON object of all figures on stdout (table on stderr)\n"
      "  --verbose        engine log at INFO, progress every second\n"
      "  --dir DIR        where to create the temp dir (default $TMPDIR or /tmp)\n"
      "  --only LIST      comma list of phases: saga (= saga1,sagaN), replay, timers, scale,\n"
      "                   catchup (catchup runs only when listed)\n"
      "  --events N       events of the single saga instance (default 20000)\n"
      "  --instances M    instances of the many-instance run (default 1000)\n"
      "  --per-instance K events per instance (default 20)\n"
      "  --timers T       one-shot schedules of the lateness run (default 100000)\n"
      "  --spread S       seconds over which they are due (default 10)\n"
      "  --no-split       do not poll the database to split the lateness\n"
      "  --scale P        pending schedules of the scale run (default 1000000)\n"
      "  --chunk N        submissions per host transaction (default 1000)\n"
      "  --rate R         timer firings per second (sets --spread to T / R)\n"
      "  --pending P      schedules pending (due in a year) during the lateness run (default 0)\n"
      "  --catchup-crons C, --catchup-days D, --catchup-max M, --catchup-write-rate W\n"
      "                   phase catchup (only with --only catchup): C per-second crons in\n"
      "                   Europe/Berlin, the clock stepped D days, catch_up \"all\" with\n"
      "                   catch_up_max M, then \"latest\"; W durable wf_enqueue/s measured\n"
      "                   meanwhile (defaults 100, 30, 10000, 500)\n"
      "  --dump-timers F  write one CSV line per timer firing to F (i, due_ms, dispatch_us,\n"
      "                   seen_us, created_ms; 0 = not seen by the poller)\n");
  std::exit(code);
}

Config parse_args(int argc, char **argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      c.quick = true;
      c.single_events = 5000;
      c.instances = 200;
      c.per_instance = 20;
      c.timers = 20000;
      c.spread_s = 5;
      c.scale = 100000;
    }
  }
  auto need = [&](int &i) -> const char * {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", g_prog, argv[i]);
      usage(2);
    }
    return argv[++i];
  };
  auto num = [&](const char *s, double lo) {
    char *end = nullptr;
    double v = std::strtod(s, &end);
    if (!end || *end || !(v >= lo)) {
      std::fprintf(stderr, "%s: bad number '%s'\n", g_prog, s);
      usage(2);
    }
    return v;
  };
  double rate = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--quick")
      continue;
    else if (a == "--json")
      c.json_out = true;
    else if (a == "--verbose")
      c.verbose = true;
    else if (a == "--no-split")
      c.split = false;
    else if (a == "--help" || a == "-h")
      usage(0);
    else if (a == "--dir")
      c.dir = need(i);
    else if (a == "--dump-timers")
      c.dump = need(i);
    else if (a == "--only")
      c.only = need(i);
    else if (a == "--events")
      c.single_events = int64_t(num(need(i), 1));
    else if (a == "--instances")
      c.instances = int64_t(num(need(i), 1));
    else if (a == "--per-instance")
      c.per_instance = int64_t(num(need(i), 1));
    else if (a == "--timers")
      c.timers = int64_t(num(need(i), 1));
    else if (a == "--spread")
      c.spread_s = num(need(i), 0.1);
    else if (a == "--scale")
      c.scale = int64_t(num(need(i), 0));
    else if (a == "--chunk")
      c.chunk = int(num(need(i), 1));
    else if (a == "--rate")
      rate = num(need(i), 1);
    else if (a == "--pending")
      c.timer_pending = int64_t(num(need(i), 0));
    else if (a == "--catchup-crons")
      c.catchup_crons = int64_t(num(need(i), 1));
    else if (a == "--catchup-days")
      c.catchup_days = num(need(i), 0.001);
    else if (a == "--catchup-max")
      c.catchup_max = int64_t(num(need(i), 1));
    else if (a == "--catchup-write-rate")
      c.catchup_write_rate = num(need(i), 1);
    else {
      std::fprintf(stderr, "%s: unknown argument '%s'\n", g_prog, argv[i]);
      usage(2);
    }
  }
  if (rate > 0) c.spread_s = double(c.timers) / rate;
  if (c.dir.empty()) {
    const char *t = std::getenv("TMPDIR");
    c.dir = (t && *t) ? t : "/tmp";
  }
  return c;
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

void remove_db_files(const std::string &path) {
  for (const char *suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((path + suffix).c_str());
}

wf_engine *open_engine(const std::string &path, bool fresh = true) {
  if (fresh) remove_db_files(path);
  wf_engine *e = nullptr;
  {
    Step s("wf_open " + path, 120);
    wf_check(wf_open(path.c_str(), open_options(), &e), "wf_open");
  }
  if (!e) die("wf_open returned WF_OK but no engine");
  wf_check(wf_set_logger(e, g_log_level, log_cb, nullptr), "wf_set_logger");
  return e;
}

double close_engine(wf_engine *e, const std::string &path) {
  int64_t t = now_ns();
  {
    Step s("wf_close " + path, 300);
    wf_check(wf_close(e), "wf_close");
  }
  return secs_between(t, now_ns());
}

nlohmann::json get_stats(wf_engine *e) {
  char *out = nullptr;
  wf_check(wf_stats(e, nullptr, &out), "wf_stats");
  nlohmann::json doc = nlohmann::json::parse(out ? out : "{}", nullptr, false);
  wf_free(out);
  if (doc.is_discarded()) die("wf_stats returned text that is not JSON");
  return doc;
}

int64_t stats_int(const nlohmann::json &doc, const char *a, const char *b) {
  if (!doc.contains(a) || !doc[a].contains(b) || !doc[a][b].is_number_integer()) return -1;
  return doc[a][b].get<int64_t>();
}

// Loads `n` documents through host transactions of `chunk` calls each; `make`
// writes document i into `doc`, `call` is wf_tx_submit or wf_tx_schedule.
// Returns the seconds taken.
double load_in_tx(wf_engine *e, int64_t n, int chunk, const char *what,
                  const std::function<void(int64_t, std::string &)> &make,
                  int (*call)(wf_tx *, const char *)) {
  std::string doc;
  doc.reserve(256);
  int64_t t0 = now_ns();
  for (int64_t i = 0; i < n;) {
    wf_tx *tx = nullptr;
    wf_check(wf_tx_begin(e, &tx), "wf_tx_begin");
    int64_t end = std::min(n, i + chunk);
    for (; i < end; ++i) {
      make(i, doc);
      int rc = call(tx, doc.c_str());
      if (rc != WF_OK) {
        std::string msg =
            strf("%s (document %lld: %s) failed: %d (%s): %s", what, static_cast<long long>(i),
                 doc.c_str(), rc, wf_strerror(rc), wf_last_error());
        wf_tx_rollback(tx);
        die(msg);
      }
    }
    wf_check(wf_tx_commit(tx), "wf_tx_commit");
  }
  return secs_between(t0, now_ns());
}

// ---------------------------------------------------------- saga reducer

struct SagaCtx {
  std::atomic<int64_t> calls{0};
  std::atomic<int64_t> bad_input{0};
  int64_t target = 0;  // wake the waiter when calls reach it
  std::mutex mu;
  std::condition_variable cv;
};

// Reads n from a state {"n":<n>}; the reducer input is
// {"correlation_id","event","saga","state","tenant"} (keys in this order), so
// the last "state" key is the instance state. null state -> 0.
int64_t parse_state_n(std::string_view s, bool *ok) {
  *ok = true;
  size_t k = s.rfind("\"state\":");
  if (k == std::string_view::npos) {
    *ok = false;
    return 0;
  }
  k += 8;
  if (s.compare(k, 4, "null") == 0) return 0;
  if (s.compare(k, 5, "{\"n\":") != 0) {
    *ok = false;
    return 0;
  }
  k += 5;
  int64_t n = 0;
  auto r = std::from_chars(s.data() + k, s.data() + s.size(), n);
  if (r.ec != std::errc()) *ok = false;
  return n;
}

// A no-op reducer: counts the events applied to the instance and emits
// nothing. Cheap on purpose: it runs on the engine's loop thread.
int noop_reducer(void *user, const char *input, size_t len, wf_buf *out) {
  auto *c = static_cast<SagaCtx *>(user);
  bool ok = true;
  int64_t n = parse_state_n(std::string_view(input, len), &ok);
  if (!ok) c->bad_input.fetch_add(1);
  char buf[80];
  int m = std::snprintf(buf, sizeof buf, "{\"state\":{\"n\":%lld},\"done\":false}",
                        static_cast<long long>(n + 1));
  if (wf_buf_set(out, buf, size_t(m)) != WF_OK) return 1;
  if (c->calls.fetch_add(1) + 1 == c->target) {
    std::lock_guard<std::mutex> lk(c->mu);  // no lost wake-up
    c->cv.notify_all();
  }
  return 0;
}

const char *kSagaSpec = "{\"start\":[\"tick\"],\"correlation\":\"correlation_id\"}";

struct SagaRun {
  int64_t instances = 0, per_instance = 0, events = 0;
  double load_secs = 0;
  double reduce_secs = 0;  // wf_start -> last reducer call
  double secs = 0;         // wf_start -> events.pending == 0 (committed)
  double rate = 0;
  int64_t reducer_calls = 0, commits = -1;
  double cpu_cores = 0;
  double runq_s = 0;                // time threads waited for a CPU
  std::vector<int64_t> per_second;  // reducer calls in each second
  int64_t wrong_state = 0, bad_input = 0;
};

json saga_json(const SagaRun &r) {
  json j{{"instances", r.instances},
         {"events_per_instance", r.per_instance},
         {"events", r.events},
         {"steps_s", r.rate},
         {"secs", r.secs},
         {"reduce_secs", r.reduce_secs},
         {"load_secs", r.load_secs},
         {"load_events_s", r.load_secs > 0 ? double(r.events) / r.load_secs : 0},
         {"reducer_calls", r.reducer_calls},
         {"cpu_cores_busy", r.cpu_cores},
         {"run_queue_wait_s", r.runq_s},
         {"reducer_calls_per_second", r.per_second},
         {"wrong_state", r.wrong_state},
         {"bad_input", r.bad_input}};
  if (r.commits >= 0) {
    j["commits"] = r.commits;
    j["steps_per_commit"] = r.commits > 0 ? double(r.events) / double(r.commits) : 0;
  }
  return j;
}

// Runs M instances x K events on an open, not yet started engine with the
// saga registered. Events are interleaved: event k of every instance, then
// event k+1 (the order in which independent workflows usually progress).
SagaRun run_sagas(const Config &cfg, wf_engine *e, SagaCtx &ctx, int64_t m, int64_t k,
                  const char *label) {
  SagaRun r;
  r.instances = m;
  r.per_instance = k;
  r.events = m * k;
  auto corr = [&](int64_t inst) {
    return m == 1 ? std::string("single") : std::string("c").append(std::to_string(inst));
  };
  {
    Step s(std::string(label) + ": submitting events", 60 + double(r.events) / 200);
    r.load_secs = load_in_tx(
        e, r.events, cfg.chunk, "wf_tx_submit",
        [&](int64_t i, std::string &doc) {
          int64_t inst = i % m, seq = i / m;
          doc = strf(
              "{\"event_id\":\"e%lld-%lld\",\"type\":\"tick\",\"correlation_id\":\"%s\","
              "\"payload\":{\"seq\":%lld}}",
              static_cast<long long>(inst), static_cast<long long>(seq), corr(inst).c_str(),
              static_cast<long long>(seq));
        },
        wf_tx_submit);
  }
  auto st0 = get_stats(e);
  int64_t pending = stats_int(st0, "events", "pending");
  if (pending != r.events)
    die(strf("%s: %lld events submitted but wf_stats events.pending = %lld", label,
             static_cast<long long>(r.events), static_cast<long long>(pending)));
  int64_t commits0 = stats_int(st0, "engine", "commits");

  ctx.calls.store(0);
  ctx.target = r.events;
  double cpu0 = cpu_seconds(), rq0 = run_delay_s();
  int64_t t0 = now_ns(), t_reduced = 0;
  // Budget: at least 50 steps/s, or it is a hang.
  Step s(std::string(label) + ": applying events", 120 + double(r.events) / 50);
  wf_check(wf_start(e), "wf_start");
  {
    std::unique_lock<std::mutex> lk(ctx.mu);
    int64_t last = 0, stalled = 0;
    for (;;) {
      bool done =
          ctx.cv.wait_for(lk, std::chrono::seconds(1), [&] { return ctx.calls >= r.events; });
      int64_t c = ctx.calls.load();
      r.per_second.push_back(c - last);
      if (done) {
        t_reduced = now_ns();
        break;
      }
      stalled = c == last ? stalled + 1 : 0;
      last = c;
      if (cfg.verbose)
        std::fprintf(stderr, "  %s: %lld/%lld reducer calls\n", label, static_cast<long long>(c),
                     static_cast<long long>(r.events));
      if (stalled >= 60) {
        lk.unlock();
        die(strf("%s stalled at %lld/%lld reducer calls; wf_stats: %s", label,
                 static_cast<long long>(c), static_cast<long long>(r.events),
                 get_stats(e).dump().c_str()));
      }
    }
  }
  // The last reducer calls are committed asynchronously: poll the committed
  // snapshot until no saga event is pending.
  int64_t t_done = 0;
  for (;;) {
    auto st = get_stats(e);
    if (stats_int(st, "events", "pending") == 0) {
      t_done = now_ns();
      int64_t c1 = stats_int(st, "engine", "commits");
      if (commits0 >= 0 && c1 >= 0) r.commits = c1 - commits0;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  r.cpu_cores = (cpu_seconds() - cpu0) / secs_between(t0, t_done);
  r.runq_s = run_delay_s() - rq0;
  r.reduce_secs = secs_between(t0, t_reduced);
  r.secs = secs_between(t0, t_done);
  r.rate = double(r.events) / r.secs;
  r.reducer_calls = ctx.calls.load();
  r.bad_input = ctx.bad_input.load();

  // Every instance must have applied all its events, in order, exactly once.
  for (int64_t inst = 0; inst < m; ++inst) {
    char *out = nullptr;
    std::string c = corr(inst);
    wf_check(wf_saga_get(e, "", "bench", c.c_str(), &out), "wf_saga_get");
    nlohmann::json doc = nlohmann::json::parse(out ? out : "", nullptr, false);
    wf_free(out);
    bool good = !doc.is_discarded() && doc.value("version", int64_t(-1)) == k &&
                doc.contains("state") && doc["state"].is_object() &&
                doc["state"].value("n", int64_t(-1)) == k && doc.value("pending", -1) == 0 &&
                doc.value("status", "") == "active";
    if (!good) {
      if (r.wrong_state < 3)
        std::fprintf(stderr, "%s: instance %s: unexpected state %s (expected n = version = %lld)\n",
                     g_prog, c.c_str(), doc.dump().c_str(), static_cast<long long>(k));
      ++r.wrong_state;
    }
  }
  return r;
}

// ------------------------------------------------------------------ replay

struct ReplayRun {
  int64_t events = 0;
  std::vector<double> secs;  // per repetition
  double best_rate = 0, median_rate = 0;
  bool correct = true;
};

ReplayRun run_replay(wf_engine *e, int64_t expected, int reps) {
  ReplayRun r;
  for (int i = 0; i < reps; ++i) {
    char *out = nullptr;
    int64_t t = now_ns();
    {
      Step s("wf_saga_replay", 120 + double(expected) / 1000);
      wf_check(wf_saga_replay(e, "", "bench", "single", "{\"commit\":false}", &out),
               "wf_saga_replay");
    }
    r.secs.push_back(secs_between(t, now_ns()));
    nlohmann::json doc = nlohmann::json::parse(out ? out : "", nullptr, false);
    wf_free(out);
    r.events = doc.is_discarded() ? -1 : doc.value("events", int64_t(-1));
    bool good = !doc.is_discarded() && r.events == expected && doc.contains("state") &&
                doc["state"].is_object() && doc["state"].value("n", int64_t(-1)) == expected;
    if (!good) {
      std::fprintf(stderr, "%s: wf_saga_replay returned %s (expected %lld events)\n", g_prog,
                   doc.dump().c_str(), static_cast<long long>(expected));
      r.correct = false;
    }
  }
  std::vector<double> s = r.secs;
  std::sort(s.begin(), s.end());
  r.best_rate = double(expected) / s.front();
  r.median_rate = double(expected) / s[s.size() / 2];
  return r;
}

// ----------------------------------------------------------- timer lateness

struct TimerState {
  int64_t n = 0;
  int64_t base_ms = 0;  // due time of schedule 0
  double spread_ms = 0;
  std::unique_ptr<std::atomic<int64_t>[]> dispatch_us;  // wall clock at the callback
  std::atomic<int64_t> dispatched{0}, duplicates{0}, bad_key{0}, wrong_due{0}, late_complete{0};
  std::mutex mu;
  std::condition_variable cv;
  std::string first_error;

  int64_t due_ms(int64_t i) const {
    return base_ms + int64_t(std::floor(double(i) * spread_ms / double(n)));
  }
};

// "schedule:t<i>@<due_ms>" -> i, due; false if the key has another shape.
bool parse_timer_key(const char *key, int64_t *i, int64_t *due) {
  std::string_view k = key ? key : "";
  constexpr std::string_view prefix = "schedule:t";
  if (k.substr(0, prefix.size()) != prefix) return false;
  k.remove_prefix(prefix.size());
  size_t at = k.find('@');
  if (at == std::string_view::npos) return false;
  auto r1 = std::from_chars(k.data(), k.data() + at, *i);
  auto r2 = std::from_chars(k.data() + at + 1, k.data() + k.size(), *due);
  return r1.ec == std::errc() && r1.ptr == k.data() + at && r2.ec == std::errc() &&
         r2.ptr == k.data() + k.size();
}

void timer_effect(void *user, wf_job *job) {
  int64_t t = wall_us();
  auto *st = static_cast<TimerState *>(user);
  int64_t i = -1, due = 0;
  bool ok = parse_timer_key(wf_job_key(job), &i, &due);
  int rc = wf_job_complete(job, nullptr);  // job is gone after this
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
  if (!ok || i < 0 || i >= st->n) {
    st->bad_key.fetch_add(1);
    return;
  }
  if (due != st->due_ms(i)) st->wrong_due.fetch_add(1);
  int64_t expected = 0;
  if (!st->dispatch_us[size_t(i)].compare_exchange_strong(expected, t)) {
    st->duplicates.fetch_add(1);
    return;
  }
  if (st->dispatched.fetch_add(1) + 1 == st->n) {
    std::lock_guard<std::mutex> lk(st->mu);
    st->cv.notify_all();
  }
}

std::string timer_doc(int64_t i, int64_t at_ms) {
  return strf("{\"key\":\"t%lld\",\"at\":%lld,\"job\":{\"effect\":\"timer\"}}",
              static_cast<long long>(i), static_cast<long long>(at_ms));
}

// Watches wf_jobs through a separate read-only SQLite connection: the first
// time a materialized job is visible approximates when the firing committed.
class JobPoller {
 public:
  JobPoller(const std::string &path, int64_t n, int64_t interval_us)
      : n_(n), interval_us_(interval_us) {
    seen_us_ = std::make_unique<std::atomic<int64_t>[]>(size_t(n));
    created_ms_ = std::make_unique<std::atomic<int64_t>[]>(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      seen_us_[size_t(i)].store(0, std::memory_order_relaxed);
      created_ms_[size_t(i)].store(0, std::memory_order_relaxed);
    }
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
      die(strf("poller: sqlite3_open_v2 %s: %s", path.c_str(), sqlite3_errmsg(db_)));
    sqlite3_busy_timeout(db_, 1000);
    if (sqlite3_prepare_v2(db_, "SELECT id, key, created_at FROM wf_jobs WHERE id > ?1 ORDER BY id",
                           -1, &st_, nullptr) != SQLITE_OK)
      die(strf("poller: prepare: %s", sqlite3_errmsg(db_)));
  }
  ~JobPoller() {
    stop();
    sqlite3_finalize(st_);
    sqlite3_close(db_);
  }
  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  int64_t seen_us(int64_t i) const { return seen_us_[size_t(i)].load(); }
  int64_t created_ms(int64_t i) const { return created_ms_[size_t(i)].load(); }
  int64_t polls() const { return polls_; }
  double cpu_s() const { return cpu_s_; }

 private:
  void run() {
    struct timespec c0 {
    }, c1{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    int64_t last_id = 0;
    while (!stop_.load()) {
      sqlite3_bind_int64(st_, 1, last_id);
      int rc;
      while ((rc = sqlite3_step(st_)) == SQLITE_ROW) {
        int64_t t = wall_us();
        last_id = sqlite3_column_int64(st_, 0);
        const char *key = reinterpret_cast<const char *>(sqlite3_column_text(st_, 1));
        int64_t i = -1, due = 0;
        if (parse_timer_key(key, &i, &due) && i >= 0 && i < n_) {
          seen_us_[size_t(i)].store(t);
          created_ms_[size_t(i)].store(sqlite3_column_int64(st_, 2));
        }
      }
      sqlite3_reset(st_);
      if (rc != SQLITE_DONE && rc != SQLITE_BUSY)
        die(strf("poller: step: %d %s", rc, sqlite3_errmsg(db_)));
      ++polls_;
      std::this_thread::sleep_for(std::chrono::microseconds(interval_us_));
    }
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    cpu_s_ = double(c1.tv_sec - c0.tv_sec) + double(c1.tv_nsec - c0.tv_nsec) / 1e9;
  }
  int64_t n_, interval_us_;
  sqlite3 *db_ = nullptr;
  sqlite3_stmt *st_ = nullptr;
  std::unique_ptr<std::atomic<int64_t>[]> seen_us_, created_ms_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  int64_t polls_ = 0;
  double cpu_s_ = 0;
};

struct TimerRun {
  int64_t n = 0;
  double spread_s = 0;
  double calib_rate = 0;  // schedules/s in the calibration load
  double load_secs = 0, load_rate = 0;
  double lead_s = 0;  // first due time - wf_start
  int64_t overdue_at_start = 0;
  Dist lateness;  // dispatch - due, all firings counted
  int64_t early = 0, duplicates = 0, bad_key = 0, wrong_due = 0, late_complete = 0;
  int64_t missing = 0;
  double fire_window_s = 0;  // first due -> last dispatch
  double cpu_cores = 0, runq_s = 0;
  int64_t commits = -1;
  int64_t schedules_left = -1, jobs_left = -1;
  int64_t pending = 0;  // schedules due in a year, pending throughout
  // split, from the poller (when enabled)
  bool split = false;
  int64_t split_seen = 0, split_seen_after_dispatch = 0, polls = 0;
  double poll_cpu_cores = 0;
  Dist due_to_fire_start;  // created_at (fire tx start, ms) - due
  Dist due_to_visible;     // first seen by the poller - due
  Dist visible_to_dispatch;
  std::vector<int64_t> late_per_second;  // p99 lateness in each second of due times, us
};

TimerRun run_timers(const Config &cfg, const std::string &path) {
  TimerRun r;
  r.n = cfg.timers;
  r.spread_s = cfg.spread_s;
  // Calibrate the load rate on a scratch database, so that the first schedule
  // is due shortly after wf_start even on a slow disk.
  {
    std::string cpath = g_tmpdir + "/calib.db";
    wf_engine *e = open_engine(cpath);
    int64_t far = wall_ms() + 3600 * 1000;
    const int64_t n = std::min<int64_t>(2000, r.n);
    double secs = load_in_tx(
        e, n, cfg.chunk, "wf_tx_schedule",
        [&](int64_t i, std::string &doc) { doc = timer_doc(i, far + i); }, wf_tx_schedule);
    r.calib_rate = double(n) / secs;
    close_engine(e, cpath);
    remove_db_files(cpath);
  }
  TimerState st;
  st.n = r.n;
  st.spread_ms = cfg.spread_s * 1000;
  st.dispatch_us = std::make_unique<std::atomic<int64_t>[]>(size_t(r.n));
  for (int64_t i = 0; i < r.n; ++i) st.dispatch_us[size_t(i)].store(0, std::memory_order_relaxed);
  double est_load_s = double(r.n) / r.calib_rate;
  st.base_ms = wall_ms() + int64_t(est_load_s * 1500) + 1500;

  wf_engine *e = open_engine(path);
  wf_check(wf_effect_register(e, "timer", nullptr, timer_effect, &st), "wf_effect_register");
  if (cfg.timer_pending > 0) {
    Step s("timers: creating the pending schedules", 600 + double(cfg.timer_pending) / 1000);
    int64_t year = wall_ms() + 365 * 86400000LL;
    load_in_tx(
        e, cfg.timer_pending, cfg.chunk, "wf_tx_schedule",
        [&](int64_t i, std::string &doc) {
          doc = strf("{\"key\":\"p%lld\",\"at\":%lld,\"job\":{\"effect\":\"timer\"}}",
                     static_cast<long long>(i), static_cast<long long>(year + i));
        },
        wf_tx_schedule);
    st.base_ms = wall_ms() + int64_t(est_load_s * 1500) + 1500;
  }
  {
    Step s("timers: creating schedules", 120 + est_load_s * 10);
    r.load_secs = load_in_tx(
        e, r.n, cfg.chunk, "wf_tx_schedule",
        [&](int64_t i, std::string &doc) { doc = timer_doc(i, st.due_ms(i)); }, wf_tx_schedule);
  }
  r.load_rate = double(r.n) / r.load_secs;
  auto st0 = get_stats(e);
  r.pending = cfg.timer_pending;
  if (stats_int(st0, "schedules", "pending") != r.n + r.pending)
    die(strf("timers: %lld schedules created but wf_stats schedules.pending = %lld",
             static_cast<long long>(r.n),
             static_cast<long long>(stats_int(st0, "schedules", "pending"))));
  int64_t commits0 = stats_int(st0, "engine", "commits");

  std::unique_ptr<JobPoller> poller;
  if (cfg.split) {
    poller = std::make_unique<JobPoller>(path, r.n, 500);
    poller->start();
  }
  double cpu0 = cpu_seconds(), rq0 = run_delay_s();
  int64_t t_start_wall_ms = wall_ms();
  int64_t t0 = now_ns();
  wf_check(wf_start(e), "wf_start");
  r.lead_s = double(st.base_ms - t_start_wall_ms) / 1e3;
  {
    Step s("timers: waiting for every firing", cfg.spread_s + r.lead_s + 120);
    std::unique_lock<std::mutex> lk(st.mu);
    int64_t last = 0, stalled = 0;
    for (;;) {
      bool done = st.cv.wait_for(lk, std::chrono::seconds(1), [&] {
        return st.dispatched.load() >= st.n || !st.first_error.empty();
      });
      if (!st.first_error.empty()) {
        std::string err = st.first_error;
        lk.unlock();
        die(err);
      }
      if (done) break;
      int64_t c = st.dispatched.load();
      if (cfg.verbose)
        std::fprintf(stderr, "  timers: %lld/%lld dispatched\n", static_cast<long long>(c),
                     static_cast<long long>(st.n));
      // Nothing is due before base_ms; after the last due time, no progress
      // for 30 s is a stall.
      stalled = (c == last && wall_ms() > st.due_ms(st.n - 1)) ? stalled + 1 : 0;
      last = c;
      if (stalled >= 30) {
        lk.unlock();
        die(strf("timers stalled at %lld/%lld dispatched; wf_stats: %s", static_cast<long long>(c),
                 static_cast<long long>(st.n), get_stats(e).dump().c_str()));
      }
    }
  }
  int64_t t_end = now_ns();
  if (poller) poller->stop();
  wf_check(wf_sync(e), "wf_sync");
  r.cpu_cores = (cpu_seconds() - cpu0) / secs_between(t0, t_end);
  r.runq_s = run_delay_s() - rq0;
  auto st1 = get_stats(e);
  int64_t c1 = stats_int(st1, "engine", "commits");
  if (commits0 >= 0 && c1 >= 0) r.commits = c1 - commits0;
  r.schedules_left = stats_int(st1, "schedules", "pending");
  {
    int64_t left = 0;
    for (const char *k : {"ready", "scheduled", "running"}) left += stats_int(st1, "outbox", k);
    r.jobs_left = left;
  }
  close_engine(e, path);
  remove_db_files(path);

  r.duplicates = st.duplicates.load();
  r.bad_key = st.bad_key.load();
  r.wrong_due = st.wrong_due.load();
  r.late_complete = st.late_complete.load();
  std::vector<int64_t> late, a, b, c;
  late.reserve(size_t(r.n));
  int64_t last_dispatch = 0;
  // Lateness per second of due time (p99), to see whether it drifts.
  int nsec = std::max(1, int(std::ceil(cfg.spread_s)));
  std::vector<std::vector<int64_t>> by_sec(static_cast<size_t>(nsec));
  for (int64_t i = 0; i < r.n; ++i) {
    int64_t d = st.dispatch_us[size_t(i)].load();
    if (d == 0) {
      ++r.missing;
      continue;
    }
    int64_t due_us = st.due_ms(i) * 1000;
    if (st.due_ms(i) <= t_start_wall_ms) ++r.overdue_at_start;
    int64_t l = d - due_us;
    if (l < 0) ++r.early;
    late.push_back(l);
    last_dispatch = std::max(last_dispatch, d);
    size_t sec = std::min(size_t(nsec - 1), size_t((st.due_ms(i) - st.base_ms) / 1000));
    by_sec[sec].push_back(l);
    if (poller) {
      int64_t seen = poller->seen_us(i);
      if (seen != 0) {
        ++r.split_seen;
        if (seen > d) ++r.split_seen_after_dispatch;
        a.push_back(poller->created_ms(i) * 1000 - due_us);
        b.push_back(seen - due_us);
        c.push_back(d - seen);
      }
    }
  }
  if (!cfg.dump.empty()) {
    FILE *f = std::fopen(cfg.dump.c_str(), "w");
    if (!f) die(strf("cannot write %s: %s", cfg.dump.c_str(), std::strerror(errno)));
    std::fprintf(f, "i,due_ms,dispatch_us,seen_us,created_ms\n");
    for (int64_t i = 0; i < r.n; ++i)
      std::fprintf(f, "%lld,%lld,%lld,%lld,%lld\n", static_cast<long long>(i),
                   static_cast<long long>(st.due_ms(i)),
                   static_cast<long long>(st.dispatch_us[size_t(i)].load()),
                   static_cast<long long>(poller ? poller->seen_us(i) : 0),
                   static_cast<long long>(poller ? poller->created_ms(i) : 0));
    std::fclose(f);
  }
  for (auto &v : by_sec) r.late_per_second.push_back(v.empty() ? 0 : summarize_us(v).p99_ms * 1e3);
  r.fire_window_s = double(last_dispatch - st.base_ms * 1000) / 1e6;
  r.lateness = summarize_us(std::move(late));
  if (poller) {
    r.split = true;
    r.polls = poller->polls();
    r.poll_cpu_cores = poller->cpu_s() / secs_between(t0, t_end);
    r.due_to_fire_start = summarize_us(std::move(a));
    r.due_to_visible = summarize_us(std::move(b));
    r.visible_to_dispatch = summarize_us(std::move(c));
  }
  return r;
}

// ------------------------------------------------------------------ catch-up

// Cron catch-up after downtime: C per-second crons, the clock (wf_set_clock:
// wall time + an offset) stepped D days ahead, while one thread makes paced
// durable wf_enqueue calls and records each call's latency. The same writer
// runs first for a few seconds without a catch-up (baseline, same run).
struct CatchUpRun {
  std::string policy;
  int64_t crons = 0, max = 0, expected = 0, fired = 0;
  double secs = 0;    // wf_wake after the step -> no schedule due
  Dist base, during;  // wf_enqueue latency without / during the catch-up
  int64_t commits = -1;
  double cpu_cores = 0;
};

std::atomic<int64_t> g_clock_offset_ms{0};
int64_t offset_clock(void *) { return wall_ms() + g_clock_offset_ms.load(); }

CatchUpRun run_catchup(const Config &cfg, const std::string &path, const char *policy) {
  CatchUpRun r;
  r.policy = policy;
  r.crons = cfg.catchup_crons;
  r.max = cfg.catchup_max;
  g_clock_offset_ms = 0;
  wf_engine *e = open_engine(path);
  wf_check(wf_set_clock(e, offset_clock, nullptr), "wf_set_clock");
  load_in_tx(
      e, r.crons, cfg.chunk, "wf_tx_schedule",
      [&](int64_t i, std::string &doc) {
        doc = strf(
            "{\"key\":\"cron%lld\",\"cron\":\"* * * * * *\",\"tz\":\"Europe/Berlin\","
            "\"catch_up\":\"%s\",\"catch_up_max\":%lld,\"job\":{\"effect\":\"cron\"}}",
            static_cast<long long>(i), policy, static_cast<long long>(r.max));
      },
      wf_tx_schedule);
  wf_check(wf_start(e), "wf_start");
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
    die(strf("catchup: open %s: %s", path.c_str(), sqlite3_errmsg(db)));
  sqlite3_busy_timeout(db, 1000);
  auto scalar = [&](const char *sql, int64_t bind) {
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK)
      die(strf("catchup: prepare: %s", sqlite3_errmsg(db)));
    if (bind != INT64_MIN) sqlite3_bind_int64(st, 1, bind);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  };
  // The paced writer: durable wf_enqueue calls, latency per call.
  std::atomic<int> phase{0};  // 0 baseline, 1 during, 2 stop
  std::vector<int64_t> lat[2];
  std::thread writer([&] {
    const int64_t period_ns = int64_t(1e9 / cfg.catchup_write_rate);
    int64_t next = now_ns();
    for (int64_t i = 0;; ++i) {
      int ph = phase.load();
      if (ph == 2) break;
      std::string doc =
          strf("{\"effect\":\"w\",\"payload\":{\"i\":%lld}}", static_cast<long long>(i));
      int64_t t0 = now_ns();
      wf_check(wf_enqueue(e, doc.c_str(), nullptr), "wf_enqueue");
      lat[ph].push_back((now_ns() - t0) / 1000);
      next += period_ns;
      int64_t now = now_ns();
      if (next > now)
        std::this_thread::sleep_for(std::chrono::nanoseconds(next - now));
      else
        next = now;
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(3));
  int64_t jobs0 = scalar("SELECT count(*) FROM wf_jobs WHERE effect = 'cron'", INT64_MIN);
  auto st0 = get_stats(e);
  double cpu0 = cpu_seconds();
  int64_t t0 = now_ns();
  phase = 1;
  g_clock_offset_ms = int64_t(cfg.catchup_days * 86400e3);
  wf_check(wf_wake(e), "wf_wake");
  {
    Step step(strf("catchup %s: waiting until no schedule is due", policy), 3600);
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      // Due long enough to be a missed second, not the one falling due now.
      if (scalar("SELECT count(*) FROM wf_schedules WHERE next_due <= ?1",
                 offset_clock(nullptr) - 1500) == 0)
        break;
    }
  }
  r.secs = secs_between(t0, now_ns());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  phase = 2;
  writer.join();
  r.cpu_cores = (cpu_seconds() - cpu0) / secs_between(t0, now_ns());
  auto st1 = get_stats(e);
  int64_t c0 = stats_int(st0, "engine", "commits"), c1 = stats_int(st1, "engine", "commits");
  if (c0 >= 0 && c1 >= 0) r.commits = c1 - c0;
  r.fired = scalar("SELECT count(*) FROM wf_jobs WHERE effect = 'cron'", INT64_MIN) - jobs0;
  r.expected = std::string(policy) == "all" ? r.crons * r.max : r.crons;
  sqlite3_close(db);
  close_engine(e, path);
  remove_db_files(path);
  r.base = summarize_us(std::move(lat[0]));
  r.during = summarize_us(std::move(lat[1]));
  return r;
}

// -------------------------------------------------------------------- scale

// Child process: measures opening an existing database in a fresh address
// space and prints one JSON line.
struct ProbeState {
  std::mutex mu;
  std::condition_variable cv;
  int64_t dispatch_us = 0, due_ms = 0;
};

void probe_effect(void *user, wf_job *job) {
  int64_t t = wall_us();
  auto *p = static_cast<ProbeState *>(user);
  std::string_view k = wf_job_key(job);
  int64_t due = 0;
  size_t at = k.rfind('@');
  if (at != std::string_view::npos) std::from_chars(k.data() + at + 1, k.data() + k.size(), due);
  int rc = wf_job_complete(job, nullptr);
  std::lock_guard<std::mutex> lk(p->mu);
  p->dispatch_us = rc == WF_OK ? t : -1;
  p->due_ms = due;
  p->cv.notify_all();
}

int scale_child(const std::string &path) {
  g_prog = "wf_bench_saga (scale child)";
  ::alarm(600);  // a hang kills the child; the parent reports it
  json r;
  r["rss_before_kib"] = proc_status_kib("VmRSS:");
  wf_engine *e = nullptr;
  int64_t t = now_ns();
  wf_check(wf_open(path.c_str(), open_options(), &e), "wf_open");
  r["open_ms"] = ms_between(t, now_ns());
  r["rss_after_open_kib"] = proc_status_kib("VmRSS:");
  ProbeState probe;
  wf_check(wf_effect_register(e, "probe", nullptr, probe_effect, &probe), "wf_effect_register");
  t = now_ns();
  wf_check(wf_start(e), "wf_start");
  r["start_ms"] = ms_between(t, now_ns());
  // wf_sync is a barrier through the loop and the writer: once it returns, the
  // loop has run its start-up pass (timer armed) and every write it queued is
  // committed.
  wf_check(wf_sync(e), "wf_sync");
  r["idle_ms"] = ms_between(t, now_ns());
  r["rss_after_start_kib"] = proc_status_kib("VmRSS:");
  // A few more schedules due 100 ms ahead: the timer must stay precise, also
  // while another thread calls wf_stats back to back (a dashboard).
  auto probe_once = [&](int k) {
    {
      std::lock_guard<std::mutex> lk(probe.mu);
      probe.dispatch_us = 0;
    }
    std::string doc =
        strf("{\"key\":\"probe%d\",\"delay_ms\":100,\"job\":{\"effect\":\"probe\"}}", k);
    wf_check(wf_schedule(e, doc.c_str()), "wf_schedule");
    std::unique_lock<std::mutex> lk(probe.mu);
    if (!probe.cv.wait_for(lk, std::chrono::seconds(30), [&] { return probe.dispatch_us != 0; }))
      die("scale: a probe schedule did not fire within 30 s");
    if (probe.dispatch_us < 0) die("scale: wf_job_complete failed on a probe job");
    return double(probe.dispatch_us - probe.due_ms * 1000) / 1e3;
  };
  auto median_max = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return json{{"median_ms", v[v.size() / 2]}, {"max_ms", v.back()}, {"all_ms", v}};
  };
  std::vector<double> idle_late, busy_late;
  for (int k = 0; k < 5; ++k) idle_late.push_back(probe_once(k));
  r["probe_lateness"] = median_max(idle_late);
  t = now_ns();
  auto st = get_stats(e);
  r["stats_ms"] = ms_between(t, now_ns());
  {
    std::atomic<bool> stop{false};
    std::atomic<int64_t> calls{0};
    std::thread dash([&] {
      while (!stop.load()) {
        char *o = nullptr;
        wf_check(wf_stats(e, nullptr, &o), "wf_stats");
        wf_free(o);
        calls.fetch_add(1);
      }
    });
    for (int k = 5; k < 10; ++k) busy_late.push_back(probe_once(k));
    stop.store(true);
    dash.join();
    r["probe_lateness_during_stats_loop"] = median_max(busy_late);
    r["stats_calls_during_probes"] = calls.load();
  }
  r["schedules_pending"] = stats_int(st, "schedules", "pending");
  r["next_due_ms"] = stats_int(st, "schedules", "next_due_ms");
  r["rss_after_stats_kib"] = proc_status_kib("VmRSS:");
  r["hwm_kib"] = proc_status_kib("VmHWM:");
  t = now_ns();
  wf_check(wf_close(e), "wf_close");
  r["close_ms"] = ms_between(t, now_ns());
  std::printf("%s\n", r.dump().c_str());
  std::fflush(stdout);
  return 0;
}

json run_child(const std::string &path) {
  int fds[2];
  if (::pipe(fds) != 0) die(strf("pipe: %s", std::strerror(errno)));
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) die(strf("fork: %s", std::strerror(errno)));
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    const char *args[] = {"wf_bench_saga", "--scale-child", path.c_str(), nullptr};
    ::execv("/proc/self/exe", const_cast<char *const *>(args));
    std::fprintf(stderr, "exec /proc/self/exe: %s\n", std::strerror(errno));
    std::_Exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.append(buf, size_t(n));
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die(strf("scale child on %s failed (status 0x%x): %s", path.c_str(), status, out.c_str()));
  json r = json::parse(out, nullptr, false);
  if (r.is_discarded()) die("scale child printed no JSON: " + out);
  return r;
}

struct ScaleRun {
  int64_t n = 0;
  double load_secs = 0, load_rate = 0, load_close_secs = 0;
  int64_t db_bytes = 0;
  json empty, big;  // child reports
};

ScaleRun run_scale(const Config &cfg) {
  ScaleRun r;
  r.n = cfg.scale;
  std::string empty = g_tmpdir + "/scale-empty.db", big = g_tmpdir + "/scale.db";
  close_engine(open_engine(empty), empty);  // schema only
  {
    wf_engine *e = open_engine(big);
    int64_t far = wall_ms() + int64_t(365) * 86400 * 1000;
    Step s("scale: creating schedules", 300 + double(r.n) / 500);
    r.load_secs = load_in_tx(
        e, r.n, std::max(cfg.chunk, 10000), "wf_tx_schedule",
        [&](int64_t i, std::string &doc) {
          doc = strf("{\"key\":\"far%lld\",\"at\":%lld,\"job\":{\"effect\":\"far\"}}",
                     static_cast<long long>(i), static_cast<long long>(far + i));
        },
        wf_tx_schedule);
    r.load_rate = double(r.n) / r.load_secs;
    r.load_close_secs = close_engine(e, big);
  }
  r.db_bytes = file_size(big) + file_size(big + "-wal");
  {
    Step s("scale: child on the empty database", 600);
    r.empty = run_child(empty);
  }
  {
    Step s("scale: child on the big database", 600);
    r.big = run_child(big);
  }
  if (r.big.value("schedules_pending", int64_t(-1)) != r.n)
    die(strf("scale: the child saw %lld pending schedules, expected %lld",
             static_cast<long long>(r.big.value("schedules_pending", int64_t(-1))),
             static_cast<long long>(r.n)));
  remove_db_files(empty);
  remove_db_files(big);
  return r;
}

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

double loadavg1() {
  double l = -1;
  if (FILE *f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

}  // namespace

int main(int argc, char **argv) {
  g_prog = "wf_bench_saga";
  if (argc == 3 && std::strcmp(argv[1], "--scale-child") == 0) return scale_child(argv[2]);
  Config cfg = parse_args(argc, argv);
  g_log_level = cfg.verbose ? WF_LOG_INFO : WF_LOG_WARN;
  FILE *out = cfg.json_out ? stderr : stdout;
  Watchdog watchdog;
  g_watchdog = &watchdog;

  std::string tmpl = cfg.dir + "/wf_bench_saga.XXXXXX";
  std::vector<char> tbuf(tmpl.begin(), tmpl.end());
  tbuf.push_back('\0');
  if (!::mkdtemp(tbuf.data()))
    die(strf("mkdtemp in %s: %s", cfg.dir.c_str(), std::strerror(errno)));
  g_tmpdir = tbuf.data();

  struct utsname un {};
  ::uname(&un);
  unsigned ncpu = std::thread::hardware_concurrency();
  std::string cpu = cpu_model();
  double load0 = loadavg1();
  {
    std::lock_guard<std::mutex> lk(g_results_mu);
    g_results["wf_version"] = wf_version();
    g_results["mode"] = cfg.quick ? "quick" : "default";
    g_results["machine"] = {{"nproc", ncpu},
                            {"cpu", cpu},
                            {"kernel", un.release},
                            {"dir", g_tmpdir},
                            {"loadavg_1m_at_start", load0}};
    g_results["config"] = {{"open_options", open_options()},
                           {"single_events", cfg.single_events},
                           {"instances", cfg.instances},
                           {"per_instance", cfg.per_instance},
                           {"timers", cfg.timers},
                           {"spread_s", cfg.spread_s},
                           {"split", cfg.split},
                           {"scale", cfg.scale},
                           {"chunk", cfg.chunk}};
    g_results["targets"] = {{"saga_steps_s", kTargetStepsS},
                            {"replay_events_s", kTargetReplayS},
                            {"timer_lateness_p99_ms", kTargetLatenessP99Ms}};
  }
  std::fprintf(out, "wf_bench_saga — wfengine %s, %s mode\n", wf_version(),
               cfg.quick ? "quick" : "default");
  std::fprintf(out, "machine: %u CPU (%s), kernel %s, %s, load average %.2f at start\n", ncpu,
               cpu.c_str(), un.release, g_tmpdir.c_str(), load0);
  std::fprintf(out, "wf_open %s; events and schedules are loaded in host transactions of %d\n\n",
               open_options(), cfg.chunk);
  std::fflush(out);

  bool anomalies = false;
  std::vector<std::string> verdicts;
  auto target_line = [&](const std::string &what, const std::string &value, const char *target,
                         const char *status) {
    verdicts.push_back(strf("  %-44s %22s  %-12s %s", what.c_str(), value.c_str(), target, status));
  };

  // ---- 1 + 2. sagas and replay. The single-instance engine stays open (idle)
  // during the many-instance run, then serves the replay.
  bool run_single = cfg.want("saga1") || cfg.want("replay");
  if (run_single || cfg.want("sagaN"))
    std::fprintf(out, "Saga steps (no-op reducer; step commits are not fsync'd)\n");
  std::string path1 = g_tmpdir + "/saga1.db";
  SagaCtx ctx1;
  wf_engine *e1 = nullptr;
  auto saga_lines = [&](const SagaRun &r, const std::string &label) {
    std::fprintf(out, "  %-44s %12s steps/s  (%.2f s; events loaded at %s/s)\n", label.c_str(),
                 fmt_int(r.rate).c_str(), r.secs, fmt_int(double(r.events) / r.load_secs).c_str());
    std::fprintf(out,
                 "  %-44s %s commits, %.1f steps/commit, CPU %.2f cores busy, %.2f s waiting for "
                 "a CPU\n",
                 "", fmt_int(double(r.commits)).c_str(),
                 r.commits > 0 ? double(r.events) / double(r.commits) : 0.0, r.cpu_cores, r.runq_s);
    std::fflush(out);
    target_line(label, fmt_int(r.rate) + " steps/s", ">= 50,000", verdict(r.rate >= kTargetStepsS));
    if (r.wrong_state || r.bad_input || r.reducer_calls != r.events) anomalies = true;
  };
  if (run_single) {
    e1 = open_engine(path1);
    wf_check(wf_saga_register(e1, "bench", kSagaSpec, noop_reducer, &ctx1), "wf_saga_register");
    std::string label = strf("1 instance x %s events", fmt_int(double(cfg.single_events)).c_str());
    SagaRun one = run_sagas(cfg, e1, ctx1, 1, cfg.single_events, label.c_str());
    set_result("/saga/single_instance", saga_json(one));
    saga_lines(one, label);
  }
  if (cfg.want("sagaN")) {
    std::string path2 = g_tmpdir + "/sagaN.db";
    SagaCtx ctx2;
    wf_engine *e2 = open_engine(path2);
    wf_check(wf_saga_register(e2, "bench", kSagaSpec, noop_reducer, &ctx2), "wf_saga_register");
    std::string label = strf("%s instances x %s events", fmt_int(double(cfg.instances)).c_str(),
                             fmt_int(double(cfg.per_instance)).c_str());
    SagaRun many = run_sagas(cfg, e2, ctx2, cfg.instances, cfg.per_instance, label.c_str());
    set_result("/saga/many_instances", saga_json(many));
    saga_lines(many, label);
    close_engine(e2, path2);
    remove_db_files(path2);
  }
  if (cfg.want("replay")) {
    ReplayRun rp = run_replay(e1, cfg.single_events, 3);
    std::fprintf(out, "\nReplay (wf_saga_replay, commit false, same reducer)\n");
    std::string label = strf("replay of %s events", fmt_int(double(cfg.single_events)).c_str());
    std::fprintf(out, "  %-44s %12s events/s (median of 3; best %s; %.3f s)\n", label.c_str(),
                 fmt_int(rp.median_rate).c_str(), fmt_int(rp.best_rate).c_str(),
                 double(cfg.single_events) / rp.median_rate);
    std::fflush(out);
    set_result("/replay", json{{"events", rp.events},
                               {"secs", rp.secs},
                               {"median_events_s", rp.median_rate},
                               {"best_events_s", rp.best_rate},
                               {"correct", rp.correct}});
    target_line(label, fmt_int(rp.median_rate) + " events/s", ">= 200,000",
                verdict(rp.median_rate >= kTargetReplayS));
    if (!rp.correct) anomalies = true;
  }
  if (e1) {
    close_engine(e1, path1);
    remove_db_files(path1);
  }

  // ---- 3. timers
  if (cfg.want("timers")) {
    TimerRun tr;
    {
      Step s("timers", 900 + cfg.spread_s + double(cfg.timers) / 100);
      tr = run_timers(cfg, g_tmpdir + "/timers.db");
    }
    std::fprintf(out, "\nTimer lateness (one-shot schedules -> job -> no-op effect)\n");
    std::string label =
        strf("%s due over %.0f s (%s/s), %s pending", fmt_int(double(tr.n)).c_str(), tr.spread_s,
             fmt_int(double(tr.n) / tr.spread_s).c_str(), fmt_int(double(tr.pending)).c_str());
    std::fprintf(out, "  %-44s %s\n", label.c_str(), dist_line(tr.lateness).c_str());
    std::fprintf(out,
                 "  %-44s created at %s schedules/s (%.2f s); first due %.2f s after wf_start\n",
                 "", fmt_int(tr.load_rate).c_str(), tr.load_secs, tr.lead_s);
    std::fprintf(out,
                 "  %-44s %s commits (%.1f firings/commit), CPU %.2f cores busy, %.2f s waiting "
                 "for a CPU\n",
                 "", fmt_int(double(tr.commits)).c_str(),
                 tr.commits > 0 ? double(tr.n) / double(tr.commits) : 0.0, tr.cpu_cores, tr.runq_s);
    if (tr.split) {
      std::fprintf(out, "  %-44s %s\n", "  due -> firing tx began (created_at, 1 ms)",
                   dist_line(tr.due_to_fire_start).c_str());
      std::fprintf(out, "  %-44s %s\n", "  due -> job visible (committed)",
                   dist_line(tr.due_to_visible).c_str());
      std::fprintf(out, "  %-44s %s\n", "  visible -> dispatched",
                   dist_line(tr.visible_to_dispatch).c_str());
      std::fprintf(out,
                   "  %-44s (poller saw %s of %s jobs, %s after their dispatch; %s polls, "
                   "%.2f cores)\n",
                   "", fmt_int(double(tr.split_seen)).c_str(), fmt_int(double(tr.n)).c_str(),
                   fmt_int(double(tr.split_seen_after_dispatch)).c_str(),
                   fmt_int(double(tr.polls)).c_str(), tr.poll_cpu_cores);
    }
    if (tr.overdue_at_start)
      std::fprintf(out,
                   "  %lld schedules were already due at wf_start (load slower than calibrated)\n",
                   static_cast<long long>(tr.overdue_at_start));
    std::fflush(out);
    json tj{{"schedules", tr.n},
            {"pending", tr.pending},
            {"firings_s", double(tr.n) / tr.spread_s},
            {"spread_s", tr.spread_s},
            {"calibration_schedules_s", tr.calib_rate},
            {"load_secs", tr.load_secs},
            {"load_schedules_s", tr.load_rate},
            {"first_due_after_start_s", tr.lead_s},
            {"overdue_at_start", tr.overdue_at_start},
            {"lateness", dist_json(tr.lateness)},
            {"lateness_p99_us_per_second_of_due_time", tr.late_per_second},
            {"fire_window_s", tr.fire_window_s},
            {"cpu_cores_busy", tr.cpu_cores},
            {"run_queue_wait_s", tr.runq_s},
            {"commits", tr.commits},
            {"early", tr.early},
            {"missing", tr.missing},
            {"duplicates", tr.duplicates},
            {"bad_key", tr.bad_key},
            {"wrong_due", tr.wrong_due},
            {"late_complete", tr.late_complete},
            {"schedules_left", tr.schedules_left},
            {"jobs_left", tr.jobs_left}};
    if (tr.split)
      tj["split"] = json{{"poll_interval_us", 500},
                         {"polls", tr.polls},
                         {"poller_cpu_cores", tr.poll_cpu_cores},
                         {"seen", tr.split_seen},
                         {"seen_after_dispatch", tr.split_seen_after_dispatch},
                         {"due_to_fire_tx_start", dist_json(tr.due_to_fire_start)},
                         {"due_to_visible", dist_json(tr.due_to_visible)},
                         {"visible_to_dispatch", dist_json(tr.visible_to_dispatch)}};
    set_result("/timers", tj);
    double rate = double(tr.n) / tr.spread_s;
    bool issue_rate =
        tr.pending >= 1000000 && (std::fabs(rate - 2000) < 1 || std::fabs(rate - 5000) < 1);
    target_line(strf("timer lateness p99 at %s/s, %s pending", fmt_int(rate).c_str(),
                     fmt_int(double(tr.pending)).c_str()),
                strf("%.3f ms", tr.lateness.p99_ms), issue_rate ? "<= 5 ms" : "<= 10 ms",
                verdict(tr.lateness.p99_ms <= (issue_rate ? 5.0 : kTargetLatenessP99Ms)));
    if (tr.early || tr.missing || tr.duplicates || tr.bad_key || tr.wrong_due ||
        tr.schedules_left != tr.pending || tr.jobs_left != 0) {
      anomalies = true;
      std::fprintf(out,
                   "  ANOMALY: %lld early, %lld missing, %lld doubled, %lld foreign keys, %lld "
                   "wrong due times, %lld schedules and %lld jobs left\n",
                   static_cast<long long>(tr.early), static_cast<long long>(tr.missing),
                   static_cast<long long>(tr.duplicates), static_cast<long long>(tr.bad_key),
                   static_cast<long long>(tr.wrong_due), static_cast<long long>(tr.schedules_left),
                   static_cast<long long>(tr.jobs_left));
    }
  }

  // ---- 5. cron catch-up (only when asked for: --only catchup)
  if (cfg.want("catchup")) {
    std::fprintf(out,
                 "\nCron catch-up: %lld per-second crons (Europe/Berlin), clock stepped %.0f days; "
                 "%.0f durable wf_enqueue/s measured meanwhile\n",
                 static_cast<long long>(cfg.catchup_crons), cfg.catchup_days,
                 cfg.catchup_write_rate);
    for (const char *policy : {"all", "latest"}) {
      CatchUpRun cr = run_catchup(cfg, g_tmpdir + "/catchup.db", policy);
      std::string label = std::string(policy) == "all" ? strf("catch_up all, catch_up_max %s",
                                                              fmt_int(double(cr.max)).c_str())
                                                       : std::string("catch_up latest");
      std::fprintf(out, "  %-44s %s firings (%s expected) in %.2f s, %s commits, CPU %.2f cores\n",
                   label.c_str(), fmt_int(double(cr.fired)).c_str(),
                   fmt_int(double(cr.expected)).c_str(), cr.secs,
                   fmt_int(double(cr.commits)).c_str(), cr.cpu_cores);
      std::fprintf(out, "  %-44s %s\n", "  wf_enqueue before the step (baseline)",
                   dist_line(cr.base).c_str());
      std::fprintf(out, "  %-44s %s\n", "  wf_enqueue during the catch-up",
                   dist_line(cr.during).c_str());
      std::fflush(out);
      set_result((std::string("/catchup/") + policy).c_str(),
                 json{{"crons", cr.crons},
                      {"days", cfg.catchup_days},
                      {"catch_up_max", cr.max},
                      {"fired", cr.fired},
                      {"expected", cr.expected},
                      {"secs", cr.secs},
                      {"commits", cr.commits},
                      {"cpu_cores_busy", cr.cpu_cores},
                      {"enqueue_baseline", dist_json(cr.base)},
                      {"enqueue_during", dist_json(cr.during)}});
      target_line(label + ": write p99", strf("%.2f ms", cr.during.p99_ms), "<= 50 ms",
                  verdict(cr.during.p99_ms <= 50));
      // Due times that fall due while the catch-up runs join it.
      int64_t slack = cr.crons * int64_t(cr.secs + 3);
      if (cr.fired < cr.expected || cr.fired > cr.expected + slack) {
        anomalies = true;
        std::fprintf(out, "  ANOMALY: %lld firings, %lld expected\n",
                     static_cast<long long>(cr.fired), static_cast<long long>(cr.expected));
      }
    }
  }

  // ---- 4. scale
  if (cfg.want("scale") && cfg.scale > 0) {
    ScaleRun sr = run_scale(cfg);
    std::fprintf(out, "\nScale (%s pending schedules; measured in a fresh child process)\n",
                 fmt_int(double(sr.n)).c_str());
    std::fprintf(out, "  %-44s %12s schedules/s (%.1f s; close %.2f s; %.0f MiB on disk)\n",
                 "creating them (wf_tx_schedule)", fmt_int(sr.load_rate).c_str(), sr.load_secs,
                 sr.load_close_secs, double(sr.db_bytes) / 1048576.0);
    auto line = [&](const char *what, const json &c) {
      json pi = c.value("probe_lateness", json::object()),
           pb = c.value("probe_lateness_during_stats_loop", json::object());
      std::fprintf(out, "  %-44s wf_open %.1f ms, wf_start %.1f ms, idle %.1f ms after wf_start\n",
                   what, c.value("open_ms", 0.0), c.value("start_ms", 0.0),
                   c.value("idle_ms", 0.0));
      std::fprintf(out,
                   "  %-44s 100 ms timer late by %.2f ms (max %.2f of 5); %.2f ms (max %.2f) while "
                   "wf_stats loops (%.0f ms per call)\n",
                   "", pi.value("median_ms", 0.0), pi.value("max_ms", 0.0),
                   pb.value("median_ms", 0.0), pb.value("max_ms", 0.0), c.value("stats_ms", 0.0));
      std::fprintf(out,
                   "  %-44s RSS %s KiB before wf_open, %s after, %s after wf_start, %s after "
                   "wf_stats (peak %s); wf_close %.1f ms\n",
                   "", fmt_int(double(c.value("rss_before_kib", 0))).c_str(),
                   fmt_int(double(c.value("rss_after_open_kib", 0))).c_str(),
                   fmt_int(double(c.value("rss_after_start_kib", 0))).c_str(),
                   fmt_int(double(c.value("rss_after_stats_kib", 0))).c_str(),
                   fmt_int(double(c.value("hwm_kib", 0))).c_str(), c.value("close_ms", 0.0));
    };
    line("empty database", sr.empty);
    line(strf("%s schedules", fmt_int(double(sr.n)).c_str()).c_str(), sr.big);
    std::fflush(out);
    set_result("/scale", json{{"schedules", sr.n},
                              {"load_secs", sr.load_secs},
                              {"load_schedules_s", sr.load_rate},
                              {"load_close_secs", sr.load_close_secs},
                              {"db_bytes", sr.db_bytes},
                              {"empty_db", sr.empty},
                              {"big_db", sr.big}});
    double grow =
        double(sr.big.value("rss_after_start_kib", 0) - sr.big.value("rss_before_kib", 0)) -
        double(sr.empty.value("rss_after_start_kib", 0) - sr.empty.value("rss_before_kib", 0));
    target_line(strf("open+start with %s schedules", fmt_int(double(sr.n)).c_str()),
                strf("%.1f ms", sr.big.value("open_ms", 0.0) + sr.big.value("idle_ms", 0.0)), "",
                "");
    target_line("RSS growth vs empty database", strf("%+.0f KiB", grow), "", "");
  }

  std::fprintf(out, "\nTargets\n");
  for (auto &v : verdicts) std::fprintf(out, "%s\n", v.c_str());
  int warnings = g_log_warnings.load();
  if (warnings) std::fprintf(out, "\n%d engine warnings/errors were logged\n", warnings);
  std::fprintf(out, "load average %.2f at the end\n", loadavg1());
  std::fflush(out);
  set_result("/anomalies", anomalies);
  set_result("/engine_warnings", warnings);
  set_result("/machine/loadavg_1m_at_end", loadavg1());
  if (cfg.json_out) {
    std::lock_guard<std::mutex> lk(g_results_mu);
    std::printf("%s\n", g_results.dump(2).c_str());
    std::fflush(stdout);
  }
  remove_tmpdir();
  return anomalies ? 1 : 0;
}
