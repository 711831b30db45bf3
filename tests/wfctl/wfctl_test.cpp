// wfctl against a database written by an engine running in another process
// (wfctl_host), which keeps running while every command runs: each command
// in table and JSON form, exit codes, errors, --help on every command.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

extern char **environ;

using json = nlohmann::json;

namespace {

struct Result {
  int code = -1;
  std::string out, err;
  json js() const {
    json v = json::parse(out, nullptr, false);
    EXPECT_FALSE(v.is_discarded()) << "not JSON: " << out;
    return v;
  }
};

std::string slurp(const std::string &p) {
  std::string s;
  FILE *f = std::fopen(p.c_str(), "rb");
  if (!f) return s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

class WfctlTest : public ::testing::Test {
 protected:
  static inline std::string dir, db;
  static inline pid_t host = -1;
  static inline int host_in = -1;

  // Starts wfctl_host on `path` (with `mode`, if any) and waits for its
  // "ready" line; the host runs until its stdin (`*in_fd`) is closed.
  static void spawn_host(const std::string &path, const std::string &mode, pid_t *pid, int *in_fd) {
    int in[2], out[2];
    ASSERT_EQ(0, pipe(in));
    ASSERT_EQ(0, pipe(out));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::string exe = WFCTL_HOST, p = path, m = mode;
    std::vector<char *> args{exe.data(), p.data()};
    if (!m.empty()) args.push_back(m.data());
    args.push_back(nullptr);
    ASSERT_EQ(0, posix_spawn(pid, exe.c_str(), &fa, nullptr, args.data(), environ));
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    *in_fd = in[1];
    fcntl(*in_fd, F_SETFD, FD_CLOEXEC);
    // The host says "ready" once its workload has settled.
    std::string line;
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
    close(out[0]);
    ASSERT_EQ("ready", line) << "the host process did not get ready";
  }

  // Closes the host's stdin and expects it to exit 0.
  static void stop_host(pid_t pid, int in_fd) {
    if (in_fd >= 0) close(in_fd);  // the host completes, closes, exits
    if (pid > 0) {
      int st = 0;
      waitpid(pid, &st, 0);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "host status " << st;
    }
  }

  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/wfctltest-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(tmpl));
    dir = tmpl;
    db = dir + "/host.db";
    spawn_host(db, "", &host, &host_in);
  }

  static void TearDownTestSuite() {
    stop_host(host, host_in);
    std::string cmd = "rm -rf '" + dir + "'";
    if (system(cmd.c_str()) != 0) ADD_FAILURE() << "cleanup failed";
  }

  // Runs wfctl with `args` (and WFENGINE_DB unless `env_db` is empty
  // and `with_db` false); stdout and stderr go to files.
  static Result run(std::vector<std::string> args, bool with_db = true,
                    const std::string &env_db = "") {
    static int n = 0;
    std::string o = dir + "/out" + std::to_string(++n), e = o + ".err";
    std::vector<std::string> full{WFCTL};
    if (with_db) {
      full.push_back("--db");
      full.push_back(db);
    }
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char *> argv;
    for (auto &a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char **p = environ; *p; ++p)
      if (std::string(*p).rfind("WFENGINE_DB=", 0) != 0) envs.push_back(*p);
    if (!env_db.empty()) envs.push_back("WFENGINE_DB=" + env_db);
    std::vector<char *> envp;
    for (auto &s : envs) envp.push_back(s.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, o.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, e.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    Result r;
    if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data()) != 0) return r;
    posix_spawn_file_actions_destroy(&fa);
    int st = 0;
    waitpid(pid, &st, 0);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = slurp(o);
    r.err = slurp(e);
    return r;
  }

  static bool has(const std::string &s, const std::string &sub) {
    return s.find(sub) != std::string::npos;
  }

  // Id of the one job matching a jobs filter.
  static std::string job_id(std::vector<std::string> filter) {
    filter.insert(filter.begin(), {"--json", "jobs", "ls"});
    Result r = run(filter);
    json j = r.js();
    if (j["jobs"].size() != 1) return "";
    return j["jobs"][0]["id"].get<std::string>();
  }
};

