// wf_soak: constant mixed load with short retention windows, watching the
// footprint. Usage: wf_soak SECONDS [DIR]
//
// Load (real clock): keyed jobs through a no-op effect (2% fail to dead
// letters after one retry, 5% succeed after one retry), saga instances of two
// events each (start, end) through a registered saga, and 20 per-second cron
// schedules that enqueue a job each. Retention windows: 5 s each (dedupe
// keys, events, finished sagas, dead letters, attempt history), purge every
// second.
//
// Every second it samples the database file size, the WAL size, the free-list
// pages and the process RSS; every 10 s it prints them. The rule (printed at
// the end): the run is split in thirds; the first is warm-up. A metric keeps
// growing when its maximum over the last third exceeds its maximum over the
// middle third by more than 10% plus a slack (file 1 MiB; WAL 4 MiB, as it
// swings with checkpoint timing; free list 512 pages; RSS 8 MiB). With every
// window at 0 (WF_SOAK_RETAIN_MS=0) the file grows about 85 KiB/s at the
// default rates and a 60 s run fails. Exit status 1 if any metric keeps growing, 2 on a
// usage or engine error. Environment: WF_SOAK_RATE (jobs/s, default 500),
// WF_SOAK_SAGAS (instances/s, default 100), WF_SOAK_RETAIN_MS (see main).
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wfengine.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int64_t file_size(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

int64_t rss_bytes() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long size = 0, resident = 0;
  int n = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * sysconf(_SC_PAGESIZE) : 0;
}

void check(int rc, const char *what) {
  if (rc == WF_OK) return;
  std::fprintf(stderr, "wf_soak: %s failed: %s: %s\n", what, wf_strerror(rc), wf_last_error());
  std::exit(2);
}

std::atomic<int64_t> g_jobs_done{0};

void effect(void *, wf_job *j) {
  // The id's last two digits choose the outcome: 2% fail after one retry,
  // 5% succeed after one retry, the rest succeed at once.
  const char *id = wf_job_id(j);
  size_t n = std::strlen(id);
  int d = n >= 2 ? (id[n - 2] - '0') * 10 + (id[n - 1] - '0') : 0;
  if (d < 7 && wf_job_attempt(j) == 1) {
    wf_job_retry(j, "once more", 0);
    return;
  }
  if (d < 2)
    wf_job_fail(j, "soak failure");
  else
    wf_job_complete(j, nullptr);
  g_jobs_done.fetch_add(1, std::memory_order_relaxed);
}

int reducer(void *, const char *in, size_t len, wf_buf *out) {
  std::string s(in, len);
  bool end = s.find("\"type\":\"soak.end\"") != std::string::npos;
  const char *o = end ? "{\"state\":{\"step\":2},\"done\":true}" : "{\"state\":{\"step\":1}}";
  return wf_buf_set(out, o, std::strlen(o)) == WF_OK ? 0 : 1;
}

