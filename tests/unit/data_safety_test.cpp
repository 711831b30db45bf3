// Issue 8, "the host's database and bad data": the engine's schema version
// lives in its own table (the host's user_version is untouched), unusable
// files are refused before anything changes, host strings cannot fail a
// batch, failed firings park their schedule, a committed replay wins over a
// live step, stats filters, and time arithmetic at the int64 limits.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include "cron.h"
#include "engine.h"
#include "helpers.h"
#include "lease.h"
#include "outbox.h"
#include "store.h"

using namespace wft;

namespace {

bool exists(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

int64_t user_version(const std::string &p) {
  wf::Db db(p, false, 1000);
  auto st = db.prepare("PRAGMA user_version");
  st->step();
  return st->col_int(0);
}

std::string meta_version(const std::string &p) {
  wf::Db db(p, false, 1000);
  auto st = db.prepare("SELECT v FROM wf_meta WHERE k = 'schema_version'");
  return st->step() ? st->col_text(0) : std::string();
}

const std::string kBad = "bad \xff\xfe text \xc3";  // invalid UTF-8
const std::string kFffd = "\xEF\xBF\xBD";           // U+FFFD

}  // namespace

// ------------------------------------------------------------- item 9

class SchemaTest : public EngineTest {};

TEST_F(SchemaTest, MemoryAndUriNamesAreRefusedWithoutAStrayFile) {
  char cwd[4096];
  ASSERT_NE(nullptr, getcwd(cwd, sizeof cwd));
  ASSERT_EQ(0, chdir(dir.c_str()));
  struct Back {
    const char *to;
    ~Back() {
      if (chdir(to) != 0) abort();
    }
  } back{cwd};
  for (const char *name : {":memory:", "", "file::memory:", "file:x.db?mode=memory"}) {
    wf_engine *m = nullptr;
    EXPECT_EQ(WF_EINVAL, wf_open(name, nullptr, &m)) << name;
    EXPECT_EQ(nullptr, m);
    if (*name) {
      EXPECT_NE(std::string(wf_last_error()).find("not accepted"), std::string::npos)
          << wf_last_error();
    }
    if (m) wf_close(m);
  }
  EXPECT_FALSE(exists(dir + "/:memory:"));
  EXPECT_FALSE(exists(dir + "/file::memory:"));
  EXPECT_FALSE(exists(dir + "/file:x.db?mode=memory"));
}

// A host database at any user_version gets all of the engine's tables and
// keeps its user_version and its own data, across reopens.
TEST_F(SchemaTest, HostDatabaseKeepsItsUserVersion) {
  for (int uv : {0, 1, 2, 7}) {
    SCOPED_TRACE(uv);
    std::string p = dir + "/host" + std::to_string(uv) + ".db";
    {
      wf::Db db(p, false, 1000);
      db.exec("CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT)");
      db.exec("INSERT INTO orders(item) VALUES('book')");
      if (uv == 1) db.exec("PRAGMA user_version = 1");
      if (uv == 2) db.exec("PRAGMA user_version = 2");
      if (uv == 7) db.exec("PRAGMA user_version = 7");
    }
    for (int round = 0; round < 2; ++round) {
      wf_engine *h = nullptr;
      ASSERT_EQ(WF_OK, wf_open(p.c_str(), "{\"durability\":\"normal\"}", &h)) << wf_last_error();
      char *id = nullptr;
      EXPECT_EQ(WF_OK, wf_enqueue(h, "{\"effect\":\"x\",\"payload\":1}", &id)) << wf_last_error();
      wf_free(id);
      EXPECT_EQ(WF_OK, wf_schedule(h,
                                   "{\"key\":\"s\",\"delay_ms\":60000,\"job\":{\"effect\":"
                                   "\"x\"}}"))
          << wf_last_error();
      EXPECT_EQ(WF_OK, wf_close(h));
      EXPECT_EQ(uv, user_version(p));
      EXPECT_EQ(std::to_string(wf::kSchemaVersion), meta_version(p));
    }
    wf::Db db(p, false, 1000);
    auto st = db.prepare("SELECT count(*) FROM orders");
    st->step();
    EXPECT_EQ(1, st->col_int(0));
  }
}

namespace {
struct Refusal {
  const char *name;
  std::function<void(const std::string &)> make;
  const char *message;
};
}  // namespace

// Files the engine cannot use are refused with the reason, byte for byte
// unchanged (no WAL switch, no -wal file).
TEST_F(SchemaTest, UnusableFilesAreRefusedBeforeAnythingChanges) {
  std::vector<Refusal> cases = {
      {"newer schema",
       [](const std::string &p) {
         wf::Db db(p, false, 1000);
         db.exec("CREATE TABLE wf_meta(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID");
         db.exec("INSERT INTO wf_meta VALUES('schema_version', '99')");
         db.exec("CREATE TABLE wf_jobs(id INTEGER PRIMARY KEY)");
       },
       "newer than this library"},
      {"engine-like tables without a version",
       [](const std::string &p) {
         wf::Db db(p, false, 1000);
         db.exec("CREATE TABLE wf_orders(id INTEGER PRIMARY KEY)");
         db.exec("PRAGMA user_version = 7");
       },
       "wf_orders"},
      {"half of the engine's tables",
       [](const std::string &p) {
         wf::Db db(p, false, 1000);
         db.exec("CREATE TABLE wf_meta(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID");
         db.exec("CREATE TABLE wf_jobs(id INTEGER PRIMARY KEY)");
         db.exec("PRAGMA user_version = 2");
       },
       "no wfengine schema version"},
      {"not a SQLite database",
       [](const std::string &p) {
         FILE *f = std::fopen(p.c_str(), "wb");
         ASSERT_NE(nullptr, f);
         std::string junk(8192, 'x');
         std::fwrite(junk.data(), 1, junk.size(), f);
         std::fclose(f);
       },
       "not a SQLite database"},
  };
  int n = 0;
  for (auto &c : cases) {
    SCOPED_TRACE(c.name);
    std::string p = dir + "/refused" + std::to_string(n++) + ".db";
    c.make(p);
    std::string before = slurp(p);
    ASSERT_FALSE(before.empty());
    wf_engine *h = nullptr;
    EXPECT_EQ(WF_ECORRUPT, wf_open(p.c_str(), nullptr, &h));
    EXPECT_NE(std::string(wf_last_error()).find(c.message), std::string::npos) << wf_last_error();
    if (h) wf_close(h);
    EXPECT_EQ(before, slurp(p));
    EXPECT_FALSE(exists(p + "-wal"));
  }
}

// Files of earlier releases (version in user_version) are migrated: their
// data stays, the version moves to wf_meta, user_version is reset to 0 once.
TEST_F(SchemaTest, FilesOfEarlierReleasesAreMigrated) {
  for (int legacy : {1, 2}) {
    SCOPED_TRACE(legacy);
    std::string p = dir + "/legacy" + std::to_string(legacy) + ".db";
    {
      wf::Db db(p, false, 1000);
      db.exec("PRAGMA journal_mode=WAL");
      db.exec("BEGIN");
      for (int v = 1; v <= legacy; ++v) db.exec(wf::migration_sql(v));
      db.exec(legacy == 1 ? "PRAGMA user_version = 1" : "PRAGMA user_version = 2");
      db.exec(
          "INSERT INTO wf_jobs(tenant, effect, payload, metadata, run_at, created_at) "
          "VALUES('', 'x', '{\"n\":1}', '{}', 0, 0)");
      if (legacy == 2)
        db.exec(
            "INSERT INTO wf_schedules(tenant, key, cron, tz, catch_up, catch_up_max, target, "
            "body, next_due, created_at) VALUES('', 's', NULL, 'UTC', 'latest', 100, 'job', "
            "'{\"effect\":\"x\"}', 9000000000000, 0)");
      db.exec("COMMIT");
    }
    wf_engine *h = nullptr;
    ASSERT_EQ(WF_OK, wf_open(p.c_str(), "{\"durability\":\"normal\"}", &h)) << wf_last_error();
    char *out = nullptr;
    ASSERT_EQ(WF_OK, wf_stats(h, nullptr, &out));
    json s = json::parse(out);
    wf_free(out);
    EXPECT_EQ(1, s["outbox"]["ready"]);
    EXPECT_EQ(legacy == 2 ? 1 : 0, s["schedules"]["pending"]);
    EXPECT_EQ(0, s["schedules"]["parked"]);
    EXPECT_EQ(WF_OK, wf_close(h));
    EXPECT_EQ(0, user_version(p));
    EXPECT_EQ(std::to_string(wf::kSchemaVersion), meta_version(p));
    // From now on the host owns user_version: the engine leaves it alone.
    {
      wf::Db db(p, false, 1000);
      db.exec("PRAGMA user_version = 5");
    }
    ASSERT_EQ(WF_OK, wf_open(p.c_str(), nullptr, &h)) << wf_last_error();
    EXPECT_EQ(WF_OK, wf_close(h));
    EXPECT_EQ(5, user_version(p));
  }
}

namespace {
bool jobs_autoincrement(const std::string &p) {
  wf::Db db(p, true, 1000);
  auto st = db.prepare(
      "SELECT 1 FROM sqlite_schema WHERE name = 'wf_jobs' AND sql LIKE '%AUTOINCREMENT%'");
  return st->step();
}
int64_t as_id(const std::string &s) { return std::stoll(s); }
}  // namespace

// Schema version 11: wf_jobs has no AUTOINCREMENT (one WAL page less per
// commit); the engine gives ids itself and never gives one twice, even when
// the newest job was cancelled, completed or dead-lettered, across batches
// and reopens.
TEST_F(SchemaTest, JobIdsAreNeverGivenTwiceWithoutAutoincrement) {
  open();
  EXPECT_FALSE(jobs_autoincrement(path));
  int64_t a = as_id(enqueue({{"effect", "x"}}));
  int64_t b = as_id(enqueue({{"effect", "x"}, {"key", "k"}}));
  ASSERT_GT(b, a);
  ASSERT_EQ(WF_OK, wf_cancel(e, nullptr, "k")) << wf_last_error();  // the newest row
  int64_t c = as_id(enqueue({{"effect", "x"}, {"key", "k2"}}));
  EXPECT_GT(c, b);
  ASSERT_EQ(WF_OK, wf_cancel(e, nullptr, "k2")) << wf_last_error();
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, R"([{"effect":"x"},{"effect":"x","key":"k3"}])", &ids))
      << wf_last_error();
  json bj = json::parse(ids);
  wf_free(ids);
  int64_t d = as_id(bj[0]["id"].get<std::string>()), d2 = as_id(bj[1]["id"].get<std::string>());
  EXPECT_GT(d, c);
  EXPECT_EQ(d + 1, d2);
  ASSERT_EQ(WF_OK, wf_cancel(e, nullptr, "k3")) << wf_last_error();
  // Across a reopen (the floor is in the file).
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  open();
  int64_t f = as_id(enqueue({{"effect", "y"}}));
  EXPECT_GT(f, d2);
  // The newest job dead-lettered: its dead letter is never replaced by a new
  // job of the same id, and a requeue gives it back its own id.
  Sink sink;
  sink.handler = [](wf_job *j) { EXPECT_EQ(WF_OK, wf_job_fail(j, "no")); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "y", nullptr, Sink::cb, &sink)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait_count(1));
  sync();
  ASSERT_EQ(1u, dead().size()) << dead().dump();
  int64_t g = as_id(enqueue({{"effect", "x"}}));
  EXPECT_GT(g, f);
  json dl = dead();
  ASSERT_EQ(1u, dl.size());
  EXPECT_EQ(std::to_string(f), dl[0]["id"].get<std::string>()) << dl.dump();
  EXPECT_EQ("y", dl[0]["effect"].get<std::string>());
  ASSERT_EQ(WF_OK, wf_close(e));  // not started again: the requeued job stays
  e = nullptr;
  open();
  int64_t n = 0;
  ASSERT_EQ(WF_OK, wf_dead_requeue(e, nullptr, &n)) << wf_last_error();
  ASSERT_EQ(1, n);
  char *job = nullptr;
  ASSERT_EQ(WF_OK, wf_job_get(e, nullptr, std::to_string(f).c_str(), &job)) << wf_last_error();
  EXPECT_EQ("y", json::parse(job)["effect"].get<std::string>());
  wf_free(job);
  EXPECT_GT(as_id(enqueue({{"effect", "x"}})), g);
}