#define EXPECT_OK(r) EXPECT_EQ(0, (r).code) << (r).out << (r).err

TEST_F(WfctlTest, Stats) {
  Result t = run({"stats"});
  EXPECT_OK(t);
  EXPECT_TRUE(has(t.out, "dead       2")) << t.out;
  EXPECT_TRUE(has(t.out, "EFFECT")) << t.out;
  EXPECT_TRUE(has(t.out, "ship")) << t.out;
  Result j = run({"stats", "--json"});
  EXPECT_OK(j);
  json s = j.js();
  EXPECT_EQ(2, s["dead"]);
  EXPECT_EQ(1, s["outbox"]["running"]);
  EXPECT_EQ(1, s["outbox"]["scheduled"]);
  EXPECT_EQ(1, s["sagas"]["active"]);
  EXPECT_EQ(1, s["events"]["unmatched"]);
  EXPECT_EQ(1, s["schedules"]["pending"]);
  EXPECT_TRUE(s["schedules"]["next_due_ms"].is_number());
  EXPECT_FALSE(s.contains("engine"));
  json a = run({"--json", "--tenant", "acme", "stats"}).js();
  EXPECT_EQ(0, a["dead"]);
  EXPECT_EQ(1, a["outbox"]["running"]);
  // WFENGINE_DB instead of --db.
  Result env = run({"stats", "--json"}, false, db);
  EXPECT_OK(env);
  EXPECT_EQ(2, env.js()["dead"]);
}

TEST_F(WfctlTest, JobsLsAndShow) {
  Result t = run({"jobs", "ls"});
  EXPECT_OK(t);
  EXPECT_TRUE(has(t.out, "STATE")) << t.out;
  EXPECT_TRUE(has(t.out, "running")) << t.out;
  json all = run({"jobs", "ls", "--json"}).js();
  EXPECT_EQ(3u, all["jobs"].size()) << all.dump();  // slow, later, ship
  EXPECT_EQ(1u, run({"jobs", "ls", "--json", "--state", "running"}).js()["jobs"].size());
  EXPECT_EQ(1u, run({"jobs", "ls", "--json", "--state", "scheduled"}).js()["jobs"].size());
  EXPECT_EQ(1u, run({"--tenant", "acme", "jobs", "ls", "--json"}).js()["jobs"].size());
  EXPECT_EQ(1u, run({"jobs", "ls", "--json", "--effect", "ship"}).js()["jobs"].size());
  json page = run({"jobs", "ls", "--json", "--limit", "2"}).js();
  EXPECT_EQ(2u, page["jobs"].size());
  ASSERT_TRUE(page["next_cursor"].is_string());
  json rest = run({"jobs", "ls", "--json", "--limit", "2", "--cursor",
                   page["next_cursor"].get<std::string>()})
                  .js();
  EXPECT_EQ(1u, rest["jobs"].size());
  EXPECT_EQ(3u, run({"jobs", "ls", "--json", "--limit", "1", "--all"}).js()["jobs"].size());
  Result more = run({"jobs", "ls", "--limit", "1"});
  EXPECT_TRUE(has(more.out, "--cursor")) << more.out;

  std::string slow = job_id({"--effect", "slow"});
  ASSERT_FALSE(slow.empty());
  Result show = run({"jobs", "show", slow});
  EXPECT_OK(show);
  EXPECT_TRUE(has(show.out, "lease_owner")) << show.out;
  EXPECT_TRUE(has(show.out, "ATTEMPT")) << show.out;
  json sj = run({"--json", "jobs", "show", slow}).js();
  EXPECT_EQ("running", sj["state"]);
  // By key in its tenant; a completed job by key.
  EXPECT_EQ(slow, run({"--json", "--tenant", "acme", "jobs", "show", "s1"}).js()["id"]);
  EXPECT_EQ("completed", run({"--json", "--tenant", "acme", "jobs", "show", "m1"}).js()["state"]);
  Result missing = run({"jobs", "show", "nope"});
  EXPECT_EQ(4, missing.code) << missing.err;
  EXPECT_TRUE(has(missing.err, "nope")) << missing.err;
  Result bad = run({"jobs", "ls", "--state", "sleepy"});
  EXPECT_EQ(2, bad.code);
  EXPECT_TRUE(has(bad.err, "state")) << bad.err;
}

