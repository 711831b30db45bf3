// Outbox: open/options, enqueue validation, idempotency keys, batches,
// cancel, host transactions, dead-letter operations without a relay.
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "helpers.h"

using namespace wft;

TEST(Version, MatchesMacros) {
  std::string v = std::to_string(WF_VERSION_MAJOR) + "." + std::to_string(WF_VERSION_MINOR) + "." +
                  std::to_string(WF_VERSION_PATCH);
  EXPECT_EQ(v, wf_version());
}

TEST_F(EngineTest, UnknownOptionIsRejected) {
  wf_engine *x = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{\"durabilty\":\"full\"}", &x));
  EXPECT_NE(std::string(wf_last_error()).find("durabilty"), std::string::npos) << wf_last_error();
  EXPECT_EQ(nullptr, x);
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{\"durability\":\"fast\"}", &x));
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{\"lease_ms\":\"10\"}", &x));
  EXPECT_NE(std::string(wf_last_error()).find("lease_ms"), std::string::npos);
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{not json", &x));
  EXPECT_EQ(WF_EINVAL, wf_open(nullptr, nullptr, &x));
}

TEST_F(EngineTest, FilesAreCreatedPrivate) {
  mode_t old = umask(022);
  open();
  enqueue({{"effect", "x"}});
  umask(old);
  for (const char *suffix : {"", "-wal", "-shm"}) {
    struct stat st;
    std::string p = path + suffix;
    ASSERT_EQ(0, stat(p.c_str(), &st)) << p;
    EXPECT_EQ(0600u, st.st_mode & 0777) << p;
  }
}

TEST_F(EngineTest, NotADatabaseIsCorrupt) {
  FILE *f = fopen(path.c_str(), "w");
  fputs("this is not a database file, it is text that is long enough to fail the header check", f);
  fclose(f);
  wf_engine *x = nullptr;
  EXPECT_EQ(WF_ECORRUPT, wf_open(path.c_str(), nullptr, &x)) << wf_last_error();
}

TEST_F(EngineTest, EnqueueReturnsIdsAndCountsReady) {
  open();
  std::string a = enqueue({{"effect", "email"}, {"payload", {{"to", "x"}}}});
  std::string b = enqueue({{"effect", "email"}});
  EXPECT_FALSE(a.empty());
  EXPECT_NE(a, b);
  json s = stats();
  EXPECT_EQ(2, s["outbox"]["ready"]);
  EXPECT_EQ(2, s["outbox"]["by_effect"]["email"]["ready"]);
  EXPECT_EQ(2, s["outbox"]["by_tenant"][""]["ready"]);
}

TEST_F(EngineTest, BadInputWritesNothing) {
  open("{\"durability\":\"normal\",\"max_payload_bytes\":1024,\"max_json_depth\":8}");
  struct Case {
    std::string doc;
    int rc;
    const char *mention;
  } cases[] = {
      {"{\"effect\":", WF_EINVAL, "malformed"},
      {"[1,2]", WF_EINVAL, "object"},
      {"{\"payload\":1}", WF_EINVAL, "effect"},
      {"{\"effect\":5}", WF_EINVAL, "effect"},
      {"{\"effect\":\"\"}", WF_EINVAL, "effect"},
      {"{\"effect\":\"x\",\"priority\":\"high\"}", WF_EINVAL, "priority"},
      {"{\"effect\":\"x\",\"priority\":1.5}", WF_EINVAL, "priority"},
      {"{\"effect\":\"x\",\"max_attempts\":0}", WF_EINVAL, "max_attempts"},
      {"{\"effect\":\"x\",\"delay_ms\":-5}", WF_EINVAL, "delay_ms"},
      {"{\"effect\":\"x\",\"run_at\":\"tomorrow\"}", WF_EINVAL, "run_at"},
      {"{\"effect\":\"x\",\"run_at\":1,\"delay_ms\":1}", WF_EINVAL, "run_at"},
      {"{\"effect\":\"x\",\"metadata\":[1]}", WF_EINVAL, "metadata"},
      {"{\"effect\":\"x\",\"key\":7}", WF_EINVAL, "key"},
      {"{\"effect\":\"x\",\"tenant\":false}", WF_EINVAL, "tenant"},
      {"{\"effect\":\"x\",\"payload\":\"" + std::string(2000, 'a') + "\"}", WF_ETOOBIG, "payload"},
      {"{\"effect\":\"x\",\"payload\":[[[[[[[[[[1]]]]]]]]]]}", WF_ETOOBIG, "nesting"},
      {"{\"effect\":\"x\",\"payload\":\"\xff\xfe\"}", WF_EINVAL, "malformed"},
  };
  for (auto &c : cases) {
    char *id = reinterpret_cast<char *>(1);
    EXPECT_EQ(c.rc, wf_enqueue(e, c.doc.c_str(), &id)) << c.doc;
    EXPECT_EQ(nullptr, id);
    EXPECT_NE(std::string(wf_last_error()).find(c.mention), std::string::npos)
        << c.doc << " -> " << wf_last_error();
  }
  EXPECT_EQ(WF_EINVAL, wf_enqueue(e, nullptr, nullptr));
  EXPECT_EQ(WF_EINVAL, wf_enqueue(nullptr, "{\"effect\":\"x\"}", nullptr));
  EXPECT_EQ(0, pending());
}