// A job row deleted earlier in the same transaction (a completion in the
// batch that also inserts) is above the stored floor until the transaction
// flushes its counts: the next id still passes it.
TEST_F(SchemaTest, IdDeletedEarlierInTheTransactionIsNotGivenAgain) {
  open();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  wf::Db db(path, false, 1000);
  auto insert_running = [&](int64_t id) {
    auto st = db.prepare(
        "INSERT INTO wf_jobs(id, tenant, effect, payload, metadata, run_at, created_at, state, "
        "lease_owner, attempts) VALUES(?1, '', 'x', '{}', '{}', 0, 0, 1, 'b', 1)");
    st->bind(1, id).exec();
  };
  db.exec("BEGIN IMMEDIATE");
  int64_t a = wf::lease::next_job_id(db);
  insert_running(a);
  int64_t b = wf::lease::next_job_id(db);
  EXPECT_EQ(a + 1, b);
  insert_running(b);
  wf::lease::CountDeltas cd;
  ASSERT_TRUE(wf::lease::finish_done(db, cd, "b", b, 1));
  EXPECT_EQ(b, cd.deleted_max);
  EXPECT_GT(wf::lease::next_job_id(db), b);  // before the floor is written
  wf::lease::flush_counts(db, cd);
  db.exec("COMMIT");
  wf::Db other(path, false, 1000);  // another connection: from the floor
  other.exec("BEGIN IMMEDIATE");
  EXPECT_EQ(b + 1, wf::lease::next_job_id(other));
  other.exec("ROLLBACK");
}

