// Simulated power loss. Each cycle:
//  1. the parent keeps the images of the database files (all durable: it
//     closed its engine cleanly);
//  2. a child process (this executable, "--child") opens the engine with
//     {"vfs":"wf_faulty","durability":"full"} and the shim journaling every
//     write, sync, truncate and delete of the database, WAL and journal; it
//     submits jobs, host transactions, saga events and schedules from two
//     threads, logging each item after WF_OK, until the shim SIGKILLs it just
//     before a random journaled operation (or the parent does, after 10 s);
//  3. the parent rebuilds the files as a power cut leaves them
//     (faulty::powerloss_image: each file as of its last sync, plus a random
//     prefix of the later writes, the last one possibly torn) and deletes the
//     -shm file (a reboot loses it);
//  4. PRAGMA integrity_check with plain SQLite must say "ok"; the engine
//     opens the files, drains every job, event and schedule and closes;
//  5. every item acknowledged so far (all cycles) is checked: job delivered,
//     host row and its job, event applied exactly once, schedule fired at its
//     due time; no transaction half there; nothing applied or enqueued twice.
// Knobs: WF_POWERLOSS_CYCLES (default 200; 40 in sanitizer builds), WF_POWERLOSS_SEED (default
// random, printed), WF_POWERLOSS_MAX_OPS (the kill point is uniform in
// 1..this, default 400), WF_POWERLOSS_LONG_EVERY / WF_POWERLOSS_LONG_OPS (every
// 10th cycle dies between 3000 and 6000 operations, past a checkpoint),
// WF_POWERLOSS_KEEP=1 keeps the directory,
// WF_POWERLOSS_DURABILITY=normal (the child's durability option: the test
// must then fail, which shows it can see lost acknowledged work).

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

#include "faulty_vfs.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "wfengine.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kPlainOptions =
    "{\"durability\":\"full\",\"poll_ms\":0,\"max_interruptions\":1000000}";

