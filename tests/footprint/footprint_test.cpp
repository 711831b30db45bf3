// After 1,000,000 keyed jobs of 1 KB are processed (1% of them failing to
// dead letters) and the retention windows pass (injected clock), the database
// file is under 10 MiB: expired dedupe keys, dead letters and their history
// are purged and the free pages given back to the file system.
#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "engine.h"
#include "helpers.h"

using namespace wft;

namespace {

// Sanitizer builds run 10-20x slower: 1M jobs would take most of an hour
// there, so they check the same property with fewer jobs (the file limit
// scales down too, so the test still shows that what is left is the live
// size, not the history).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int64_t kDefaultJobs = 20000;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr int64_t kDefaultJobs = 20000;
#else
constexpr int64_t kDefaultJobs = 1000000;
#endif
#else
constexpr int64_t kDefaultJobs = 1000000;
#endif

int64_t file_size(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

double secs_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST(Footprint, MillionJobsLeaveUnderTenMiB) {
  int64_t jobs = kDefaultJobs;
  if (const char *env = std::getenv("WF_FOOTPRINT_JOBS")) jobs = std::atoll(env);
  std::string dir = temp_dir(), path = dir + "/f.db";
  ManualClock clock;
  const int64_t t0 = clock.now;
  wf_engine *e = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(),
                           "{\"durability\":\"normal\",\"dedupe_window_ms\":3600000,"
                           "\"retain_dead_ms\":3600000,\"retain_attempts_ms\":3600000}",
                           &e))
      << wf_last_error();
  ASSERT_EQ(WF_OK, wf_set_clock(e, ManualClock::fn, &clock));
  std::atomic<int64_t> done{0};
  ASSERT_EQ(WF_OK, wf_effect_register(
                       e, "noop", nullptr,
                       [](void *u, wf_job *j) {
                         auto *n = static_cast<std::atomic<int64_t> *>(u);
                         // 1% fail for good: dead letters with their history.
                         std::string id = wf_job_id(j);
                         if (id.back() == '7' && id.size() > 1 && id[id.size() - 2] == '7')
                           wf_job_fail(j, "no");
                         else
                           wf_job_complete(j, nullptr);
                         n->fetch_add(1);
                       },
                       &done));
  ASSERT_EQ(WF_OK, wf_start(e));
  const std::string pad(1000, 'x');
  auto t_start = std::chrono::steady_clock::now();
  int64_t peak = 0;
  constexpr int64_t kBatch = 1000;
  for (int64_t i = 0; i < jobs; i += kBatch) {
    // Keep the backlog bounded, as a producer paced by its consumer would.
    while (i - done.load() > 50000) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::string arr = "[";
    for (int64_t k = i; k < std::min(jobs, i + kBatch); ++k) {
      if (k > i) arr += ',';
      arr += "{\"effect\":\"noop\",\"key\":\"k" + std::to_string(k) + "\",\"payload\":\"" + pad +
             "\"}";
    }
    arr += "]";
    char *ids = nullptr;
    ASSERT_EQ(WF_OK, wf_enqueue_batch(e, arr.c_str(), &ids)) << wf_last_error();
    wf_free(ids);
    if ((i / kBatch) % 50 == 0) peak = std::max(peak, file_size(path) + file_size(path + "-wal"));
  }
  while (done.load() < jobs) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(WF_OK, wf_sync(e));
  double t_run = secs_since(t_start);
  peak = std::max(peak, file_size(path) + file_size(path + "-wal"));
  int64_t keys = count_rows(path, "SELECT count(*) FROM wf_done_keys");
  int64_t dead = count_rows(path, "SELECT count(*) FROM wf_dead");
  EXPECT_EQ(jobs - dead, keys);
  EXPECT_GT(dead, 0);

  // The windows pass.
  clock.now = t0 + 3600000 + 1000;
  auto t_purge = std::chrono::steady_clock::now();
  int64_t removed = 0;
  ASSERT_EQ(WF_OK, wf::purge_now(e, &removed)) << wf_last_error();
  double purge_s = secs_since(t_purge);
  char *st = nullptr;
  ASSERT_EQ(WF_OK, wf_stats(e, nullptr, &st));
  json stats = json::parse(st);
  wf_free(st);
  ASSERT_EQ(WF_OK, wf_close(e));
  int64_t size = file_size(path);
  std::printf(
      "footprint: %lld jobs in %.1f s; peak db+wal %.1f MiB; purged %lld rows in %.1f s "
      "(%lld batches, longest %lld us); vacuumed %lld pages; file at rest %.2f MiB\n",
      static_cast<long long>(jobs), t_run, double(peak) / 1048576.0,
      static_cast<long long>(removed), purge_s,
      static_cast<long long>(stats["engine"]["purge_batches"].get<int64_t>()),
      static_cast<long long>(stats["engine"]["purge_batch_max_us"].get<int64_t>()),
      static_cast<long long>(stats["engine"]["vacuumed_pages"].get<int64_t>()),
      double(size) / 1048576.0);
  EXPECT_EQ(0, count_rows(path, "SELECT count(*) FROM wf_done_keys"));
  EXPECT_EQ(0, count_rows(path, "SELECT count(*) FROM wf_dead"));
  EXPECT_EQ(0, count_rows(path, "SELECT count(*) FROM wf_attempts"));
  EXPECT_EQ(0, count_rows(path, "SELECT count(*) FROM wf_jobs"));
  EXPECT_LT(size, 10 * 1048576) << "file at rest: " << size << " bytes";
  std::string cmd = "rm -rf '" + dir + "'";
  ASSERT_EQ(0, system(cmd.c_str()));
}