// A file upgraded with jobs in it keeps AUTOINCREMENT (rebuilding a large
// table at open would stall it): its ids continue past the old sequence,
// also past a newest job completed before the upgrade. Once an open finds
// the table empty, it is rebuilt without AUTOINCREMENT, ids still rising.
TEST_F(SchemaTest, UpgradedFileKeepsItsSequenceUntilDrained) {
  {
    wf::Db db(path, false, 1000);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("BEGIN");
    for (int v = 1; v < 11; ++v) db.exec(wf::migration_sql(v));
    db.exec("INSERT INTO wf_meta(k, v) VALUES('schema_version', '10')");
    db.exec(
        "INSERT INTO wf_jobs(tenant, effect, key, payload, metadata, run_at, created_at) VALUES"
        "('', 'x', 'old', '{}', '{}', 0, 0)");
    // A newer job that was completed (only the sequence remembers its id).
    db.exec(
        "INSERT INTO wf_jobs(id, tenant, effect, payload, metadata, run_at, created_at) VALUES"
        "(500, '', 'x', '{}', '{}', 0, 0)");
    db.exec("DELETE FROM wf_jobs WHERE id = 500");
    db.exec("INSERT INTO wf_job_counts(effect, tenant, pending, running) VALUES('x', '', 1, 0)");
    db.exec("COMMIT");
  }
  ASSERT_TRUE(jobs_autoincrement(path));
  open();
  EXPECT_TRUE(jobs_autoincrement(path));  // not empty: kept
  EXPECT_EQ(std::to_string(wf::kSchemaVersion), meta_version(path));
  int64_t a = as_id(enqueue({{"effect", "x"}}));
  EXPECT_EQ(501, a);
  ASSERT_EQ(WF_OK, wf_cancel(e, nullptr, std::to_string(a).c_str())) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_cancel(e, nullptr, "old")) << wf_last_error();
  EXPECT_EQ(0, pending());
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  open();
  EXPECT_FALSE(jobs_autoincrement(path));  // drained: rebuilt
  int64_t b = as_id(enqueue({{"effect", "x"}, {"key", "new"}}));
  EXPECT_EQ(502, b);
  json s = stats();
  EXPECT_EQ(1, s["outbox"]["ready"]);
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_check(e, nullptr, &out)) << wf_last_error();
  json ok = json::parse(out);
  wf_free(out);
  EXPECT_TRUE(ok["ok"].get<bool>()) << ok.dump();
}

// Schema 12 on a file with pending jobs: the migration leaves the per-tenant
// index empty (no effect is marked yet); registering an effect with a
// tenant_concurrency marks the jobs it already has, and only those; the
// engine then drains both effects and the file checks clean.
TEST_F(SchemaTest, UpgradedFileMarksCappedEffectsWhenRegistered) {
  {
    wf::Db db(path, false, 1000);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("BEGIN");
    for (int v = 1; v < 12; ++v) db.exec(wf::migration_sql(v));
    db.exec("INSERT INTO wf_meta(k, v) VALUES('schema_version', '11')");
    db.exec(
        "INSERT INTO wf_jobs(id, tenant, effect, payload, metadata, run_at, created_at) VALUES"
        "(1, 'a', 'y', '{}', '{}', 0, 0), (2, 'a', 'y', '{}', '{}', 0, 0), "
        "(3, 'b', 'y', '{}', '{}', 0, 0), (4, 'a', 'x', '{}', '{}', 0, 0), "
        "(5, 'b', 'x', '{}', '{}', 0, 0)");
    db.exec(
        "INSERT INTO wf_job_counts(effect, tenant, pending, running) VALUES('y', 'a', 2, 0), "
        "('y', 'b', 1, 0), ('x', 'a', 1, 0), ('x', 'b', 1, 0)");
    db.exec("COMMIT");
  }
  auto count = [&](const char *sql) { return count_rows(path, sql); };
  const char *in_index =
      "SELECT count(*) FROM wf_jobs INDEXED BY wf_jobs_tenant WHERE state = 0 AND capped = 1 "
      "AND effect > ''";
  open();
  EXPECT_EQ(std::to_string(wf::kSchemaVersion), meta_version(path));
  EXPECT_EQ(0, count(in_index));
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "y", "{\"tenant_concurrency\":1}", Sink::cb, &sink));
  sync();
  EXPECT_EQ(3, count(in_index));
  EXPECT_EQ(3, count("SELECT count(*) FROM wf_jobs WHERE capped = 1 AND effect = 'y'"));
  EXPECT_EQ(0, count("SELECT count(*) FROM wf_jobs WHERE capped IS NOT NULL AND effect = 'x'"));
  EXPECT_EQ(1, count("SELECT count(*) FROM wf_capped_effects"));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait_count(5));
  sync();
  EXPECT_EQ(0, pending());
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_check(e, nullptr, &out)) << wf_last_error();
  json ok = json::parse(out);
  wf_free(out);
  EXPECT_TRUE(ok["ok"].get<bool>()) << ok.dump();
}

