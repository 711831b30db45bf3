// Payload encryption at rest (AES-256-GCM via mbedTLS).
#include <mbedtls/base64.h>
#include <sqlite3.h>

#include <fstream>
#include <set>
#include <sstream>

#include "helpers.h"

using namespace wft;

namespace {
const char *kKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const char *kOtherKey = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

std::string opts(const char *key) {
  return std::string("{\"durability\":\"normal\",\"encryption_key\":\"") + key + "\"}";
}

int reducer(void *, const char *in, size_t len, wf_buf *out) {
  json input = json::parse(std::string(in, len));
  json o{{"state", {{"secret", input["event"]["payload"]["secret"]}}}, {"done", false}};
  std::string s = o.dump();
  return wf_buf_set(out, s.data(), s.size());
}
}  // namespace

TEST_F(EngineTest, EncryptedPayloadsAreUnreadableInTheFile) {
  struct Log {
    std::mutex mu;
    std::string all;
    static void fn(void *u, int, const char *line) {
      auto *l = static_cast<Log *>(u);
      std::lock_guard<std::mutex> g(l->mu);
      l->all += line;
    }
  } log;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts(kKey).c_str(), &e)) << wf_last_error();
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_DEBUG, Log::fn, &log));
  ASSERT_EQ(WF_OK, wf_saga_register(e, "s", "{\"start\":[\"go\"]}", reducer, nullptr));
  enqueue({{"effect", "x"}, {"payload", {{"card", "SECRET-JOB-4111"}}}});
  ASSERT_EQ(WF_OK, wf_submit(e,
                             "{\"event_id\":\"e1\",\"type\":\"go\",\"correlation_id\":\"c\","
                             "\"payload\":{\"secret\":\"SECRET-EVENT-77\"}}"));
  ASSERT_EQ(WF_OK, wf_schedule(e,
                               "{\"key\":\"k\",\"delay_ms\":3600000,\"job\":{\"effect\":\"x\","
                               "\"payload\":\"SECRET-SCHEDULE-9\"}}"));
  ASSERT_EQ(WF_OK, wf_start(e));
  char *out = nullptr;
  for (int i = 0; i < 2000; ++i) {
    if (wf_saga_get(e, "", "s", "c", &out) == WF_OK) break;
    Sink idle;
    idle.wait([] { return false; }, 5);
  }
  ASSERT_NE(nullptr, out) << "saga step never committed";
  EXPECT_EQ("SECRET-EVENT-77", json::parse(out)["state"]["secret"]);
  wf_free(out);
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  std::string bytes = slurp(path) + slurp(path + "-wal");
  for (const char *marker : {"SECRET-JOB", "SECRET-EVENT", "SECRET-SCHEDULE"})
    EXPECT_EQ(std::string::npos, bytes.find(marker)) << marker << " readable in the file";
  EXPECT_EQ(std::string::npos, log.all.find(kKey)) << "key in the logs";

  // Reopened with the key, the job's payload is intact.
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts(kKey).c_str(), &e)) << wf_last_error();
  Sink s;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(1));
  EXPECT_EQ("SECRET-JOB-4111", s.seen[0]["payload"]["card"]);
}

TEST_F(EngineTest, WrongOrMissingKeyIsAClearError) {
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts(kKey).c_str(), &e));
  enqueue({{"effect", "x"}, {"payload", "p"}});
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  wf_engine *x = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), opts(kOtherKey).c_str(), &x));
  EXPECT_NE(std::string(wf_last_error()).find("does not match"), std::string::npos)
      << wf_last_error();
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{\"durability\":\"normal\"}", &x));
  EXPECT_NE(std::string(wf_last_error()).find("encrypted"), std::string::npos) << wf_last_error();
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), opts("abc").c_str(), &x));
  EXPECT_NE(std::string(wf_last_error()).find("64 hex"), std::string::npos);
  EXPECT_EQ(nullptr, x);
}

TEST_F(EngineTest, NoncesNeverRepeat) {
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts(kKey).c_str(), &e));
  std::string batch = "[";
  for (int i = 0; i < 2000; ++i)
    batch += std::string(i ? "," : "") + "{\"effect\":\"x\",\"payload\":\"same\"}";
  batch += "]";
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, batch.c_str(), nullptr));
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(path.c_str(), &db));
  sqlite3_stmt *st = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, "SELECT payload FROM wf_jobs", -1, &st, nullptr));
  std::set<std::string> nonces, blobs;
  int rows = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    std::string v = reinterpret_cast<const char *>(sqlite3_column_text(st, 0));
    ASSERT_EQ(0u, v.rfind("wfenc1:", 0)) << v;
    unsigned char raw[256];
    size_t n = 0;
    ASSERT_EQ(0, mbedtls_base64_decode(raw, sizeof raw, &n,
                                       reinterpret_cast<const unsigned char *>(v.data() + 7),
                                       v.size() - 7));
    ASSERT_GE(n, 12u + 16u);
    nonces.insert(std::string(reinterpret_cast<char *>(raw), 12));
    blobs.insert(v);
    ++rows;
  }
  sqlite3_finalize(st);
  EXPECT_EQ(2000, rows);
  EXPECT_EQ(2000u, nonces.size()) << "a nonce was reused";
  EXPECT_EQ(2000u, blobs.size());
  sqlite3_close(db);
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts(kKey).c_str(), &e));
  Sink s;
  std::atomic<int> got{0};
  s.handler = [&](wf_job *j) {
    got++;
    wf_job_complete(j, nullptr);
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(2000));
  for (auto &r : s.seen) EXPECT_EQ("same", r["payload"]);
}

TEST_F(EngineTest, TamperedCiphertextFailsAuthentication) {
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts(kKey).c_str(), &e));
  Sink s;
  s.handler = [](wf_job *j) { wf_job_fail(j, "nope"); };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  ASSERT_EQ(WF_OK, wf_start(e));
  enqueue({{"effect", "x"}, {"payload", "a payload long enough to tamper with"}});
  ASSERT_TRUE(s.wait_count(1));
  sync();
  EXPECT_EQ(1u, dead().size());
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(path.c_str(), &db));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db,
                                    "UPDATE wf_dead SET payload = substr(payload, 1, 20) || "
                                    "CASE substr(payload, 21, 1) WHEN 'A' THEN 'B' ELSE 'A' END || "
                                    "substr(payload, 22)",
                                    nullptr, nullptr, nullptr));
  sqlite3_close(db);
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), opts(kKey).c_str(), &e));
  char *out = nullptr;
  EXPECT_EQ(WF_ECORRUPT, wf_dead_list(e, nullptr, &out));
  EXPECT_NE(std::string(wf_last_error()).find("cannot decrypt"), std::string::npos)
      << wf_last_error();
}