TEST_F(WfctlTest, DeadLsShowAndDryRuns) {
  Result t = run({"dead", "ls"});
  EXPECT_OK(t);
  EXPECT_TRUE(has(t.out, "card declined")) << t.out;
  json d = run({"--json", "dead", "ls"}).js();
  ASSERT_EQ(2u, d.size());
  std::string id = d[0]["id"].get<std::string>();
  Result show = run({"dead", "show", id});
  EXPECT_OK(show);
  EXPECT_TRUE(has(show.out, "reason")) << show.out;
  EXPECT_TRUE(has(show.out, "failed")) << show.out;
  EXPECT_EQ(id, run({"--json", "dead", "show", id}).js()["id"]);
  EXPECT_EQ(4, run({"dead", "show", "999999"}).code);
  // Without --yes nothing changes: exit 1 and what would happen.
  Result dry = run({"dead", "requeue"});
  EXPECT_EQ(1, dry.code);
  EXPECT_TRUE(has(dry.out, "would re-queue 2")) << dry.out;
  json dj = run({"--json", "dead", "purge", "--effect", "charge"}).js();
  EXPECT_EQ("purge", dj["would"]);
  EXPECT_EQ(2, dj["count"]);
  EXPECT_EQ(2u, run({"--json", "dead", "ls"}).js().size());
}

TEST_F(WfctlTest, SchedulesSagasEvents) {
  Result s = run({"schedules", "ls"});
  EXPECT_OK(s);
  EXPECT_TRUE(has(s.out, "nightly")) << s.out;
  EXPECT_TRUE(has(s.out, "0 3 * * *")) << s.out;
  json sj = run({"--json", "schedules", "ls"}).js();
  ASSERT_EQ(1u, sj["schedules"].size());
  EXPECT_EQ("mail", sj["schedules"][0]["job"]["effect"]);
  Result ss = run({"schedules", "show", "nightly"});
  EXPECT_OK(ss);
  EXPECT_TRUE(has(ss.out, "next_due")) << ss.out;
  EXPECT_EQ("active", run({"--json", "schedules", "show", "nightly"}).js()["status"]);
  EXPECT_EQ(4, run({"schedules", "show", "weekly"}).code);
  EXPECT_EQ(0u, run({"--json", "schedules", "ls", "--status", "parked"}).js()["schedules"].size());

  Result g = run({"sagas", "ls"});
  EXPECT_OK(g);
  EXPECT_TRUE(has(g.out, "order")) << g.out;
  json gj = run({"--json", "sagas", "ls"}).js();
  ASSERT_EQ(1u, gj["sagas"].size());
  EXPECT_EQ("active", gj["sagas"][0]["status"]);
  Result gs = run({"sagas", "show", "order", "o1"});
  EXPECT_OK(gs);
  EXPECT_TRUE(has(gs.out, "shipping")) << gs.out;
  EXPECT_TRUE(has(gs.out, "order.placed")) << gs.out;
  json gsj = run({"--json", "sagas", "show", "order", "o1"}).js();
  EXPECT_EQ("shipping", gsj["state"]["step"]);
  ASSERT_EQ(1u, gsj["applied"].size());
  EXPECT_EQ("ev1", gsj["applied"][0]["event_id"]);
  EXPECT_EQ(4, run({"sagas", "show", "order", "o2"}).code);

  Result e = run({"events", "ls"});
  EXPECT_OK(e);
  EXPECT_TRUE(has(e.out, "unmatched")) << e.out;
  EXPECT_TRUE(has(e.out, "applied")) << e.out;
  json ej = run({"--json", "events", "ls", "--status", "unmatched"}).js();
  ASSERT_EQ(1u, ej["events"].size());
  EXPECT_EQ("ev2", ej["events"][0]["event_id"]);
  EXPECT_EQ(1u, run({"--json", "events", "ls", "--type", "order.placed"}).js()["events"].size());
}