// The rebuild gives wf_jobs exactly the columns and indexes the migrations
// give it (kJobsRebuildSql must follow any later change of wf_jobs).
TEST_F(SchemaTest, JobsRebuildKeepsTheSchema) {
  auto shape = [](const std::string &p) {
    wf::Db db(p, true, 1000);
    std::string out;
    auto c = db.prepare(
        "SELECT name, type, \"notnull\", coalesce(dflt_value, ''), pk FROM "
        "pragma_table_info('wf_jobs') ORDER BY cid");
    while (c->step())
      out += c->col_text(0) + " " + c->col_text(1) + " " + c->col_text(2) + " " + c->col_text(3) +
             " " + c->col_text(4) + "\n";
    auto i = db.prepare(
        "SELECT name, replace(replace(sql, '\"wf_jobs\"', 'wf_jobs'), 'wf_jobs_new', 'wf_jobs') "
        "FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'wf_jobs' AND sql IS NOT NULL "
        "ORDER BY name");
    while (i->step()) out += i->col_text(0) + ": " + i->col_text(1) + "\n";
    return out;
  };
  std::string migrated = dir + "/migrated.db";
  {
    wf::Db db(migrated, false, 1000);
    db.exec("BEGIN");
    for (int v = 1; v <= wf::kSchemaVersion; ++v) db.exec(wf::migration_sql(v));
    db.exec("COMMIT");
  }
  open();
  ASSERT_FALSE(jobs_autoincrement(path));
  ASSERT_TRUE(jobs_autoincrement(migrated));
  std::string want = shape(migrated);
  EXPECT_NE(std::string::npos, want.find("interruptions")) << want;
  EXPECT_EQ(want, shape(path));
}

// ------------------------------------------------------------ item 10

namespace {

// A saga that emits one "reserve" job and records its outcome event.
struct OutcomeReducer {
  static int fn(void *, const char *in, size_t len, wf_buf *out) {
    json input = json::parse(std::string(in, len));
    json state = input["state"].is_null() ? json::object() : input["state"];
    const json &ev = input["event"];
    std::string type = ev["type"];
    json o{{"state", state}, {"done", false}};
    if (type == "order.placed")
      o["commands"] = json::array({{{"effect", "reserve"}, {"payload", 1}}});
    if (type == "reserve.failed") {
      o["state"]["error"] = ev["payload"]["error"];
      o["done"] = true;
    }
    std::string s = o.dump();
    return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
  }
};

bool poll(const std::function<bool()> &pred, int ms = 20000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

}  // namespace

// Sink and logger outlive the engine (closed in TearDown), also when a test
// stops early.
class HostStringTest : public EngineTest {
 protected:
  Sink sink;
  LogCapture logs;
};

// A provider's error text that is not UTF-8 used to make the saga's outcome
// event unserialisable: the commit failed and the job ran again at every
// lease expiry. Now the text is stored with U+FFFD and the saga gets it.
TEST_F(HostStringTest, NonUtf8ErrorOfASagaJobReachesTheSaga) {
  open();
  sink.handler = [](wf_job *j) { EXPECT_EQ(WF_OK, wf_job_fail(j, kBad.c_str())); };
  ASSERT_EQ(WF_OK, wf_saga_register(e, "order", "{\"start\":[\"order.placed\"]}",
                                    OutcomeReducer::fn, nullptr));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "reserve", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_EQ(WF_OK, wf_submit(e,
                             "{\"event_id\":\"e1\",\"type\":\"order.placed\","
                             "\"correlation_id\":\"o1\"}"));
  ASSERT_TRUE(sink.wait_count(1));
  json st;
  ASSERT_TRUE(poll([&] {
    char *out = nullptr;
    if (wf_saga_get(e, "", "order", "o1", &out) != WF_OK) return false;
    st = json::parse(out);
    wf_free(out);
    return st["status"] == "done";
  }));
  std::string err = st["state"]["error"];
  EXPECT_EQ("bad " + kFffd + kFffd + " text " + kFffd, err);
  json d = dead("{\"effect\":\"reserve\"}");
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ("bad " + kFffd + kFffd + " text " + kFffd, d[0]["reason"]);
  EXPECT_EQ(0, pending());
  EXPECT_EQ(1u, sink.count());
}

// A C++ provider's exception text is stored like a wf_job_retry error text:
// invalid UTF-8 replaced with U+FFFD.
TEST_F(HostStringTest, ProviderExceptionTextIsStoredAsUtf8) {
  open();
  sink.handler = [](wf_job *) { throw std::runtime_error(kBad); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "boom", "{\"max_attempts\":1}", Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "boom"}});
  json d;
  ASSERT_TRUE(poll([&] {
    d = dead("{\"effect\":\"boom\"}");
    return d.size() == 1;
  }));
  std::string reason = d[0]["reason"];
  EXPECT_EQ(0u, reason.rfind("provider threw: bad " + kFffd + kFffd + " text " + kFffd, 0))
      << reason;
}