TEST_F(EngineTest, IdempotencyKeyReturnsExistingId) {
  open();
  std::string a = enqueue({{"effect", "x"}, {"key", "order-1"}});
  std::string b = enqueue({{"effect", "x"}, {"key", "order-1"}}, WF_EEXIST);
  EXPECT_EQ(a, b);
  // Keys are per tenant.
  std::string c = enqueue({{"effect", "x"}, {"key", "order-1"}, {"tenant", "t2"}});
  EXPECT_NE(a, c);
  EXPECT_EQ(2, pending());
}

TEST_F(EngineTest, UnknownFieldsAreKeptInMetadata) {
  open();
  enqueue({{"effect", "x"}, {"trace", "abc"}, {"metadata", {{"correlation_id", "c1"}}}});
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(1));
  EXPECT_EQ("abc", s.seen[0]["metadata"]["trace"]);
  EXPECT_EQ("c1", s.seen[0]["metadata"]["correlation_id"]);
}

TEST_F(EngineTest, BatchIsAllOrNothing) {
  open();
  char *ids = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_enqueue_batch(e, "[{\"effect\":\"a\"},{\"payload\":1}]", &ids));
  EXPECT_NE(std::string(wf_last_error()).find("jobs[1]"), std::string::npos) << wf_last_error();
  EXPECT_EQ(0, pending());
  ASSERT_EQ(
      WF_OK,
      wf_enqueue_batch(
          e,
          "[{\"effect\":\"a\",\"key\":\"k\"},{\"effect\":\"b\"},{\"effect\":\"a\",\"key\":\"k\"}]",
          &ids));
  json r = json::parse(ids);
  wf_free(ids);
  ASSERT_EQ(3u, r.size());
  EXPECT_FALSE(r[0]["existing"].get<bool>());
  EXPECT_TRUE(r[2]["existing"].get<bool>());
  EXPECT_EQ(r[0]["id"], r[2]["id"]);
  EXPECT_EQ(2, pending());
  EXPECT_EQ(WF_EINVAL, wf_enqueue_batch(e, "{\"effect\":\"a\"}", nullptr));
}