TEST_F(WfctlTest, StuckExplainsEverythingNotFinished) {
  Result t = run({"stuck"});
  EXPECT_EQ(1, t.code) << t.out << t.err;  // "ship" has no live engine
  EXPECT_TRUE(has(t.out, "EXPLANATION")) << t.out;
  json j = run({"--json", "stuck"}).js();
  std::map<std::string, std::string> why;
  for (auto &i : j["items"])
    why[i["kind"].get<std::string>() + ":" + i["id"].get<std::string>()] =
        i["explanation"].get<std::string>();
  std::string ship = job_id({"--effect", "ship"}), slow = job_id({"--effect", "slow"}),
              later = job_id({"--state", "scheduled"});
  EXPECT_TRUE(has(why["job:" + ship], "\"ship\" is not registered by any live engine"))
      << j.dump(1);
  EXPECT_TRUE(has(why["job:" + slow], "running on engine")) << j.dump(1);
  EXPECT_TRUE(has(why["job:" + later], "waiting until")) << j.dump(1);
  EXPECT_TRUE(has(why["saga:order/o1"], "waiting for event type ship.completed")) << j.dump(1);
  EXPECT_TRUE(has(why["schedule:nightly"], "waiting until")) << j.dump(1);
  EXPECT_TRUE(j["problem"].get<bool>());
  // Nothing has waited a day.
  Result old = run({"stuck", "--older-than", "1d"});
  EXPECT_EQ(0, old.code) << old.out << old.err;
  EXPECT_EQ(0u, run({"--json", "stuck", "--older-than", "1d"}).js()["items"].size());
  EXPECT_EQ(2, run({"stuck", "--older-than", "soon"}).code);
}

// An effect whose circuit breaker is open (in another process's memory, and
// recorded in the file): stuck names the circuit, not a guess.
TEST_F(WfctlTest, StuckNamesAnOpenCircuit) {
  std::string cdb = dir + "/circuit.db";
  pid_t pid = -1;
  int in = -1;
  spawn_host(cdb, "circuit", &pid, &in);
  json j = run({"--db", cdb, "--json", "stuck"}, false).js();
  int circuit = 0;
  for (auto &i : j["items"]) {
    std::string why = i["explanation"].get<std::string>();
    if (i["kind"] == "job" && has(why, "the circuit breaker of \"flaky\" is open on engine"))
      ++circuit;
  }
  EXPECT_EQ(3, circuit) << j.dump(1);  // two failed once, one never ran: all wait
  stop_host(pid, in);
  // The engine closed: its boot row and circuit with it.
  json after = run({"--db", cdb, "--json", "stuck"}, false).js();
  for (auto &i : after["items"])
    EXPECT_FALSE(has(i["explanation"].get<std::string>(), "circuit")) << after.dump(1);
}

TEST_F(WfctlTest, WatchMetricsCheckBackup) {
  Result w = run({"watch", "--iterations", "2", "--interval", "0.05"});
  EXPECT_OK(w);
  size_t n = 0;
  for (size_t p = w.out.find("outbox"); p != std::string::npos; p = w.out.find("outbox", p + 1))
    ++n;
  EXPECT_EQ(2u, n) << w.out;
  Result wj = run({"--json", "watch", "--iterations", "3", "--interval", "0.05"});
  EXPECT_OK(wj);
  int lines = 0;
  size_t start = 0;
  for (size_t p; (p = wj.out.find('\n', start)) != std::string::npos; start = p + 1) {
    EXPECT_FALSE(json::parse(wj.out.substr(start, p - start), nullptr, false).is_discarded());
    ++lines;
  }
  EXPECT_EQ(3, lines);

  Result m = run({"metrics"});
  EXPECT_OK(m);
  EXPECT_TRUE(has(m.out, "# TYPE")) << m.out;
  EXPECT_TRUE(has(m.out, "wf_")) << m.out;

  Result c = run({"check"});
  EXPECT_OK(c);
  EXPECT_TRUE(has(c.out, "ok")) << c.out;
  json cj = run({"--json", "check", "--quick"}).js();
  EXPECT_TRUE(cj["ok"].get<bool>()) << cj.dump();

  std::string copy = dir + "/copy.db";
  Result b = run({"backup", copy});
  EXPECT_OK(b);
  struct stat st;
  ASSERT_EQ(0, stat(copy.c_str(), &st));
  Result again = run({"backup", copy});
  EXPECT_EQ(5, again.code);
  EXPECT_TRUE(has(again.err, "exists")) << again.err;
  // The copy is a wfengine database with the same dead letters.
  Result bc = run({"--db", copy, "--json", "stats"}, false);
  EXPECT_OK(bc);
  EXPECT_EQ(2, bc.js()["dead"]);
  EXPECT_OK(run({"--db", copy, "check"}, false));
}