// A request without a savepoint that throws on its own data fails alone: the
// other requests of its batch commit.
TEST(WriterBatch, BareRequestFailingAloneDoesNotFailItsBatch) {
  std::string d = temp_dir();
  {
    wf::Engine eng(d + "/t.db", wf::parse_options("{\"durability\":\"normal\"}"));
    std::mutex mu;
    std::condition_variable cv;
    bool release = false, entered = false;
    int rc_bad = 1, rc_good = 1, rc_good2 = 1;
    int done = 0;
    auto after = [&](int *slot) {
      return [&, slot](int rc, const std::string &) {
        std::lock_guard<std::mutex> g(mu);
        *slot = rc;
        ++done;
        cv.notify_all();
      };
    };
    // Holds the writer so that the next three requests share one batch.
    wf::WriteReq hold;
    hold.fn = [&](wf::WriteCtx &) {
      std::unique_lock<std::mutex> lk(mu);
      entered = true;
      cv.notify_all();
      cv.wait(lk, [&] { return release; });
    };
    eng.submit(std::move(hold));
    {
      std::unique_lock<std::mutex> lk(mu);
      ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(30), [&] { return entered; }));
    }
    auto insert = [&](const char *effect) {
      return [&eng, effect](wf::WriteCtx &w) {
        wf::NewJob j;
        j.effect = effect;
        j.payload = "1";
        j.metadata = "{}";
        j.run_at = w.now;
        std::string id;
        bool existing;
        eng.insert_job(w, j, &id, &existing);
      };
    };
    wf::WriteReq good;
    good.fn = insert("good");
    good.after = after(&rc_good);
    good.durable = true;
    eng.submit(std::move(good));
    wf::WriteReq bad;  // bare, like an outcome: writes, then throws on its data
    bad.fn = [&](wf::WriteCtx &w) {
      insert("bad")(w);
      wf::json v = std::string("\xff");
      (void)v.dump();  // nlohmann: invalid UTF-8 throws type_error 316
    };
    bad.after = after(&rc_bad);
    eng.submit(std::move(bad));
    wf::WriteReq good2;  // bare too, after the bad one
    good2.fn = insert("good2");
    good2.after = after(&rc_good2);
    eng.submit(std::move(good2));
    {
      std::lock_guard<std::mutex> g(mu);
      release = true;
      cv.notify_all();
    }
    {
      std::unique_lock<std::mutex> lk(mu);
      ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(30), [&] { return done == 3; }));
    }
    EXPECT_EQ(WF_OK, rc_good);
    EXPECT_EQ(WF_OK, rc_good2);
    EXPECT_EQ(WF_EINTERNAL, rc_bad);
    wf::Db db(d + "/t.db", true, 1000);
    auto st = db.prepare(
        "SELECT group_concat(effect, ',') FROM (SELECT effect FROM wf_jobs "
        "ORDER BY id)");
    ASSERT_TRUE(st->step());
    EXPECT_EQ("good,good2", st->col_text(0));
  }
  std::string cmd = "rm -rf '" + d + "'";
  ASSERT_EQ(0, system(cmd.c_str()));
}

TEST_F(HostStringTest, NamesThatAreNotUtf8AreRefused) {
  open();
  EXPECT_EQ(WF_EINVAL, wf_effect_register(e, kBad.c_str(), nullptr, Sink::cb, &sink));
  EXPECT_NE(std::string(wf_last_error()).find("UTF-8"), std::string::npos);
  EXPECT_EQ(WF_EINVAL,
            wf_saga_register(e, kBad.c_str(), "{\"start\":[\"a\"]}", OutcomeReducer::fn, nullptr));
  EXPECT_EQ(WF_EINVAL, wf_cancel(e, nullptr, kBad.c_str()));
  EXPECT_EQ(WF_EINVAL, wf_cancel(e, kBad.c_str(), "k"));
  EXPECT_EQ(WF_EINVAL, wf_unschedule(e, nullptr, kBad.c_str()));
  char *out = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_saga_get(e, "", "order", kBad.c_str(), &out));
  EXPECT_EQ(WF_EINVAL, wf_saga_replay(e, kBad.c_str(), "order", "c", nullptr, &out));
  // Documents are parsed strictly: a raw invalid byte inside one is refused.
  std::string job = "{\"effect\":\"" + kBad + "\"}";
  EXPECT_EQ(WF_EINVAL, wf_enqueue(e, job.c_str(), nullptr));
  // The loop keeps working (no error logged every 100 ms): a valid effect runs.
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, LogCapture::fn, &logs));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "ok", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "ok"}});
  ASSERT_TRUE(sink.wait_count(1));
  sync();
  // Setting the logger again delivers the lines queued before it first.
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, LogCapture::fn, &logs));
  EXPECT_EQ(0u, logs.snapshot().size());
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, nullptr, nullptr));
}

// Host SQL returning text that is not UTF-8 gets U+FFFD, not WF_EINTERNAL.
TEST_F(HostStringTest, TxExecRowsWithInvalidTextAreReplaced) {
  open();
  wf_tx *tx = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_begin(e, &tx));
  char *rows = nullptr;
  ASSERT_EQ(WF_OK, wf_tx_exec(tx, "SELECT CAST(x'61ff62' AS TEXT) AS v", nullptr, &rows))
      << wf_last_error();
  json r = json::parse(rows);
  wf_free(rows);
  EXPECT_EQ("a" + kFffd + "b", r[0]["v"]);
  ASSERT_EQ(WF_OK, wf_tx_rollback(tx));
}