// Batches insert eight rows per statement with ids they allocate: the ids
// ascend, keys dedupe within the batch and against stored jobs, and an id is
// never given twice, even after the job holding the largest one is gone.
TEST_F(EngineTest, BatchIdsAndKeysAcrossRowGroups) {
  open();
  char *id = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue(e, "{\"effect\":\"a\",\"key\":\"old\"}", &id));
  std::string old_id = id;
  wf_free(id);
  json batch = json::array();
  for (int i = 0; i < 21; ++i) {
    json j{{"effect", "a"}, {"payload", i}};
    if (i % 5 == 0) j["key"] = "k" + std::to_string(i % 10);  // k0 twice, k5 twice
    if (i == 7) j["key"] = "old";
    batch.push_back(j);
  }
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &ids)) << wf_last_error();
  json r = json::parse(ids);
  wf_free(ids);
  ASSERT_EQ(21u, r.size());
  EXPECT_EQ(old_id, r[7]["id"]);
  EXPECT_TRUE(r[7]["existing"].get<bool>());
  EXPECT_EQ(r[0]["id"], r[10]["id"]);
  EXPECT_TRUE(r[10]["existing"].get<bool>());
  EXPECT_EQ(r[0]["id"], r[20]["id"]);
  EXPECT_EQ(r[5]["id"], r[15]["id"]);
  EXPECT_TRUE(r[15]["existing"].get<bool>());
  int64_t last = std::stoll(old_id);
  int fresh = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i]["existing"].get<bool>()) continue;
    int64_t v = std::stoll(r[i]["id"].get<std::string>());
    EXPECT_GT(v, last) << i;
    last = v;
    ++fresh;
  }
  EXPECT_EQ(17, fresh);  // 21 less k0 twice again, k5 once again, "old"
  EXPECT_EQ(18, pending());
  // The payloads went to their own rows.
  EXPECT_EQ(
      19,
      count_rows(
          path,
          ("SELECT payload FROM wf_jobs WHERE id = " + r[19]["id"].get<std::string>()).c_str()));
  // The largest id's job is cancelled (its row deleted): the next id is larger still.
  ASSERT_EQ(WF_OK, wf_cancel(e, "", std::to_string(last).c_str()));
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, "[{\"effect\":\"a\"}]", &ids));
  r = json::parse(ids);
  wf_free(ids);
  EXPECT_GT(std::stoll(r[0]["id"].get<std::string>()), last);
  ASSERT_EQ(WF_OK, wf_enqueue(e, "{\"effect\":\"a\"}", &id));
  EXPECT_GT(std::stoll(id), std::stoll(r[0]["id"].get<std::string>()));
  wf_free(id);
}

// The batch's array is split before each job is parsed: structure errors are
// refused with the batch untouched, brackets and commas inside strings are
// text.
TEST_F(EngineTest, BatchArrayStructure) {
  open();
  for (const char *bad :
       {"[1,]", "[,1]", "[{]}", "[1]]", "[{\"effect\":\"a\"}", "[\"x", "{\"effect\":\"a\"}", "",
        "  ", "[{\"effect\":\"a\"},,]", "[{\"effect\":\"a\"}] x"}) {
    char *ids = nullptr;
    EXPECT_EQ(WF_EINVAL, wf_enqueue_batch(e, bad, &ids)) << bad;
    EXPECT_EQ(nullptr, ids);
  }
  EXPECT_EQ(0, pending());
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, " [ ] ", &ids)) << wf_last_error();
  EXPECT_EQ("[]", std::string(ids));
  wf_free(ids);
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e,
                                    "[ {\"effect\":\"a\",\"payload\":\"},]\\\"[\"} ,\n"
                                    "{\"effect\":\"a\",\"payload\":[[{}],{\"k\":\"]\"}]}]",
                                    &ids))
      << wf_last_error();
  EXPECT_EQ(2u, json::parse(ids).size());
  wf_free(ids);
  EXPECT_EQ(2, pending());
  EXPECT_EQ(WF_EINVAL, wf_enqueue_batch(e, "[\"]\"]", nullptr));
  EXPECT_NE(std::string(wf_last_error()).find("jobs[0]"), std::string::npos) << wf_last_error();
}