struct Sample {
  double t;
  int64_t file, wal, freelist, rss;
};

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2 || std::atoi(argv[1]) < 30) {
    std::fprintf(stderr, "usage: wf_soak SECONDS [DIR]  (SECONDS >= 30)\n");
    return 2;
  }
  const int seconds = std::atoi(argv[1]);
  std::string dir;
  bool own_dir = argc < 3;
  if (own_dir) {
    char tmpl[] = "/tmp/wfsoak-XXXXXX";
    if (!mkdtemp(tmpl)) return 2;
    dir = tmpl;
  } else {
    dir = argv[2];
    std::filesystem::create_directories(dir);
  }
  const std::string path = dir + "/soak.db";
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  const int rate = std::getenv("WF_SOAK_RATE") ? std::atoi(std::getenv("WF_SOAK_RATE")) : 500;
  const int saga_rate =
      std::getenv("WF_SOAK_SAGAS") ? std::atoi(std::getenv("WF_SOAK_SAGAS")) : 100;

  // WF_SOAK_RETAIN_MS: every retention window (default 5000; 0 keeps
  // everything, with a dedupe window of a day: shows the rule catching growth).
  const long long retain =
      std::getenv("WF_SOAK_RETAIN_MS") ? std::atoll(std::getenv("WF_SOAK_RETAIN_MS")) : 5000;
  char opts[512];
  std::snprintf(opts, sizeof opts,
                "{\"durability\":\"full\",\"dedupe_window_ms\":%lld,\"retain_events_ms\":%lld,"
                "\"retain_sagas_ms\":%lld,\"retain_dead_ms\":%lld,\"retain_attempts_ms\":%lld,"
                "\"purge_interval_ms\":1000}",
                retain ? retain : 86400000LL, retain, retain, retain, retain);
  std::printf("wf_soak: %d s, %d jobs/s, %d saga instances/s, 20 per-second crons; options %s\n",
              seconds, rate, saga_rate, opts);
  wf_engine *e = nullptr;
  check(wf_open(path.c_str(), opts, &e), "wf_open");
  check(wf_effect_register(e, "noop", nullptr, effect, nullptr), "wf_effect_register");
  check(wf_effect_register(e, "tick", nullptr, effect, nullptr), "wf_effect_register");
  check(wf_saga_register(e, "soak", "{\"start\":[\"soak.start\"],\"on\":[\"soak.end\"]}", reducer,
                         nullptr),
        "wf_saga_register");
  for (int i = 0; i < 20; ++i) {
    std::string doc = "{\"key\":\"cron-" + std::to_string(i) +
                      "\",\"cron\":\"* * * * * *\",\"job\":{\"effect\":\"tick\"}}";
    check(wf_schedule(e, doc.c_str()), "wf_schedule");
  }
  check(wf_start(e), "wf_start");

  sqlite3 *ro = nullptr;
  if (sqlite3_open_v2(path.c_str(), &ro, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return 2;
  sqlite3_busy_timeout(ro, 5000);
  auto freelist = [&]() -> int64_t {
    sqlite3_stmt *st = nullptr;
    int64_t n = -1;
    if (sqlite3_prepare_v2(ro, "PRAGMA freelist_count", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
  };

  std::atomic<bool> stop{false};
  std::atomic<int64_t> enqueued{0}, instances{0};
  // Producer: `rate` keyed jobs and `saga_rate` saga instances per second, in
  // ticks of 10 ms (a batch of jobs, then the events one by one).
  std::thread producer([&] {
    auto next = Clock::now();
    int64_t k = 0, s = 0;
    double job_acc = 0, saga_acc = 0;
    while (!stop.load()) {
      next += std::chrono::milliseconds(10);
      job_acc += rate / 100.0;
      saga_acc += saga_rate / 100.0;
      int nj = static_cast<int>(job_acc);
      job_acc -= nj;
      if (nj > 0) {
        std::string arr = "[";
        for (int i = 0; i < nj; ++i, ++k) {
          if (i) arr += ',';
          arr += "{\"effect\":\"noop\",\"key\":\"soak-" + std::to_string(k) +
                 "\",\"payload\":{\"pad\":\"" + std::string(200, 'p') + "\"}}";
        }
        arr += "]";
        char *ids = nullptr;
        check(wf_enqueue_batch(e, arr.c_str(), &ids), "wf_enqueue_batch");
        wf_free(ids);
        enqueued += nj;
      }
      int ns = static_cast<int>(saga_acc);
      saga_acc -= ns;
      for (int i = 0; i < ns; ++i, ++s) {
        std::string c = "i" + std::to_string(s);
        std::string a = "{\"event_id\":\"" + c +
                        ":start\",\"type\":\"soak.start\",\"correlation_id\":\"" + c + "\"}";
        std::string b = "{\"event_id\":\"" + c +
                        ":end\",\"type\":\"soak.end\",\"correlation_id\":\"" + c + "\"}";
        check(wf_submit(e, a.c_str()), "wf_submit");
        check(wf_submit(e, b.c_str()), "wf_submit");
        ++instances;
      }
      std::this_thread::sleep_until(next);
    }
  });

  std::vector<Sample> samples;
  const auto t0 = Clock::now();
  std::printf("%6s %10s %10s %9s %9s %10s %9s %10s %12s\n", "t_s", "file_MiB", "wal_MiB",
              "freelist", "rss_MiB", "enqueued", "sagas", "jobs_done", "purged_rows");
  for (int i = 1; i <= seconds; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::seconds(i));
    Sample s{double(i), file_size(path), file_size(path + "-wal"), freelist(), rss_bytes()};
    samples.push_back(s);
    if (i % 10 == 0 || i == seconds) {
      char *st = nullptr;
      long long purged = -1;
      if (wf_stats(e, nullptr, &st) == WF_OK) {
        const char *p = std::strstr(st, "\"purged_rows\":");
        if (p) purged = std::atoll(p + std::strlen("\"purged_rows\":"));
        wf_free(st);
      }
      std::printf("%6d %10.2f %10.2f %9lld %9.1f %10lld %9lld %10lld %12lld\n", i,
                  double(s.file) / 1048576, double(s.wal) / 1048576,
                  static_cast<long long>(s.freelist), double(s.rss) / 1048576,
                  static_cast<long long>(enqueued.load()), static_cast<long long>(instances.load()),
                  static_cast<long long>(g_jobs_done.load()), purged);
      std::fflush(stdout);
    }
  }
  stop = true;
  producer.join();
  char *st = nullptr;
  if (wf_stats(e, nullptr, &st) == WF_OK) {
    std::printf("final stats: %s\n", st);
    wf_free(st);
  }
  sqlite3_close(ro);
  check(wf_close(e), "wf_close");

  // The rule.
  size_t n = samples.size(), a = n / 3, b = 2 * n / 3;
  struct Metric {
    const char *name;
    int64_t Sample::*field;
    double slack;
    const char *unit;
    double scale;
  } metrics[] = {{"file", &Sample::file, 1.0 * 1048576, "MiB", 1048576.0},
                 {"wal", &Sample::wal, 4.0 * 1048576, "MiB", 1048576.0},
                 {"freelist", &Sample::freelist, 512, "pages", 1.0},
                 {"rss", &Sample::rss, 8.0 * 1048576, "MiB", 1048576.0}};
  bool growing = false;
  std::printf("rule: max(last third) <= 1.10 * max(middle third) + slack\n");
  for (auto &m : metrics) {
    int64_t mid = 0, last = 0;
    for (size_t i = a; i < b; ++i) mid = std::max(mid, samples[i].*m.field);
    for (size_t i = b; i < n; ++i) last = std::max(last, samples[i].*m.field);
    double limit = 1.10 * double(mid) + m.slack;
    bool bad = double(last) > limit;
    growing |= bad;
    std::printf("  %-8s middle max %10.2f %s, last max %10.2f %s, limit %10.2f %s: %s\n", m.name,
                double(mid) / m.scale, m.unit, double(last) / m.scale, m.unit, limit / m.scale,
                m.unit, bad ? "GROWING" : "flat");
  }
  if (own_dir) std::filesystem::remove_all(dir);
  std::printf("wf_soak: %s\n", growing ? "FAIL (a metric keeps growing)" : "OK (all flat)");
  return growing ? 1 : 0;
}