TEST(Utf8, ValidationAndReplacement) {
  struct Case {
    std::string in;
    bool valid;
    std::string sanitized;
  };
  std::vector<Case> cases = {
      {"", true, ""},
      {"plain", true, "plain"},
      {"\xC3\xA9t\xC3\xA9", true, "\xC3\xA9t\xC3\xA9"},
      {"\xF0\x9F\x98\x80", true, "\xF0\x9F\x98\x80"},
      {"\xff", false, kFffd},
      {"a\xC3", false, "a" + kFffd},                               // truncated sequence
      {"\xC0\xAF", false, kFffd + kFffd},                          // overlong
      {"\xED\xA0\x80", false, kFffd + kFffd + kFffd},              // surrogate
      {"\xF4\x90\x80\x80", false, kFffd + kFffd + kFffd + kFffd},  // above U+10FFFF
  };
  for (auto &c : cases) {
    EXPECT_EQ(c.valid, wf::valid_utf8(c.in)) << c.sanitized;
    EXPECT_EQ(c.sanitized, wf::sanitize_utf8(c.in));
    EXPECT_TRUE(wf::valid_utf8(wf::sanitize_utf8(c.in)));
  }
  // Cut on a character boundary.
  EXPECT_EQ("a", wf::sanitize_utf8("a\xC3\xA9", 2));
  EXPECT_EQ("a\xC3\xA9", wf::sanitize_utf8("a\xC3\xA9", 3));
}

// ------------------------------------------------------------ item 11

// Sink and logger outlive the engine (closed in TearDown), also when a test
// stops early.
class ParkedScheduleTest : public EngineTest {
 protected:
  Sink sink;
  LogCapture logs;
};

TEST_F(ParkedScheduleTest, FailedFiringParksTheScheduleUntilReplaced) {
  open();
  std::string big(2000, 'x');
  for (const char *key : {"once", "every-minute"}) {
    json s{{"key", key}, {"job", {{"effect", "x"}, {"payload", {{"big", big}}}}}};
    if (std::string(key) == "once")
      s["delay_ms"] = 1000;
    else
      s["cron"] = "* * * * *";
    ASSERT_EQ(WF_OK, wf_schedule(e, s.dump().c_str())) << wf_last_error();
  }
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  // Reopened with a smaller payload limit: the stored jobs no longer decode.
  open("{\"durability\":\"normal\",\"max_payload_bytes\":1024}");
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, LogCapture::fn, &logs));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  advance(120000);
  ASSERT_TRUE(poll([&] { return stats()["schedules"]["parked"] == 2; })) << stats().dump();
  // Moving on does not fire or park them again, and nothing loops.
  for (int i = 0; i < 5; ++i) {
    advance(60000);
    sync();
  }
  json s = stats();
  EXPECT_EQ(2, s["schedules"]["parked"]);
  EXPECT_EQ(0, s["schedules"]["pending"]);
  EXPECT_EQ(0, s["schedules"]["due"]);
  ASSERT_EQ(2u, s["schedules"]["parked_list"].size());
  for (auto &p : s["schedules"]["parked_list"]) {
    EXPECT_NE(p["reason"].get<std::string>().find("max_payload_bytes"), std::string::npos) << p;
    EXPECT_EQ(clock.now.load() - 5 * 60000, p["parked_at"].get<int64_t>());
  }
  // Setting the logger again delivers the lines queued before it first.
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, LogCapture::fn, &logs));
  EXPECT_EQ(2u, logs.count(
                    "schedule could not fire; parked (wf_schedule with the same key replaces it)"));
  EXPECT_EQ(0, pending());
  EXPECT_EQ(0u, sink.count());
  char *m = nullptr;
  ASSERT_EQ(WF_OK, wf_metrics(e, &m));
  EXPECT_NE(std::string(m).find("wfengine_schedules_parked 2"), std::string::npos);
  wf_free(m);
  // Replacing a parked schedule un-parks it; removing it works too.
  ASSERT_EQ(WF_OK, wf_schedule(e, "{\"key\":\"once\",\"delay_ms\":0,\"job\":{\"effect\":\"x\"}}"));
  ASSERT_EQ(WF_OK, wf_unschedule(e, nullptr, "every-minute"));
  ASSERT_TRUE(sink.wait_count(1));
  sync();
  s = stats();
  EXPECT_EQ(0, s["schedules"]["parked"]);
  EXPECT_EQ(0, s["schedules"]["pending"]);
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_ERROR, nullptr, nullptr));
}

// ------------------------------------------------------------ item 12

namespace {

// Appends each event's type to the state, tagged with the reducer version
// read when the call starts; a "slow" event blocks (live calls only) until
// released.
struct GateReducer {
  std::mutex mu;
  std::condition_variable cv;
  bool in_slow = false, release = false;
  std::string tag = "v1";
  std::function<void()> on_replay_call;  // test thread, during wf_saga_replay
  std::thread::id test_thread = std::this_thread::get_id();

  static int fn(void *user, const char *in, size_t len, wf_buf *out) {
    auto *r = static_cast<GateReducer *>(user);
    std::string tag;
    std::function<void()> hook;
    {
      std::lock_guard<std::mutex> g(r->mu);
      tag = r->tag;
      if (std::this_thread::get_id() == r->test_thread) std::swap(hook, r->on_replay_call);
    }
    if (hook) hook();
    json input = json::parse(std::string(in, len));
    json state = input["state"].is_null() ? json{{"events", json::array()}} : input["state"];
    std::string type = input["event"]["type"];
    if (type == "slow") {
      std::unique_lock<std::mutex> lk(r->mu);
      r->in_slow = true;
      r->cv.notify_all();
      r->cv.wait(lk, [&] { return r->release; });
    }
    state["events"].push_back(type);
    state["reducer"] = tag;
    json o{{"state", state}};
    std::string s = o.dump();
    return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
  }
};

}  // namespace