// A large batch is decoded while the writer inserts it: a bad job late in
// the batch still leaves nothing stored, keys dedupe across the pieces, and
// another thread's enqueues meanwhile are unaffected.
TEST_F(EngineTest, PipelinedBatchIsAllOrNothing) {
  open();
  json batch = json::array();
  for (int i = 0; i < 1000; ++i) {
    json j{{"effect", "a"}, {"payload", i}};
    if (i % 100 == 7) j["key"] = "k" + std::to_string(i % 300);  // k7, k107, k207 repeating
    batch.push_back(j);
  }
  json bad = batch;
  bad[900] = json{{"payload", 1}};  // no effect
  std::atomic<bool> stop{false};
  std::atomic<int> others{0};
  std::thread t([&] {
    while (!stop) {
      if (wf_enqueue(e, "{\"effect\":\"b\"}", nullptr) == WF_OK) others++;
    }
  });
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(WF_EINVAL, wf_enqueue_batch(e, bad.dump().c_str(), nullptr));
    EXPECT_NE(std::string(wf_last_error()).find("jobs[900]"), std::string::npos) << wf_last_error();
  }
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.dump().c_str(), &ids)) << wf_last_error();
  stop = true;
  t.join();
  json r = json::parse(ids);
  wf_free(ids);
  ASSERT_EQ(1000u, r.size());
  EXPECT_EQ(r[7]["id"], r[907]["id"]);
  EXPECT_EQ(r[107]["id"], r[407]["id"]);
  EXPECT_TRUE(r[907]["existing"].get<bool>());
  EXPECT_FALSE(r[207]["existing"].get<bool>());
  // Three keys among ten keyed jobs: seven repeats.
  EXPECT_EQ(993 + others.load(), pending());
  EXPECT_EQ(993, count_rows(path, "SELECT count(*) FROM wf_jobs WHERE effect = 'a'"));
}

TEST_F(EngineTest, ConcurrentEnqueuesAreAllDurable) {
  open("{\"durability\":\"full\"}");
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        json j{{"effect", "x"}, {"key", std::to_string(t) + "-" + std::to_string(i)}};
        if (wf_enqueue(e, j.dump().c_str(), nullptr) == WF_OK) ok++;
      }
    });
  for (auto &t : ts) t.join();
  EXPECT_EQ(400, ok.load());
  EXPECT_EQ(400, pending());
  // Group commit: fewer commits than calls.
  EXPECT_LT(stats()["engine"]["commits"].get<int64_t>(), 400);
}

TEST_F(EngineTest, CancelByIdOrKey) {
  open();
  std::string a = enqueue({{"effect", "x"}});
  enqueue({{"effect", "x"}, {"key", "k1"}, {"tenant", "t"}});
  EXPECT_EQ(WF_OK, wf_cancel(e, nullptr, a.c_str()));
  EXPECT_EQ(WF_ENOTFOUND, wf_cancel(e, nullptr, a.c_str()));
  EXPECT_EQ(WF_ENOTFOUND, wf_cancel(e, "other", "k1"));  // tenant scoped
  EXPECT_EQ(WF_OK, wf_cancel(e, "t", "k1"));
  EXPECT_EQ(0, pending());
  // A cancelled key is free again.
  enqueue({{"effect", "x"}, {"key", "k1"}, {"tenant", "t"}});
}

TEST_F(EngineTest, HostTransactionCommitsAtomically) {
  open();
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  ASSERT_EQ(WF_OK,
            wf_tx_exec(t, "CREATE TABLE orders(id INTEGER PRIMARY KEY, v TEXT)", nullptr, nullptr))
      << wf_last_error();
  ASSERT_EQ(WF_OK, wf_tx_exec(t, "INSERT INTO orders(id, v) VALUES(?, ?)", "[1, \"a\"]", nullptr));
  char *id = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_enqueue(t, "{\"effect\":\"x\",\"key\":\"o1\"}", &id));
  wf_free(id);
  // Other writers of this thread must use the transaction.
  EXPECT_EQ(WF_EBUSY, wf_enqueue(e, "{\"effect\":\"x\"}", nullptr));
  ASSERT_EQ(WF_OK, wf_tx_commit(t));
  EXPECT_EQ(1, pending());

  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  ASSERT_EQ(WF_OK, wf_tx_exec(t, "INSERT INTO orders(id, v) VALUES(?, ?)", "[2, \"b\"]", nullptr));
  ASSERT_EQ(WF_OK, wf_tx_enqueue(t, "{\"effect\":\"x\",\"key\":\"o2\"}", nullptr));
  ASSERT_EQ(WF_OK, wf_tx_rollback(t));
  EXPECT_EQ(1, pending());

  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  char *rows = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_exec(t, "SELECT id, v, NULL AS n, 1.5 AS f FROM orders ORDER BY id", "[]",
                              &rows));
  json r = json::parse(rows);
  wf_free(rows);
  ASSERT_EQ(1u, r.size());
  EXPECT_EQ(1, r[0]["id"]);
  EXPECT_EQ("a", r[0]["v"]);
  EXPECT_TRUE(r[0]["n"].is_null());
  EXPECT_EQ(1.5, r[0]["f"]);
  ASSERT_EQ(WF_OK, wf_tx_rollback(t));
}