// argv: --child <dir> <child number> <kill at op>
int child_main(int argc, char** argv) {
  if (argc != 5) return 2;
  const std::string dir = argv[2];
  const int child = std::atoi(argv[3]);
  const int64_t kill_at = std::atoll(argv[4]);
  if (!faulty::register_vfs()) return 2;
  faulty::set_real_sync(false);  // durability is simulated from the journal
  int jfd = ::open((dir + "/journal.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  int lfd = ::open((dir + "/log.txt").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (jfd < 0 || lfd < 0) return 2;
  faulty::start_journal(jfd, kill_at);
  static harness::LogFn log = harness::fd_log(lfd);
  wf_engine* e = nullptr;
  // WF_POWERLOSS_DURABILITY=normal shows that the test has teeth: with
  // synchronous=NORMAL acknowledged work is lost on power cuts.
  const char* dur = std::getenv("WF_POWERLOSS_DURABILITY");
  const std::string options =
      std::string("{\"vfs\":\"wf_faulty\",\"durability\":\"") + (dur && *dur ? dur : "full") +
      "\",\"poll_ms\":0,\"checkpoint_pages\":200,\"max_interruptions\":1000000}";
  int rc = wf_open((dir + "/p.db").c_str(), options.c_str(), &e);
  if (rc == WF_OK) rc = harness::register_all(e, &log);
  if (rc == WF_OK) rc = wf_start(e);
  if (rc != WF_OK) {
    std::fprintf(stderr, "powerloss child: open/register/start: %s: %s\n", wf_strerror(rc),
                 wf_last_error());
    return 2;
  }
  harness::run_forever(e, child, log, 20);
}

const char* role_file(int role) {
  return role == 0 ? "/p.db" : role == 1 ? "/p.db-wal" : "/p.db-journal";
}

TEST(PowerLoss, AcknowledgedWorkSurvivesPowerCuts) {
  const int cycles =
      std::max(1, harness::env_int("WF_POWERLOSS_CYCLES", harness::kSanitized ? 40 : 200));
  const int max_ops = std::max(1, harness::env_int("WF_POWERLOSS_MAX_OPS", 400));
  const int long_every = harness::env_int("WF_POWERLOSS_LONG_EVERY", 10);
  const int long_ops = std::max(2, harness::env_int("WF_POWERLOSS_LONG_OPS", 6000));
  const unsigned seed = harness::env_int("WF_POWERLOSS_SEED", 0) != 0
                            ? static_cast<unsigned>(harness::env_int("WF_POWERLOSS_SEED", 0))
                            : std::random_device{}();
  std::printf("power loss: seed=%u (set WF_POWERLOSS_SEED to replay), cycles=%d\n", seed, cycles);
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  const std::string dir = harness::make_temp_dir("wf_powerloss");
  ASSERT_FALSE(dir.empty());
  const std::string db = dir + "/p.db";
  const std::string log_path = dir + "/log.txt";
  const auto t0 = Clock::now();

  int64_t journaled_ops = 0, checkpointed = 0, dropped = 0, torn_bytes = 0, torn_writes = 0,
          killed_by_parent = 0;
  int done = 0;
  harness::Report last;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    // 1. Durable images before the child runs.
    std::map<int, std::string> base;
    for (int role : {0, 1, 2}) {
      std::string f = dir + role_file(role);
      if (harness::file_exists(f)) base[role] = harness::read_file(f);
    }
    ::unlink((db + "-shm").c_str());

    // 2. The child runs until it dies before its kill_at-th operation.
    // Every long_every-th cycle runs long enough for the WAL to pass
    // checkpoint_pages (200) several times, so the child's background
    // checkpointer (and the writer's catch-up) write the database file too.
    const bool long_cycle = long_every > 0 && cycle % long_every == long_every - 1;
    const int64_t kill_at = std::uniform_int_distribution<int64_t>(
        long_cycle ? long_ops / 2 : 1, long_cycle ? long_ops : max_ops)(rng);
    pid_t pid = harness::spawn_self(
        {"--child", dir, std::to_string(cycle), std::to_string(kill_at)}, {}, "");
    ASSERT_GT(pid, 0);
    int status = 0;
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        killed_by_parent++;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "cycle " << cycle << ": the child " << harness::describe_status(status)
        << " (kill at op " << kill_at << ")";
    harness::truncate_torn_tail(log_path);

    // 3. The power cut.
    faulty::PowerCut cut =
        faulty::powerloss_image(base, harness::read_file(dir + "/journal.bin"), rng);
    journaled_ops += cut.ops;
    checkpointed += cut.db_writes > 0;
    dropped += cut.dropped;
    torn_bytes += cut.torn_bytes;
    torn_writes += cut.torn_bytes > 0;
    for (int role : {0, 1, 2}) {
      std::string f = dir + role_file(role);
      auto it = cut.files.find(role);
      if (it == cut.files.end()) {
        ::unlink(f.c_str());
      } else {
        ASSERT_TRUE(harness::write_file(f, it->second)) << f;
      }
    }
    ::unlink((db + "-shm").c_str());
    const std::string what = "cycle " + std::to_string(cycle) + " (seed " + std::to_string(seed) +
                             ", kill at op " + std::to_string(kill_at) + "; " + cut.note + ")";

    // 4. Integrity, then reopen and drain.
    ASSERT_EQ(harness::integrity_check(db), "ok") << what;
    int lfd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ASSERT_GE(lfd, 0);
    harness::Drained d;
    std::string err = harness::drain(db, kPlainOptions, harness::fd_log(lfd), 30000, &d);
    ::close(lfd);
    ASSERT_EQ(err, "") << what;
    EXPECT_EQ(d.dead, 0) << what << ": " << d.stats;
    EXPECT_EQ(d.parked, 0) << what << ": " << d.stats;
    EXPECT_EQ(d.unmatched, 0) << what << ": " << d.stats;

    // 5. Everything acknowledged so far.
    harness::Ledger ledger;
    ledger.add_lines(harness::read_lines(log_path));
    std::string herr;
    std::set<std::string> host = harness::host_rows(db, &herr);
    ASSERT_EQ(herr, "") << what;
    harness::Options opt;
    opt.strict_job_ids = false;
    last = harness::verify(ledger, d.states, host, opt);
    std::string problems;
    for (const auto& p : last.problems) problems += "\n  " + p;
    ASSERT_TRUE(last.ok()) << what << ": " << last.summary() << problems;
    done++;
  }

  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "power loss: cycles=%d (with a checkpoint in the child: %lld) journaled ops=%lld unsynced "
      "ops dropped=%lld torn writes=%lld (%lld bytes) children killed by the parent=%lld | %s | "
      "%.1f s\n",
      done, static_cast<long long>(checkpointed), static_cast<long long>(journaled_ops),
      static_cast<long long>(dropped), static_cast<long long>(torn_writes),
      static_cast<long long>(torn_bytes), static_cast<long long>(killed_by_parent),
      last.summary().c_str(), secs);
  std::fflush(stdout);
  EXPECT_GT(last.jobs_acked + last.tx_acked, 0);
  EXPECT_GT(last.events_acked, 0);
  EXPECT_GT(last.schedules_acked, 0);
  EXPECT_GT(dropped, 0) << "no power cut ever dropped an unsynced write";
  if (!::testing::Test::HasFailure() && harness::env_int("WF_POWERLOSS_KEEP", 0) == 0) {
    harness::remove_dir(dir);
  } else {
    std::printf("power loss: files kept in %s\n", dir.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--child") == 0) return child_main(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