class ReplayRaceTest : public EngineTest {
 protected:
  GateReducer red;
  void SetUp() override {
    EngineTest::SetUp();
    open();
    ASSERT_EQ(WF_OK, wf_saga_register(e, "s", "{\"start\":[\"a\"],\"on\":[\"b\",\"slow\"]}",
                                      GateReducer::fn, &red));
    ASSERT_EQ(WF_OK, wf_start(e));
  }
  void submit(const std::string &id, const std::string &type) {
    json ev{{"event_id", id}, {"type", type}, {"correlation_id", "c"}};
    ASSERT_EQ(WF_OK, wf_submit(e, ev.dump().c_str())) << wf_last_error();
  }
  json get() {
    char *out = nullptr;
    if (wf_saga_get(e, "", "s", "c", &out) != WF_OK) return json::object();
    json j = json::parse(out);
    wf_free(out);
    return j;
  }
};

// A live step computed from the state before a committed replay must not
// overwrite the replayed state: its compare-and-set fails and it is computed
// again from the replayed state.
TEST_F(ReplayRaceTest, CommittedReplayWinsOverAStepInFlight) {
  submit("e1", "a");
  submit("e2", "b");
  ASSERT_TRUE(poll([&] { return get().value("version", 0) == 2; }));
  submit("e3", "slow");
  {
    std::unique_lock<std::mutex> lk(red.mu);
    ASSERT_TRUE(red.cv.wait_for(lk, std::chrono::seconds(30), [&] { return red.in_slow; }));
    red.tag = "v2";  // the upgraded reducer
  }
  // The live step holds version 2's state; the replay commits over it.
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_saga_replay(e, "", "s", "c", "{\"commit\":true}", &out)) << wf_last_error();
  wf_free(out);
  EXPECT_EQ("v2", get()["state"]["reducer"]);
  {
    std::lock_guard<std::mutex> g(red.mu);
    red.release = true;
    red.cv.notify_all();
  }
  ASSERT_TRUE(poll([&] { return get()["state"]["events"].size() == 3; })) << get().dump();
  sync();
  json g = get();
  // The slow event applied on top of the replayed state, not over it.
  EXPECT_EQ("v2", g["state"]["reducer"]) << g.dump();
  EXPECT_EQ(json({"a", "b", "slow"}), g["state"]["events"]);
  EXPECT_EQ(4, g["version"]);  // two events, the replay, the slow event
  EXPECT_EQ(0, g["pending"]);
}

// A step that commits while the replay runs makes the replay fail with
// WF_ECONFLICT and write nothing.
TEST_F(ReplayRaceTest, StepCommittedDuringReplayIsAConflict) {
  submit("e1", "a");
  ASSERT_TRUE(poll([&] { return get().value("version", 0) == 1; }));
  {
    std::lock_guard<std::mutex> g(red.mu);
    red.tag = "v2";
    red.on_replay_call = [&] {
      submit("e2", "b");
      ASSERT_TRUE(poll([&] { return get().value("version", 0) == 2; }));
    };
  }
  char *out = nullptr;
  EXPECT_EQ(WF_ECONFLICT, wf_saga_replay(e, "", "s", "c", "{\"commit\":true}", &out));
  EXPECT_EQ(nullptr, out);
  EXPECT_NE(std::string(wf_last_error()).find("changed during the replay"), std::string::npos);
  json g = get();
  EXPECT_EQ(2, g["version"]);
  EXPECT_EQ(json({"a", "b"}), g["state"]["events"]);
  EXPECT_STREQ("conflict: changed concurrently, retry", wf_strerror(WF_ECONFLICT));
}

// ---------------------------------------------------------- small ones

// Sink and logger outlive the engine (closed in TearDown), also when a test
// stops early.
class StatsFilterTest : public EngineTest {
 protected:
  Sink sink;
  LogCapture logs;
};

TEST_F(StatsFilterTest, UnknownKeysAreRefusedAndKnownOnesFilter) {
  open();
  char *out = nullptr;
  for (const char *f :
       {"{\"limit\":5}", "{\"ids\":[\"1\"]}", "{\"since\":0}", "{\"tenat\":\"a\"}"}) {
    EXPECT_EQ(WF_EINVAL, wf_stats(e, f, &out)) << f;
    EXPECT_EQ(nullptr, out);
    std::string key = json::parse(f).begin().key();
    EXPECT_NE(std::string(wf_last_error()).find("\"" + key + "\""), std::string::npos)
        << wf_last_error();
  }
  enqueue({{"effect", "mail"}, {"tenant", "a"}});
  enqueue({{"effect", "mail"}, {"tenant", "b"}});
  enqueue({{"effect", "sms"}, {"tenant", "a"}});
  ASSERT_EQ(WF_OK,
            wf_schedule(e,
                        "{\"key\":\"k\",\"tenant\":\"b\",\"delay_ms\":5000,\"job\":{\"effect\":"
                        "\"mail\"}}"));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "mail", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_effect_register(e, "sms", nullptr, Sink::cb, &sink));
  json a = stats("{\"tenant\":\"a\"}");
  EXPECT_EQ(2, a["outbox"]["ready"]);
  EXPECT_EQ(0, a["schedules"]["pending"]);
  json b = stats("{\"tenant\":\"b\"}");
  EXPECT_EQ(1, b["outbox"]["ready"]);
  EXPECT_EQ(1, b["schedules"]["pending"]);
  json m = stats("{\"effect\":\"mail\"}");
  EXPECT_EQ(2, m["outbox"]["ready"]);
  EXPECT_EQ(1u, m["engine"]["effects"].size());
  EXPECT_TRUE(m["engine"]["effects"].contains("mail"));
  json both = stats("{\"tenant\":\"a\",\"effect\":\"sms\"}");
  EXPECT_EQ(1, both["outbox"]["ready"]);
  EXPECT_EQ(3, stats("{}")["outbox"]["ready"]);
}

// Sink and logger outlive the engine (closed in TearDown), also when a test
// stops early.
class TimeLimitTest : public EngineTest {
 protected:
  Sink sink;
  LogCapture logs;
};