TEST_F(EngineTest, HostTransactionCannotTouchEngineTables) {
  open();
  enqueue({{"effect", "x"}});
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  for (const char *sql :
       {"DELETE FROM wf_jobs", "UPDATE wf_jobs SET state = 1", "INSERT INTO wf_dead(id) VALUES(1)",
        "DROP TABLE wf_jobs", "COMMIT", "PRAGMA user_version = 9", "ATTACH ':memory:' AS x",
        "CREATE TRIGGER tr AFTER INSERT ON wf_jobs BEGIN SELECT 1; END",
        "CREATE INDEX i ON wf_jobs(tenant)"}) {
    EXPECT_EQ(WF_EINVAL, wf_tx_exec(t, sql, nullptr, nullptr)) << sql;
  }
  EXPECT_EQ(WF_EINVAL, wf_tx_exec(t, "SELECT 1; SELECT 2", nullptr, nullptr));
  EXPECT_EQ(WF_EINVAL, wf_tx_exec(t, "SELECT ?", "{\"a\":1}", nullptr));
  // Reading engine tables is allowed.
  char *rows = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_exec(t, "SELECT count(*) AS n FROM wf_jobs", nullptr, &rows));
  EXPECT_EQ(1, json::parse(rows)[0]["n"]);
  wf_free(rows);
  ASSERT_EQ(WF_OK, wf_tx_commit(t));
  EXPECT_EQ(1, pending());
}

TEST_F(EngineTest, HostTransactionFromOtherThreadsQueuesWriters) {
  open();
  wf_tx *t = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &t));
  std::atomic<bool> done{false};
  std::thread other([&] {
    EXPECT_EQ(WF_OK, wf_enqueue(e, "{\"effect\":\"x\",\"key\":\"after\"}", nullptr));
    done = true;
  });
  ASSERT_EQ(WF_OK, wf_tx_enqueue(t, "{\"effect\":\"x\",\"key\":\"inside\"}", nullptr));
  EXPECT_FALSE(done.load());  // queued behind the open transaction
  ASSERT_EQ(WF_OK, wf_tx_commit(t));
  other.join();
  EXPECT_EQ(2, pending());
}

TEST_F(EngineTest, LoggerGetsJsonLines) {
  open();
  LogCapture log;
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_DEBUG, LogCapture::fn, &log));
  EXPECT_EQ(WF_EINVAL, wf_set_logger(e, 9, LogCapture::fn, &log));
  Sink s;
  s.handler = [](wf_job *j) { wf_job_fail(j, "nope"); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  enqueue({{"effect", "x"}, {"payload", {{"secret", "hunter2"}}}});
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(1));
  sync();
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_DEBUG, nullptr, nullptr));
  bool found = false;
  for (auto &l : log.snapshot()) {
    json j = json::parse(l);
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg")) << l;
    if (j["msg"] == "job dead-lettered") found = true;
    EXPECT_EQ(std::string::npos, l.find("hunter2")) << "payload leaked into logs: " << l;
  }
  EXPECT_TRUE(found);
}

// What wf_open logs goes to the process-wide default logger: the engine's
// own logger can only be set after wf_open returned.
TEST_F(EngineTest, DefaultLoggerSeesWhatOpenLogs) {
  LogCapture log;
  EXPECT_EQ(WF_EINVAL, wf_set_default_logger(-1, LogCapture::fn, &log));
  ASSERT_EQ(WF_OK, wf_set_default_logger(WF_LOG_INFO, LogCapture::fn, &log));
  open();
  ASSERT_EQ(WF_OK, wf_set_default_logger(WF_LOG_INFO, nullptr, nullptr));
  EXPECT_EQ(1u, log.count("engine opened"));
  json first = json::parse(log.snapshot().at(0));
  EXPECT_EQ(path, first["path"]);
  EXPECT_TRUE(first.contains("boot_id") && first.contains("schema_version")) << first.dump();
  // Engines opened after the default was removed do not use it.
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  open();
  EXPECT_EQ(1u, log.count("engine opened"));
}

