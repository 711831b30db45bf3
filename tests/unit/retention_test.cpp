// Retention and vacuum (src/retention.cpp): each window removes exactly the
// expired rows and nothing still needed, the purge runs without wf_start,
// bad option values are refused, files without auto_vacuum keep working and
// the file shrinks after a purge.
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstring>
#include <thread>

#include "engine.h"
#include "helpers.h"
#include "store.h"

using namespace wft;

namespace {

void exec_sql(const std::string &path, const char *sql) {
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(path.c_str(), &db));
  sqlite3_busy_timeout(db, 10000);
  char *err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  EXPECT_EQ(SQLITE_OK, rc) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

int64_t file_size(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

constexpr int64_t kDay = 86400000;

class RetentionTest : public EngineTest {
 protected:
  int64_t purge() {
    int64_t n = -1;
    EXPECT_EQ(WF_OK, wf::purge_now(e, &n)) << wf_last_error();
    return n;
  }
  int64_t rows(const char *sql) { return count_rows(path, sql); }
};

}  // namespace

TEST(RetentionOptions, BadValuesAreRefusedNamingTheField) {
  std::string dir = temp_dir(), path = dir + "/t.db";
  struct Case {
    const char *opts, *field;
  } cases[] = {
      {"{\"retain_events_ms\": -1}", "retain_events_ms"},
      {"{\"retain_sagas_ms\": \"7d\"}", "retain_sagas_ms"},
      {"{\"retain_dead_ms\": 1.5}", "retain_dead_ms"},
      {"{\"retain_attempts_ms\": 99999999999999999}", "retain_attempts_ms"},
      {"{\"purge_interval_ms\": 0}", "purge_interval_ms"},
      {"{\"retain_event_ms\": 1}", "retain_event_ms"},  // typo: unknown key
  };
  for (auto &c : cases) {
    wf_engine *e = nullptr;
    EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), c.opts, &e)) << c.opts;
    EXPECT_NE(std::string::npos, std::string(wf_last_error()).find(c.field))
        << c.opts << ": " << wf_last_error();
    EXPECT_EQ(nullptr, e);
    EXPECT_EQ(-1, file_size(path)) << "refused options must not create the file";
  }
  wf_engine *e = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(),
                           "{\"retain_events_ms\":0,\"retain_sagas_ms\":1,\"retain_dead_ms\":"
                           "86400000,\"retain_attempts_ms\":0,\"purge_interval_ms\":10}",
                           &e))
      << wf_last_error();
  EXPECT_EQ(WF_OK, wf_close(e));
  std::string cmd = "rm -rf '" + dir + "'";
  ASSERT_EQ(0, system(cmd.c_str()));
}

// Expired dedupe keys go, unexpired ones stay and keep deduplicating; the
// background thread does it in an engine that was never started.
TEST_F(RetentionTest, DedupeKeysSweptWithoutStart) {
  open("{\"durability\":\"normal\",\"dedupe_window_ms\":10000}");
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  const int64_t t0 = clock.now;
  for (int i = 0; i < 1200; ++i) enqueue({{"effect", "x"}, {"key", "old-" + std::to_string(i)}});
  ASSERT_TRUE(sink.wait_count(1200, 60000));
  sync();
  clock.now = t0 + 5000;
  enqueue({{"effect", "x"}, {"key", "young"}});
  ASSERT_TRUE(sink.wait_count(1201, 60000));
  sync();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  ASSERT_EQ(1201, rows("SELECT count(*) FROM wf_done_keys"));

  // Reopened, never started, with a short purge interval: the keys completed
  // at t0 expired at t0 + 10 s; "young" expires at t0 + 15 s.
  clock.now = t0 + 12000;
  open("{\"durability\":\"normal\",\"dedupe_window_ms\":10000,\"purge_interval_ms\":10}");
  bool gone = false;
  for (int i = 0; i < 3000 && !gone; ++i) {
    gone = rows("SELECT count(*) FROM wf_done_keys") == 1;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polls a condition
  }
  ASSERT_TRUE(gone) << rows("SELECT count(*) FROM wf_done_keys");
  EXPECT_EQ(1, rows("SELECT count(*) FROM wf_done_keys WHERE key = 'young'"));
  EXPECT_GE(stats()["engine"]["purged_rows"].get<int64_t>(), 1200);
  EXPECT_FALSE(stats()["engine"]["started"].get<bool>());
  // The young key still deduplicates; an expired one does not.
  enqueue({{"effect", "x"}, {"key", "young"}}, WF_EEXIST);
  enqueue({{"effect", "x"}, {"key", "old-1"}});
}