TEST_F(WfctlTest, ErrorsAndHelp) {
  Result miss = run({"--db", dir + "/missing.db", "stats"}, false);
  EXPECT_EQ(3, miss.code);
  EXPECT_TRUE(has(miss.err, "missing.db")) << miss.err;
  struct stat st;
  EXPECT_NE(0, stat((dir + "/missing.db").c_str(), &st));  // not created
  std::string junk = dir + "/junk.txt";
  FILE *f = std::fopen(junk.c_str(), "w");
  std::fputs("hello, this is not a database at all; it is a text file, long enough", f);
  std::fclose(f);
  Result nd = run({"--db", junk, "stats"}, false);
  EXPECT_EQ(3, nd.code);
  EXPECT_TRUE(has(nd.err, "not a SQLite database")) << nd.err;
  // A change never creates a file either.
  EXPECT_EQ(3, run({"--db", dir + "/missing.db", "dead", "purge", "--yes"}, false).code);
  EXPECT_NE(0, stat((dir + "/missing.db").c_str(), &st));
  Result nodb = run({"stats"}, false);
  EXPECT_EQ(2, nodb.code);
  EXPECT_TRUE(has(nodb.err, "WFENGINE_DB")) << nodb.err;
  EXPECT_EQ(2, run({"frobnicate"}).code);
  EXPECT_EQ(2, run({}).code);
  EXPECT_EQ(2, run({"jobs"}).code);
  const std::vector<std::vector<std::string>> cmds = {{},
                                                      {"stats"},
                                                      {"jobs"},
                                                      {"jobs", "ls"},
                                                      {"jobs", "show"},
                                                      {"dead"},
                                                      {"dead", "ls"},
                                                      {"dead", "show"},
                                                      {"dead", "requeue"},
                                                      {"dead", "purge"},
                                                      {"schedules"},
                                                      {"schedules", "ls"},
                                                      {"schedules", "show"},
                                                      {"sagas"},
                                                      {"sagas", "ls"},
                                                      {"sagas", "show"},
                                                      {"events"},
                                                      {"events", "ls"},
                                                      {"stuck"},
                                                      {"watch"},
                                                      {"metrics"},
                                                      {"check"},
                                                      {"backup"}};
  for (auto c : cmds) {
    c.push_back("--help");
    Result h = run(c, false);
    EXPECT_EQ(0, h.code) << c[0];
    EXPECT_TRUE(has(h.out, "Usage")) << h.out;
  }
}

// Run last (gtest keeps declaration order): changes the database.
TEST_F(WfctlTest, ZRequeueAndPurgeWithYes) {
  json d = run({"--json", "dead", "ls"}).js();
  ASSERT_EQ(2u, d.size());
  std::string a = d[0]["id"].get<std::string>(), b = d[1]["id"].get<std::string>();
  Result rq = run({"dead", "requeue", "--id", a, "--yes"});
  EXPECT_OK(rq);
  EXPECT_TRUE(has(rq.out, "re-queued 1")) << rq.out;
  Result pg = run({"--json", "dead", "purge", "--id", b, "--yes"});
  EXPECT_OK(pg);
  EXPECT_EQ(1, pg.js()["purged"]);
  // The purged one is gone for good (the re-queued one may already be dead
  // again: the host's engine runs it and it fails).
  json after = run({"--json", "dead", "ls"}).js();
  for (auto &x : after) EXPECT_NE(b, x["id"]);
}

}  // namespace