TEST_F(EngineTest, StatsDocumentShape) {
  open();
  json s = stats();
  for (const char *k :
       {"ready", "scheduled", "running", "oldest_ready_age_ms", "by_effect", "by_tenant"})
    EXPECT_TRUE(s["outbox"].contains(k)) << k;
  EXPECT_TRUE(s.contains("dead"));
  EXPECT_TRUE(s["schedules"].contains("pending"));
  EXPECT_TRUE(s["schedules"]["next_due_ms"].is_null());
  EXPECT_TRUE(s["sagas"].contains("active"));
  EXPECT_TRUE(s["events"].contains("pending"));
  enqueue({{"effect", "x"}, {"tenant", "a"}});
  enqueue({{"effect", "y"}, {"tenant", "b"}, {"delay_ms", 1000}});
  clock.now += 250;
  s = stats("{\"tenant\":\"a\"}");
  EXPECT_EQ(1, s["outbox"]["ready"]);
  EXPECT_EQ(0, s["outbox"]["scheduled"]);
  EXPECT_EQ(250, s["outbox"]["oldest_ready_age_ms"]);
  s = stats("{\"effect\":\"y\"}");
  EXPECT_EQ(1, s["outbox"]["scheduled"]);
  char *out = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_stats(e, "{\"tenant\":1}", &out));
  EXPECT_EQ(WF_EINVAL, wf_stats(e, "{\"bogus\":1}", &out));
  ASSERT_EQ(WF_OK, wf_metrics(e, &out));
  std::string m = out;
  wf_free(out);
  EXPECT_NE(m.find("wfengine_outbox_jobs{effect=\"x\",state=\"ready\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("# TYPE wfengine_dead_letters gauge"), std::string::npos);
}

// The writer never checkpoints: a background thread does, on its own
// connection, once the WAL holds checkpoint_pages pages, so the WAL stays
// small while commits go on.
TEST_F(EngineTest, CheckpointsRunInTheBackground) {
  open("{\"durability\":\"normal\",\"checkpoint_pages\":8}");
  const std::string pad(2000, 'x');
  for (int i = 0; i < 300; ++i) enqueue({{"effect", "x"}, {"payload", {{"pad", pad}}}});
  ASSERT_EQ(WF_OK, wf_sync(e)) << wf_last_error();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  json s = stats();
  while (s["engine"]["checkpoints"].get<int64_t>() == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    s = stats();
  }
  EXPECT_GE(s["engine"]["checkpoints"].get<int64_t>(), 1) << s.dump();
  EXPECT_EQ(0, s["engine"]["checkpoint_failures"].get<int64_t>());
  // 300 commits of ~2 KB payloads are well over 1 MiB of WAL frames; the
  // checkpoints let the writer start the WAL over.
  struct stat st;
  ASSERT_EQ(0, ::stat((path + "-wal").c_str(), &st));
  EXPECT_LT(st.st_size, 1 << 20);
  EXPECT_EQ(300, pending());
  char *m = nullptr;
  ASSERT_EQ(WF_OK, wf_metrics(e, &m));
  EXPECT_NE(std::string(m).find("wfengine_checkpoints_total "), std::string::npos);
  wf_free(m);
}

TEST_F(EngineTest, CheckpointPagesZeroLeavesCheckpointsToSqlite) {
  open("{\"durability\":\"normal\",\"checkpoint_pages\":0}");
  for (int i = 0; i < 50; ++i) enqueue({{"effect", "x"}});
  EXPECT_EQ(0, stats()["engine"]["checkpoints"].get<int64_t>());
  wf_engine *x = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{\"checkpoint_pages\":-1}", &x));
  EXPECT_NE(std::string(wf_last_error()).find("checkpoint_pages"), std::string::npos);
}

TEST_F(EngineTest, ReopenKeepsJobs) {
  open();
  enqueue({{"effect", "x"}, {"key", "persist"}});
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  open();
  EXPECT_EQ(1, pending());
  enqueue({{"effect", "x"}, {"key", "persist"}}, WF_EEXIST);
}