// docs/scheduler.md: a one-shot noticed more than 60 s late with catch_up
// "none" is dropped, however far in the past it was due.
TEST_F(TimeLimitTest, FarPastOneShotWithCatchUpNoneIsDropped) {
  open();
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  json s{{"key", "past"},
         {"at", INT64_MIN},
         {"catch_up", "none"},
         {"job", {{"effect", "x"}, {"key", "past-job"}}}};
  ASSERT_EQ(WF_OK, wf_schedule(e, s.dump().c_str())) << wf_last_error();
  json f{{"key", "future"}, {"at", INT64_MAX}, {"job", {{"effect", "x"}}}};
  ASSERT_EQ(WF_OK, wf_schedule(e, f.dump().c_str())) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(poll([&] { return stats()["schedules"]["pending"] == 1; })) << stats().dump();
  advance(1000);
  sync();
  json st = stats();
  EXPECT_EQ(0, pending());
  EXPECT_EQ(INT64_MAX, st["schedules"]["next_due_ms"].get<int64_t>());
  EXPECT_EQ(0u, sink.count());
}

// A retry delay at INT64_MAX used to overflow run_at into the past (the job
// ran again at once); it is capped instead.
TEST_F(TimeLimitTest, HugeRetryDelayDoesNotWrapAround) {
  open();
  sink.handler = [](wf_job *j) { EXPECT_EQ(WF_OK, wf_job_retry(j, "later", INT64_MAX)); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}});
  ASSERT_TRUE(sink.wait_count(1));
  sync();
  advance(1000);
  sync();
  json s = stats();
  EXPECT_EQ(1, s["outbox"]["scheduled"]) << s.dump();
  EXPECT_EQ(0, s["outbox"]["ready"]);
  EXPECT_EQ(1u, sink.count());
}

TEST(TimeLimits, SaturatingArithmetic) {
  struct Case {
    int64_t a, b, sum, diff;
  };
  std::vector<Case> cases = {
      {1, 2, 3, -1},
      {INT64_MAX, 1, INT64_MAX, INT64_MAX - 1},
      {INT64_MIN, -1, INT64_MIN, INT64_MIN + 1},
      {INT64_MIN, 1, INT64_MIN + 1, INT64_MIN},
      {0, INT64_MIN, INT64_MIN, INT64_MAX},
      {1700000000000, INT64_MIN, INT64_MIN + 1700000000000, INT64_MAX},
      {-1700000000000, INT64_MAX, INT64_MAX - 1700000000000, INT64_MIN},
  };
  for (auto &c : cases) {
    EXPECT_EQ(c.sum, wf::sat_add(c.a, c.b)) << c.a << " + " << c.b;
    EXPECT_EQ(c.diff, wf::sat_sub(c.a, c.b)) << c.a << " - " << c.b;
  }
}

TEST(TimeLimits, FiringPlanAtTheLimits) {
  const int64_t now = 1700000000000;
  struct Case {
    const char *catch_up;
    int64_t due, now;
    std::vector<int64_t> fires;
  };
  std::vector<Case> one_shot = {
      {"none", INT64_MIN, now, {}},
      {"none", INT64_MIN, INT64_MAX, {}},
      {"none", now - 60001, now, {}},
      {"none", now - 60000, now, {now - 60000}},
      {"latest", INT64_MIN, now, {INT64_MIN}},
      {"all", INT64_MIN, INT64_MIN, {INT64_MIN}},
      {"none", INT64_MAX, INT64_MAX, {INT64_MAX}},
      {"none", INT64_MAX, INT64_MIN, {INT64_MAX}},  // "late" by a negative amount
  };
  for (auto &c : one_shot) {
    wf::FirePlan p = wf::plan_firing(nullptr, c.catch_up, 100, c.due, c.now);
    EXPECT_EQ(c.fires, p.fires) << c.catch_up << " " << c.due << " " << c.now;
    EXPECT_EQ(INT64_MAX, p.next);
  }
  wf::Cron yearly = wf::Cron::parse("0 0 1 1 *", "UTC");
  // Due at the far past: the scan from year 1 ends in the future.
  wf::FirePlan p = wf::plan_firing(&yearly, "latest", 100, INT64_MIN, now);
  ASSERT_EQ(1u, p.fires.size());
  EXPECT_EQ(wf::parse_rfc3339("2023-01-01T00:00:00Z"), p.fires[0]);
  EXPECT_EQ(wf::parse_rfc3339("2024-01-01T00:00:00Z"), p.next);
  p = wf::plan_firing(&yearly, "none", 100, INT64_MIN, now);
  EXPECT_TRUE(p.fires.empty());
  EXPECT_EQ(wf::parse_rfc3339("2024-01-01T00:00:00Z"), p.next);
  p = wf::plan_firing(&yearly, "all", 3, INT64_MIN, now);
  EXPECT_EQ(3u, p.fires.size());
  // Nothing after year 9999: the schedule ends.
  p = wf::plan_firing(&yearly, "latest", 100, wf::parse_rfc3339("9999-01-01T00:00:00Z"), INT64_MAX);
  EXPECT_EQ(1u, p.fires.size());
  EXPECT_EQ(INT64_MAX, p.next);
}

TEST(TimeLimits, DocumentTimesAtTheLimits) {
  wf::Options opt;
  const int64_t big = INT64_C(1) << 62;
  wf::json job{{"effect", "x"}, {"delay_ms", INT64_C(1) << 45}};
  EXPECT_EQ(big + (INT64_C(1) << 45), wf::decode_job(job, opt, big, "job").run_at);
  EXPECT_EQ(INT64_MAX, wf::decode_job(job, opt, INT64_MAX - 5, "job").run_at);
  wf::json sched{{"key", "k"}, {"delay_ms", INT64_C(1) << 45}, {"job", {{"effect", "x"}}}};
  EXPECT_EQ(INT64_MAX, wf::decode_schedule(sched, opt, INT64_MAX - 5, "s").next_due);
  wf::json at{{"key", "k"}, {"at", INT64_MIN}, {"job", {{"effect", "x"}}}};
  EXPECT_EQ(INT64_MIN, wf::decode_schedule(at, opt, 0, "s").next_due);
}