// Dead letters older than retain_dead_ms go with their history; younger
// ones and the history of pending jobs stay; history with no job left goes
// after retain_attempts_ms.
TEST_F(RetentionTest, DeadLettersAndAttemptHistory) {
  open(
      "{\"durability\":\"normal\",\"retain_dead_ms\":86400000,\"retain_attempts_ms\":"
      "3600000,\"backoff\":{\"base_ms\":1,\"cap_ms\":1,\"jitter\":\"none\"}}");
  Sink sink;
  sink.handler = [](wf_job *j) {
    std::string p = wf_job_payload(j, nullptr);
    if (p.find("park") != std::string::npos && wf_job_attempt(j) >= 2) {
      EXPECT_EQ(WF_OK, wf_job_retry(j, "later", kDay * 365));
      return;
    }
    if (wf_job_attempt(j) == 1)
      EXPECT_EQ(WF_OK, wf_job_retry(j, "once more", 0));
    else
      EXPECT_EQ(WF_OK, wf_job_fail(j, "gave up"));
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  const int64_t t0 = clock.now;
  std::string old_dead = enqueue({{"effect", "x"}, {"payload", "a"}});
  std::string parked_job = enqueue({{"effect", "x"}, {"payload", "park"}});
  ASSERT_TRUE(sink.wait_count(4, 30000));
  sync();
  clock.now = t0 + 2 * 3600000;  // two hours later
  std::string young_dead = enqueue({{"effect", "x"}, {"payload", "b"}});
  ASSERT_TRUE(sink.wait_count(6, 30000));
  sync();
  ASSERT_EQ(2, rows("SELECT count(*) FROM wf_dead"));
  // History left behind by a job that no longer exists (an older release, a
  // crash between two statements of an older release).
  exec_sql(path,
           "INSERT INTO wf_attempts(job_id, n, started_at, ended_at, outcome, error) VALUES"
           "(999999, 1, 1700000000000, 1700000000000, 'retry', 'orphan')");
  char q[128];
  snprintf(q, sizeof q, "SELECT count(*) FROM wf_attempts WHERE job_id = %s", parked_job.c_str());
  const int64_t pending_history = rows(q);
  ASSERT_GE(pending_history, 1);

  // One day and a bit after t0: the first dead letter is past retain_dead_ms,
  // the second is not; every attempt is past retain_attempts_ms.
  clock.now = t0 + kDay + 1000;
  purge();
  json d = dead();
  ASSERT_EQ(1u, d.size()) << d.dump();
  EXPECT_EQ(young_dead, d[0]["id"]);
  // The young dead letter's history was past retain_attempts_ms too.
  EXPECT_EQ(0u, d[0]["history"].size()) << d.dump();
  // The pending job keeps its history; nothing else is left.
  EXPECT_EQ(pending_history, rows(q));
  EXPECT_EQ(pending_history, rows("SELECT count(*) FROM wf_attempts"));
  EXPECT_EQ(1, pending());
}

// Saga retention: a finished instance goes with its log and the events only
// it needed; an active instance keeps everything (replay still works); an
// unmatched event goes after retain_events_ms; a parked event's dead letter
// stays while its instance waits behind it.
TEST_F(RetentionTest, SagasEventsAndParkedEvents) {
  open(
      "{\"durability\":\"normal\",\"retain_sagas_ms\":3600000,\"retain_events_ms\":3600000,"
      "\"retain_dead_ms\":3600000}");
  static auto reducer = [](void *, const char *in, size_t len, wf_buf *out) -> int {
    json input = json::parse(std::string(in, len));
    std::string type = input["event"]["type"];
    if (type == "s.bad") return 7;
    json st = input["state"].is_null() ? json::array() : input["state"];
    st.push_back(type);
    json o{{"state", st}, {"done", type == "s.end"}};
    std::string s = o.dump();
    return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
  };
  ASSERT_EQ(WF_OK,
            wf_saga_register(e, "s", "{\"start\":[\"s.start\"],\"on\":[\"s.end\",\"s.bad\"]}",
                             reducer, nullptr));
  ASSERT_EQ(WF_OK, wf_start(e));
  auto submit = [&](const std::string &id, const std::string &type, const std::string &corr) {
    json ev{{"event_id", id}, {"type", type}, {"correlation_id", corr}};
    ASSERT_EQ(WF_OK, wf_submit(e, ev.dump().c_str())) << wf_last_error();
  };
  auto get = [&](const char *corr, json *out) {
    char *s = nullptr;
    int rc = wf_saga_get(e, "", "s", corr, &s);
    if (rc == WF_OK) *out = json::parse(s);
    wf_free(s);
    return rc;
  };
  auto wait = [&](const char *corr, const std::function<bool(const json &)> &pred) {
    for (int i = 0; i < 3000; ++i) {
      json j;
      if (get(corr, &j) == WF_OK && pred(j)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polls a condition
    }
    return false;
  };
  const int64_t t0 = clock.now;
  submit("d1", "s.start", "done");
  submit("d2", "s.end", "done");
  submit("a1", "s.start", "active");
  submit("p1", "s.start", "parked");
  submit("p2", "s.bad", "parked");
  submit("u1", "nobody.takes.this", "x");
  ASSERT_TRUE(wait("done", [](const json &j) { return j["status"] == "done"; }));
  ASSERT_TRUE(wait("active", [](const json &j) { return j["version"] == 1; }));
  ASSERT_TRUE(wait("parked", [](const json &j) { return j["parked"] == true; }));
  ASSERT_EQ(6, rows("SELECT count(*) FROM wf_events"));

  clock.now = t0 + 2 * 3600000;
  purge();
  json j;
  EXPECT_EQ(WF_ENOTFOUND, get("done", &j));
  char *out = nullptr;
  EXPECT_EQ(WF_ENOTFOUND, wf_saga_replay(e, "", "s", "done", nullptr, &out));
  EXPECT_NE(std::string::npos, std::string(wf_last_error()).find("retain_sagas_ms"))
      << wf_last_error();
  // Kept: the active instance and its event, the parked instance, its
  // parked event and that event's dead letter.
  ASSERT_EQ(WF_OK, get("active", &j));
  ASSERT_EQ(WF_OK, wf_saga_replay(e, "", "s", "active", nullptr, &out)) << wf_last_error();
  EXPECT_EQ(1, json::parse(out)["events"]);
  wf_free(out);
  ASSERT_EQ(WF_OK, get("parked", &j));
  EXPECT_TRUE(j["parked"].get<bool>());
  EXPECT_EQ(1u, dead().size());
  EXPECT_EQ(3, rows("SELECT count(*) FROM wf_events"));  // a1, p1, p2
  EXPECT_EQ(0, rows("SELECT count(*) FROM wf_events WHERE event_id IN ('d1','d2','u1')"));
  EXPECT_EQ(0, rows("SELECT count(*) FROM wf_saga_log WHERE correlation_id = 'done'"));
  // A kept event still deduplicates; a purged one is accepted again (and, the
  // instance being gone, starts a new one).
  json dup{{"event_id", "a1"}, {"type", "s.start"}, {"correlation_id", "active"}};
  EXPECT_EQ(WF_EEXIST, wf_submit(e, dup.dump().c_str()));
  submit("d1", "s.start", "done");
  ASSERT_TRUE(wait("done", [](const json &x) { return x["status"] == "active"; }));
}

// A new file uses incremental auto-vacuum; after a purge the free pages go
// back to the file system and the file shrinks.
TEST_F(RetentionTest, NewFileUsesIncrementalAutoVacuumAndShrinks) {
  open("{\"durability\":\"normal\",\"retain_events_ms\":1000,\"tx_timeout_ms\":1200000}");
  EXPECT_EQ(2, rows("PRAGMA auto_vacuum"));
  std::string pad(1000, 'p');
  wf_tx *tx = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
  for (int i = 0; i < 5000; ++i) {
    json ev{{"event_id", "e" + std::to_string(i)}, {"type", "t"}, {"payload", pad}};
    ASSERT_EQ(WF_OK, wf_tx_submit(tx, ev.dump().c_str()));
  }
  ASSERT_EQ(WF_OK, wf_tx_commit(tx));
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  int64_t full = file_size(path);
  EXPECT_GT(full, 5000 * 1000);
  open("{\"durability\":\"normal\",\"retain_events_ms\":1000}");
  clock.now += 2000;
  EXPECT_EQ(5000, purge());
  EXPECT_GT(stats()["engine"]["vacuumed_pages"].get<int64_t>(), 1000);
  // While the engine is open: the vacuum asked the checkpointer for a pass,
  // and the file shrinks once it has copied the whole WAL back.
  bool shrunk = false;
  for (int i = 0; i < 1000 && !shrunk; ++i) {
    shrunk = file_size(path) < full / 2;
    if (!shrunk) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polls a condition
  }
  EXPECT_TRUE(shrunk) << full << " -> " << file_size(path);
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  int64_t after = file_size(path);
  EXPECT_LT(after, full / 10) << full << " -> " << after;
  EXPECT_EQ(0, rows("SELECT count(*) FROM wf_events"));
}

// A file created without auto_vacuum (a host's database, an older release)
// keeps working: the purge removes rows, nothing is vacuumed.
TEST_F(RetentionTest, ExistingFileWithoutAutoVacuumKeepsWorking) {
  exec_sql(path, "CREATE TABLE host_orders(id INTEGER PRIMARY KEY, v TEXT)");
  open("{\"durability\":\"normal\",\"retain_events_ms\":1000}");
  EXPECT_EQ(0, rows("PRAGMA auto_vacuum"));
  for (int i = 0; i < 100; ++i) {
    json ev{
        {"event_id", "e" + std::to_string(i)}, {"type", "t"}, {"payload", std::string(2000, 'x')}};
    ASSERT_EQ(WF_OK, wf_submit(e, ev.dump().c_str()));
  }
  clock.now += 2000;
  EXPECT_EQ(100, purge());
  EXPECT_EQ(0, stats()["engine"]["vacuumed_pages"].get<int64_t>());
  EXPECT_EQ(0, rows("SELECT count(*) FROM wf_events"));
  EXPECT_EQ(0, rows("PRAGMA auto_vacuum"));
  enqueue({{"effect", "x"}});
  EXPECT_EQ(1, pending());
}

// Windows set to 0 keep everything.
TEST_F(RetentionTest, ZeroKeepsForEver) {
  open(
      "{\"durability\":\"normal\",\"retain_events_ms\":0,\"retain_sagas_ms\":0,"
      "\"retain_dead_ms\":0,\"retain_attempts_ms\":0}");
  for (int i = 0; i < 10; ++i) {
    json ev{{"event_id", "e" + std::to_string(i)}, {"type", "t"}};
    ASSERT_EQ(WF_OK, wf_submit(e, ev.dump().c_str()));
  }
  clock.now += kDay * 365 * 100;
  EXPECT_EQ(0, purge());
  EXPECT_EQ(10, rows("SELECT count(*) FROM wf_events"));
}

// After a burst far larger than its working size, the WAL file is truncated
// back to journal_size_limit (16 MiB) once SQLite starts it over, instead of
// keeping its largest size on disk.
TEST_F(RetentionTest, WalShrinksAfterBurst) {
  // Few large events (per-call cost dominates under TSan) and a transaction
  // timeout far above the default 30 s for slow sanitizer builds.
  open("{\"durability\":\"normal\",\"tx_timeout_ms\":1200000}");
  std::string pad(10000, 'w');
  wf_tx *tx = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
  for (int i = 0; i < 3000; ++i) {
    json ev{{"event_id", "b" + std::to_string(i)}, {"type", "t"}, {"payload", pad}};
    ASSERT_EQ(WF_OK, wf_tx_submit(tx, ev.dump().c_str()));
  }
  ASSERT_EQ(WF_OK, wf_tx_commit(tx));
  const int64_t burst = file_size(path + "-wal");
  ASSERT_GT(burst, 24 << 20);
  // The next writes: the writer copies the WAL back before one of them (it
  // is far over 4 x checkpoint_pages), the one after starts it over and
  // truncates the file.
  int64_t wal = burst;
  for (int i = 0; i < 20 && wal > (16 << 20) + (1 << 20); ++i) {
    enqueue({{"effect", "x"}});
    wal = file_size(path + "-wal");
  }
  EXPECT_LE(wal, (16 << 20) + (1 << 20)) << "WAL after the burst: " << burst << " -> " << wal;
}

// A finished instance whose log is longer than a purge batch is removed over
// several batches, log first: nothing of it is left, and an active instance
// with as long a log keeps all of it.
TEST_F(RetentionTest, LongSagaLogSpansBatches) {
  open("{\"durability\":\"normal\",\"retain_sagas_ms\":1000,\"retain_events_ms\":1000}");
  static auto reducer = [](void *, const char *in, size_t len, wf_buf *out) -> int {
    bool end = std::string(in, len).find("\"type\":\"s.end\"") != std::string::npos;
    const char *o = end ? "{\"done\":true}" : "{}";
    return wf_buf_set(out, o, std::strlen(o)) == WF_OK ? 0 : 1;
  };
  ASSERT_EQ(WF_OK,
            wf_saga_register(e, "s", "{\"start\":[\"s.start\"],\"on\":[\"s.step\",\"s.end\"]}",
                             reducer, nullptr));
  ASSERT_EQ(WF_OK, wf_start(e));
  for (const char *corr : {"long-done", "long-active"}) {
    wf_tx *tx = nullptr;
    ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
    std::string c = corr;
    for (int i = 0; i < 1300; ++i) {
      json ev{{"event_id", c + std::to_string(i)},
              {"type", i == 0                            ? "s.start"
                       : (i == 1299 && c == "long-done") ? "s.end"
                                                         : "s.step"},
              {"correlation_id", c}};
      ASSERT_EQ(WF_OK, wf_tx_submit(tx, ev.dump().c_str()));
    }
    ASSERT_EQ(WF_OK, wf_tx_commit(tx));
  }
  for (int i = 0; i < 6000 && rows("SELECT count(*) FROM wf_saga_log") < 2600; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polls a condition
  ASSERT_EQ(2600, rows("SELECT count(*) FROM wf_saga_log"));
  clock.now += 5000;
  const int64_t batches = stats()["engine"]["purge_batches"].get<int64_t>();
  EXPECT_EQ(1300 + 1300 + 1, purge());  // log rows, events, the instance
  EXPECT_GT(stats()["engine"]["purge_batches"].get<int64_t>() - batches, 2);
  EXPECT_EQ(0, rows("SELECT count(*) FROM wf_saga_log WHERE correlation_id = 'long-done'"));
  EXPECT_EQ(1300, rows("SELECT count(*) FROM wf_saga_log WHERE correlation_id = 'long-active'"));
  EXPECT_EQ(1300, rows("SELECT count(*) FROM wf_events"));
  EXPECT_EQ(1, rows("SELECT count(*) FROM wf_sagas"));
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_saga_replay(e, "", "s", "long-active", nullptr, &out)) << wf_last_error();
  EXPECT_EQ(1300, json::parse(out)["events"]);
  wf_free(out);
}

// Every statement of the purge reads through an index (its cost follows the
// rows it visits, not the size of the tables): no plan step scans a table.
TEST_F(RetentionTest, PurgeStatementsUseIndexes) {
  open();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr));
  auto stmts = wf::retention_statements();
  ASSERT_GE(stmts.size(), 10u);
  for (const char *sql : stmts) {
    std::string q = std::string("EXPLAIN QUERY PLAN ") + sql;
    sqlite3_stmt *st = nullptr;
    ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, q.c_str(), -1, &st, nullptr))
        << sql << ": " << sqlite3_errmsg(db);
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string detail = reinterpret_cast<const char *>(sqlite3_column_text(st, 3));
      EXPECT_TRUE(detail.rfind("SCAN", 0) != 0 || detail == "SCAN CONSTANT ROW")
          << sql << "\n  plan: " << detail;
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
}
