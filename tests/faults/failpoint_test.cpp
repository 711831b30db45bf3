// Kills at each commit boundary (needs the library built with
// -DWF_FAILPOINTS=ON). For each failpoint, WF_FAILPOINT_KILLS (default 20)
// times: a child process (this executable, "--child") runs the workload of
// harness::run_forever (jobs, host transactions, saga events, schedules due
// within 20 ms) with WF_FAILPOINTS="<point>=<N>", N random, and is SIGKILLed
// by the library at the N-th hit. The parent checks that it died by SIGKILL
// saying "wfengine failpoint hit: <point>", runs PRAGMA integrity_check,
// reopens the database (without failpoints), drains it and checks everything
// acknowledged so far, over all kills: every job delivered, every host
// transaction there with its job, every event applied exactly once, every
// schedule fired exactly once (one job id for "schedule:<key>@<due>", no
// other due time); redeliveries of the same job id are at-least-once
// delivery and only counted.
// Knobs: WF_FAILPOINT_KILLS (per point, default 20), WF_FAILPOINT_SEED
// (default random, printed), WF_FAILPOINT_KEEP=1 keeps the directories.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "harness.h"
#include "wfengine.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kOptions =
    "{\"durability\":\"full\",\"poll_ms\":0,\"max_interruptions\":1000000}";

// argv: --child <dir> <child number>
int child_main(int argc, char** argv) {
  if (argc != 4) return 2;
  const std::string dir = argv[2];
  const int child = std::atoi(argv[3]);
  int lfd = ::open((dir + "/log.txt").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (lfd < 0) return 2;
  static harness::LogFn log = harness::fd_log(lfd);
  wf_engine* e = nullptr;
  int rc = wf_open((dir + "/fp.db").c_str(), kOptions, &e);
  if (rc == WF_OK) rc = harness::register_all(e, &log);
  if (rc == WF_OK) rc = wf_start(e);
  if (rc != WF_OK) {
    std::fprintf(stderr, "failpoint child: open/register/start: %s: %s\n", wf_strerror(rc),
                 wf_last_error());
    return 2;
  }
  harness::run_forever(e, child, log, 20);
}

struct Point {
  const char* name;
  int max_n;  // N is uniform in 1..max_n
};

// The commit boundaries (src/failpoint.h).
const Point kPoints[] = {
    {"after_commit_before_return", 40},
    {"before_dispatch", 20},
    {"after_dispatch_before_completion_commit", 20},
    {"inside_saga_step_commit", 15},
    {"after_schedule_fired_before_reschedule", 8},
};

void kill_at(const Point& point) {
  const int kills = std::max(1, harness::env_int("WF_FAILPOINT_KILLS", 20));
  unsigned seed = harness::env_int("WF_FAILPOINT_SEED", 0) != 0
                      ? static_cast<unsigned>(harness::env_int("WF_FAILPOINT_SEED", 0))
                      : std::random_device{}();
  std::printf("failpoint %s: seed=%u (set WF_FAILPOINT_SEED to replay), kills=%d\n", point.name,
              seed, kills);
  std::fflush(stdout);
  std::mt19937 rng(seed);
  const std::string dir = harness::make_temp_dir("wf_failpoint");
  ASSERT_FALSE(dir.empty());
  const std::string db = dir + "/fp.db";
  const std::string log_path = dir + "/log.txt";
  const std::string err_path = dir + "/child.err";
  const auto t0 = Clock::now();
  const std::string expect = std::string("wfengine failpoint hit: ") + point.name;

  int done = 0;
  harness::Report last;
  for (int i = 0; i < kills; ++i) {
    const int n = std::uniform_int_distribution<int>(1, point.max_n)(rng);
    const std::string what = std::string(point.name) + "=" + std::to_string(n) + ", kill " +
                             std::to_string(i + 1) + " (seed " + std::to_string(seed) + ")";
    pid_t pid = harness::spawn_self(
        {"--child", dir, std::to_string(i)},
        {std::string("WF_FAILPOINTS=") + point.name + "=" + std::to_string(n)}, err_path);
    ASSERT_GT(pid, 0);
    int status = 0;
    bool timed_out = false;
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        timed_out = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::string child_err = harness::read_file(err_path);
    ASSERT_FALSE(timed_out) << what
                            << ": the failpoint was not hit within 20 s; stderr: " << child_err;
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << what << ": the child " << harness::describe_status(status) << "; stderr: " << child_err;
    ASSERT_NE(child_err.find(expect), std::string::npos)
        << what << ": the child died by SIGKILL but stderr does not say \"" << expect
        << "\": " << child_err;
    harness::truncate_torn_tail(log_path);

    ASSERT_EQ(harness::integrity_check(db), "ok") << what;
    int lfd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ASSERT_GE(lfd, 0);
    harness::Drained d;
    std::string err = harness::drain(db, kOptions, harness::fd_log(lfd), 30000, &d);
    ::close(lfd);
    ASSERT_EQ(err, "") << what;
    EXPECT_EQ(d.dead, 0) << what << ": " << d.stats;
    EXPECT_EQ(d.parked, 0) << what << ": " << d.stats;
    EXPECT_EQ(d.unmatched, 0) << what << ": " << d.stats;

    harness::Ledger ledger;
    ledger.add_lines(harness::read_lines(log_path));
    std::string herr;
    std::set<std::string> host = harness::host_rows(db, &herr);
    ASSERT_EQ(herr, "") << what;
    last = harness::verify(ledger, d.states, host, harness::Options{});
    std::string problems;
    for (const auto& p : last.problems) problems += "\n  " + p;
    EXPECT_TRUE(last.ok()) << what << ": " << last.summary() << problems;
    if (!last.ok()) break;  // later kills would repeat the same findings
    done++;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("failpoint %s: kills=%d | %s | %.1f s\n", point.name, done, last.summary().c_str(),
              secs);
  std::fflush(stdout);
  EXPECT_EQ(done, kills);
  EXPECT_GT(last.jobs_acked + last.tx_acked, 0);
  if (!::testing::Test::HasFailure() && harness::env_int("WF_FAILPOINT_KEEP", 0) == 0) {
    harness::remove_dir(dir);
  } else {
    std::printf("failpoint %s: files kept in %s\n", point.name, dir.c_str());
  }
}

TEST(Failpoints, AfterCommitBeforeReturn) { kill_at(kPoints[0]); }
TEST(Failpoints, BeforeDispatch) { kill_at(kPoints[1]); }
TEST(Failpoints, AfterDispatchBeforeCompletionCommit) { kill_at(kPoints[2]); }
TEST(Failpoints, InsideSagaStepCommit) { kill_at(kPoints[3]); }
TEST(Failpoints, AfterScheduleFiredBeforeReschedule) { kill_at(kPoints[4]); }

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--child") == 0) return child_main(argc, argv);
  // The checking process must never hit a failpoint itself.
  ::unsetenv("WF_FAILPOINTS");
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
