// The read API (wf_jobs_list, wf_job_get, wf_schedules_list, wf_sagas_list,
// wf_saga_show, wf_events_list, wf_engines_list, wf_check, wf_backup) and
// the read_only open: filters, paging cursors, bad filters, refusals.
#include <set>

#include "helpers.h"

using namespace wft;

namespace {

using ListFn = int (*)(wf_engine *, const char *, char **);

json call(wf_engine *e, ListFn fn, const json &filter) {
  char *out = nullptr;
  std::string f = filter.dump();
  int rc = fn(e, f.c_str(), &out);
  EXPECT_EQ(WF_OK, rc) << wf_last_error() << " filter " << f;
  json j = out ? json::parse(out) : json();
  wf_free(out);
  return j;
}

// Every page of a listing, following next_cursor.
json all_pages(wf_engine *e, ListFn fn, json filter, const char *field, int *pages = nullptr) {
  json items = json::array();
  int n = 0;
  for (;;) {
    json page = call(e, fn, filter);
    ++n;
    for (auto &x : page[field]) items.push_back(x);
    if (page["next_cursor"].is_null()) break;
    filter["cursor"] = page["next_cursor"];
    if (n > 1000) break;
  }
  if (pages) *pages = n;
  return items;
}

int reducer(void *, const char *, size_t, wf_buf *out) {
  json o{{"state", {{"n", 1}}}, {"commands", json::array()}, {"done", false}};
  std::string s = o.dump();
  return wf_buf_set(out, s.data(), s.size());
}

}  // namespace

TEST_F(EngineTest, JobsListFiltersAndPages) {
  open();
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i)
    ids.push_back(enqueue({{"effect", i % 2 ? "mail" : "charge"},
                           {"tenant", i < 4 ? "acme" : "globex"},
                           {"key", "k" + std::to_string(i)},
                           {"payload", {{"i", i}}}}));
  std::string later = enqueue({{"effect", "mail"}, {"delay_ms", 60000}, {"payload", "x"}});

  int pages = 0;
  json all = all_pages(e, wf_jobs_list, {{"limit", 3}}, "jobs", &pages);
  ASSERT_EQ(8u, all.size());
  EXPECT_EQ(3, pages);
  std::set<std::string> seen;
  for (size_t i = 0; i < all.size(); ++i) {
    seen.insert(all[i]["id"].get<std::string>());
    if (i > 0) {
      EXPECT_LT(std::stoll(all[i - 1]["id"].get<std::string>()),
                std::stoll(all[i]["id"].get<std::string>()));
    }
  }
  EXPECT_EQ(8u, seen.size());
  EXPECT_EQ(json({{"i", 0}}), all[0]["payload"]);
  EXPECT_EQ("ready", all[0]["state"]);

  EXPECT_EQ(4u, call(e, wf_jobs_list, {{"tenant", "acme"}})["jobs"].size());
  EXPECT_EQ(4u, call(e, wf_jobs_list, {{"effect", "charge"}})["jobs"].size());
  json k = call(e, wf_jobs_list, {{"tenant", "globex"}, {"key", "k5"}})["jobs"];
  ASSERT_EQ(1u, k.size());
  EXPECT_EQ(ids[5], k[0]["id"]);
  json sch = call(e, wf_jobs_list, {{"state", "scheduled"}})["jobs"];
  ASSERT_EQ(1u, sch.size());
  EXPECT_EQ(later, sch[0]["id"]);
  EXPECT_EQ(7u, call(e, wf_jobs_list, {{"state", "ready"}})["jobs"].size());
  EXPECT_EQ(8u, call(e, wf_jobs_list, {{"state", "pending"}})["jobs"].size());
  EXPECT_EQ(0u, call(e, wf_jobs_list, {{"state", "running"}})["jobs"].size());
  // created_at window (the injected clock is the creation time).
  EXPECT_EQ(8u, call(e, wf_jobs_list, {{"since", clock.now.load()}})["jobs"].size());
  EXPECT_EQ(0u, call(e, wf_jobs_list, {{"until", clock.now.load()}})["jobs"].size());
  EXPECT_EQ(0u, call(e, wf_jobs_list, {{"since", "2100-01-01T00:00:00Z"}})["jobs"].size());

  // One job: by id in any tenant, by key in its tenant.
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_job_get(e, nullptr, ids[5].c_str(), &out)) << wf_last_error();
  json j = json::parse(out);
  wf_free(out);
  EXPECT_EQ("globex", j["tenant"]);
  EXPECT_TRUE(j["history"].is_array());
  ASSERT_EQ(WF_OK, wf_job_get(e, "acme", "k2", &out)) << wf_last_error();
  EXPECT_EQ(ids[2], json::parse(out)["id"]);
  wf_free(out);
  EXPECT_EQ(WF_ENOTFOUND, wf_job_get(e, "acme", "k5", &out));
  EXPECT_EQ(nullptr, out);
  EXPECT_EQ(WF_ENOTFOUND, wf_job_get(e, nullptr, "999999", &out));
  EXPECT_EQ(WF_EINVAL, wf_job_get(e, nullptr, "", &out));
  EXPECT_EQ(WF_EINVAL, wf_job_get(e, nullptr, "1", nullptr));
}

TEST_F(EngineTest, ReadApiRejectsBadFiltersNamingTheKey) {
  open();
  enqueue({{"effect", "x"}});
  struct Case {
    ListFn fn;
    const char *filter;
    const char *names;
  };
  const Case cases[] = {
      {wf_jobs_list, "{\"bogus\":1}", "bogus"},
      {wf_jobs_list, "{\"state\":\"sleeping\"}", "state"},
      {wf_jobs_list, "{\"limit\":0}", "limit"},
      {wf_jobs_list, "{\"limit\":100000}", "limit"},
      {wf_jobs_list, "{\"limit\":\"5\"}", "limit"},
      {wf_jobs_list, "{\"cursor\":\"nonsense\"}", "cursor"},
      {wf_jobs_list, "{\"cursor\":\"[\\\"a\\\"]\"}", "cursor"},
      {wf_jobs_list, "{\"since\":\"yesterday\"}", "since"},
      {wf_jobs_list, "{\"tenant\":5}", "tenant"},
      {wf_jobs_list, "[1]", "object"},
      {wf_jobs_list, "{oops", "filter"},
      {wf_schedules_list, "{\"status\":\"sleeping\"}", "status"},
      {wf_schedules_list, "{\"cursor\":\"[1]\"}", "cursor"},
      {wf_schedules_list, "{\"effect\":\"x\"}", "effect"},
      {wf_sagas_list, "{\"status\":\"zzz\"}", "status"},
      {wf_sagas_list, "{\"type\":\"x\"}", "type"},
      {wf_events_list, "{\"status\":\"lost\"}", "status"},
      {wf_events_list, "{\"saga\":\"x\"}", "saga"},
      {wf_check, "{\"quick\":1}", "quick"},
  };
  for (const auto &c : cases) {
    char *out = nullptr;
    EXPECT_EQ(WF_EINVAL, c.fn(e, c.filter, &out)) << c.filter;
    EXPECT_EQ(nullptr, out);
    EXPECT_NE(std::string(wf_last_error()).find(c.names), std::string::npos)
        << c.filter << ": " << wf_last_error();
  }
  // NULL and "{}" are no filter.
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_jobs_list(e, nullptr, &out));
  wf_free(out);
  ASSERT_EQ(WF_OK, wf_jobs_list(e, "{}", &out));
  wf_free(out);
  EXPECT_EQ(WF_EINVAL, wf_jobs_list(e, nullptr, nullptr));
}

TEST_F(EngineTest, SchedulesSagasAndEventsAreListed) {
  open();
  ASSERT_EQ(WF_OK,
            wf_saga_register(e, "order", "{\"start\":[\"order.placed\"]}", reducer, nullptr));
  for (int i = 0; i < 5; ++i) {
    json s{{"key", "s" + std::to_string(i)},
           {"delay_ms", 60000 + i},
           {"job", {{"effect", "x"}, {"payload", {{"i", i}}}}}};
    ASSERT_EQ(WF_OK, wf_schedule(e, s.dump().c_str())) << wf_last_error();
  }
  for (int i = 0; i < 3; ++i) {
    json ev{{"event_id", "e" + std::to_string(i)},
            {"type", "order.placed"},
            {"correlation_id", "o" + std::to_string(i)},
            {"payload", {{"n", i}}}};
    ASSERT_EQ(WF_OK, wf_submit(e, ev.dump().c_str())) << wf_last_error();
  }
  ASSERT_EQ(WF_OK, wf_submit(e, "{\"event_id\":\"u1\",\"type\":\"nobody.cares\"}"));

  int pages = 0;
  json sc = all_pages(e, wf_schedules_list, {{"limit", 2}}, "schedules", &pages);
  ASSERT_EQ(5u, sc.size());
  EXPECT_EQ(3, pages);
  EXPECT_EQ("s0", sc[0]["key"]);
  EXPECT_EQ("active", sc[0]["status"]);
  EXPECT_EQ(json({{"i", 0}}), sc[0]["job"]["payload"]);
  EXPECT_EQ(1u, call(e, wf_schedules_list, {{"key", "s3"}})["schedules"].size());
  EXPECT_EQ(0u, call(e, wf_schedules_list, {{"status", "parked"}})["schedules"].size());
  EXPECT_EQ(0u, call(e, wf_schedules_list, {{"tenant", "other"}})["schedules"].size());

  // Not started: the events wait in the instances' inboxes.
  json sg = all_pages(e, wf_sagas_list, {{"limit", 2}}, "sagas", &pages);
  ASSERT_EQ(3u, sg.size());
  EXPECT_EQ(2, pages);
  EXPECT_EQ("new", sg[0]["status"]);
  EXPECT_EQ(1, sg[0]["pending"]);
  EXPECT_EQ(1u, call(e, wf_sagas_list, {{"correlation_id", "o1"}})["sagas"].size());
  EXPECT_EQ(3u, call(e, wf_sagas_list, {{"status", "new"}})["sagas"].size());
  EXPECT_EQ(0u, call(e, wf_sagas_list, {{"status", "done"}})["sagas"].size());

  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_saga_show(e, nullptr, "order", "o1", &out)) << wf_last_error();
  json show = json::parse(out);
  wf_free(out);
  ASSERT_EQ(1u, show["pending"].size());
  EXPECT_EQ("e1", show["pending"][0]["event_id"]);
  EXPECT_EQ(1, show["pending"][0]["event"]["payload"]["n"]);
  EXPECT_EQ(WF_ENOTFOUND, wf_saga_show(e, nullptr, "order", "nope", &out));
  EXPECT_EQ(WF_EINVAL, wf_saga_show(e, nullptr, nullptr, "o1", &out));

  json ev = all_pages(e, wf_events_list, {{"limit", 3}}, "events", &pages);
  ASSERT_EQ(4u, ev.size());
  EXPECT_EQ(2, pages);
  EXPECT_EQ("pending", ev[0]["status"]);
  json um = call(e, wf_events_list, {{"status", "unmatched"}})["events"];
  ASSERT_EQ(1u, um.size());
  EXPECT_EQ("u1", um[0]["event_id"]);
  EXPECT_EQ(3u, call(e, wf_events_list, {{"type", "order.placed"}})["events"].size());
  EXPECT_EQ(0u, call(e, wf_events_list, {{"status", "applied"}})["events"].size());
}

TEST_F(EngineTest, DeadAndCompletedJobsAreShown) {
  open("{\"durability\":\"normal\",\"dedupe_window_ms\":600000}", false);
  Sink s;
  s.handler = [](wf_job *j) {
    if (std::string(wf_job_key(j)) == "bad")
      EXPECT_EQ(WF_OK, wf_job_fail(j, "declined"));
    else
      EXPECT_EQ(WF_OK, wf_job_complete(j, nullptr));
  };
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &s));
  std::string bad = enqueue({{"effect", "x"}, {"key", "bad"}});
  std::string good = enqueue({{"effect", "x"}, {"key", "good"}});
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(s.wait_count(2));
  sync();
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_job_get(e, nullptr, bad.c_str(), &out)) << wf_last_error();
  json d = json::parse(out);
  wf_free(out);
  EXPECT_EQ("dead", d["state"]);
  EXPECT_EQ("declined", d["reason"]);
  ASSERT_EQ(1u, d["history"].size());
  ASSERT_EQ(WF_OK, wf_job_get(e, "", "good", &out)) << wf_last_error();
  json c = json::parse(out);
  wf_free(out);
  EXPECT_EQ("completed", c["state"]);
  EXPECT_EQ(good, c["id"]);
  json dl = call(e, wf_jobs_list, {{"state", "dead"}})["jobs"];
  ASSERT_EQ(1u, dl.size());
  EXPECT_EQ(bad, dl[0]["id"]);
  EXPECT_EQ(0u, call(e, wf_jobs_list, json::object())["jobs"].size());

  // This engine, live, with the effect it registered.
  ASSERT_EQ(WF_OK, wf_engines_list(e, &out));
  json en = json::parse(out)["engines"];
  wf_free(out);
  ASSERT_EQ(1u, en.size());
  EXPECT_TRUE(en[0]["live"].get<bool>());
  EXPECT_EQ(json::array({"x"}), en[0]["effects"]);
}

TEST_F(EngineTest, ReadOnlyOpenRefusesWhatItCannotRead) {
  wf_engine *r = nullptr;
  // A missing file: not created.
  EXPECT_EQ(WF_ENOTFOUND, wf_open(path.c_str(), "{\"read_only\":true}", &r));
  EXPECT_NE(std::string(wf_last_error()).find("never creates"), std::string::npos)
      << wf_last_error();
  EXPECT_EQ(nullptr, r);
  struct stat st;
  EXPECT_NE(0, stat(path.c_str(), &st));
  EXPECT_EQ(WF_EINVAL, wf_open(path.c_str(), "{\"read_only\":1}", &r));
  EXPECT_NE(std::string(wf_last_error()).find("read_only"), std::string::npos);

  // Not a SQLite file.
  std::string junk = dir + "/junk.db";
  FILE *f = std::fopen(junk.c_str(), "w");
  std::fputs("this is not a database, not even close to one, at all ..........", f);
  std::fclose(f);
  EXPECT_EQ(WF_ECORRUPT, wf_open(junk.c_str(), "{\"read_only\":true}", &r));
  // A SQLite database without the engine's tables.
  std::string other = dir + "/other.db";
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(other.c_str(), &db));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr));
  sqlite3_close(db);
  EXPECT_EQ(WF_ECORRUPT, wf_open(other.c_str(), "{\"read_only\":true}", &r));
  EXPECT_NE(std::string(wf_last_error()).find("not a wfengine database"), std::string::npos)
      << wf_last_error();
  EXPECT_EQ(1, count_rows(other, "SELECT count(*) FROM sqlite_schema"));

  // A newer schema.
  open();
  enqueue({{"effect", "x"}});
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(path.c_str(), &db));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, "UPDATE wf_meta SET v = '999' WHERE k = 'schema_version'",
                                    nullptr, nullptr, nullptr));
  sqlite3_close(db);
  EXPECT_EQ(WF_ECORRUPT, wf_open(path.c_str(), "{\"read_only\":true}", &r));
  EXPECT_NE(std::string(wf_last_error()).find("newer"), std::string::npos) << wf_last_error();
}

TEST_F(EngineTest, ReadOnlyEngineReadsBesideAWriterAndRefusesWrites) {
  open();
  std::string id = enqueue({{"effect", "x"}, {"payload", {{"a", 1}}}});
  wf_engine *r = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"read_only\":true}", &r)) << wf_last_error();
  json jobs = call(r, wf_jobs_list, json::object())["jobs"];
  ASSERT_EQ(1u, jobs.size());
  EXPECT_EQ(id, jobs[0]["id"]);
  // The writer goes on; the reader sees its commits.
  enqueue({{"effect", "x"}});
  EXPECT_EQ(2u, call(r, wf_jobs_list, json::object())["jobs"].size());
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_stats(r, nullptr, &out));
  EXPECT_EQ(2, json::parse(out)["outbox"]["ready"]);
  wf_free(out);
  ASSERT_EQ(WF_OK, wf_engines_list(r, &out));
  json en = json::parse(out)["engines"];
  wf_free(out);
  ASSERT_EQ(1u, en.size());
  EXPECT_TRUE(en[0]["live"].get<bool>()) << en.dump();

  // Writes are refused, clearly.
  EXPECT_EQ(WF_ESTATE, wf_enqueue(r, "{\"effect\":\"x\"}", nullptr));
  EXPECT_NE(std::string(wf_last_error()).find("read_only"), std::string::npos);
  EXPECT_EQ(WF_ESTATE, wf_submit(r, "{\"event_id\":\"a\",\"type\":\"t\"}"));
  EXPECT_EQ(WF_ESTATE, wf_schedule(r, "{\"key\":\"k\",\"delay_ms\":5,\"job\":{\"effect\":\"x\"}}"));
  EXPECT_EQ(WF_ESTATE, wf_dead_purge(r, nullptr, nullptr));
  EXPECT_EQ(WF_ESTATE, wf_dead_requeue(r, nullptr, nullptr));
  EXPECT_EQ(WF_ESTATE, wf_cancel(r, nullptr, id.c_str()));
  EXPECT_EQ(WF_ESTATE, wf_start(r));
  wf_tx *tx = nullptr;
  EXPECT_EQ(WF_ESTATE, wf_tx_begin(r, &tx));
  EXPECT_EQ(WF_ESTATE, wf_enqueue_async(r, "{\"effect\":\"x\"}", nullptr, nullptr));
  EXPECT_EQ(WF_OK, wf_sync(r));
  EXPECT_EQ(WF_OK, wf_close(r));
  EXPECT_EQ(2, pending());
}

TEST_F(EngineTest, BackupIsAConsistentCopyAndNeverOverwrites) {
  open();
  for (int i = 0; i < 20; ++i) enqueue({{"effect", "x"}, {"payload", {{"i", i}}}});
  std::string copy = dir + "/copy.db";
  ASSERT_EQ(WF_OK, wf_backup(e, copy.c_str())) << wf_last_error();
  struct stat st;
  ASSERT_EQ(0, stat(copy.c_str(), &st));
  EXPECT_EQ(0600u, st.st_mode & 0777);
  EXPECT_EQ(WF_EEXIST, wf_backup(e, copy.c_str()));
  EXPECT_EQ(WF_EINVAL, wf_backup(e, ""));
  wf_engine *r = nullptr;
  ASSERT_EQ(WF_OK, wf_open(copy.c_str(), "{\"read_only\":true}", &r)) << wf_last_error();
  EXPECT_EQ(20u, all_pages(r, wf_jobs_list, json::object(), "jobs").size());
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_check(r, nullptr, &out));
  EXPECT_TRUE(json::parse(out)["ok"].get<bool>()) << out;
  wf_free(out);
  EXPECT_EQ(WF_OK, wf_close(r));
  // A read-only engine backs up too.
  std::string copy2 = dir + "/copy2.db";
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"read_only\":true}", &r));
  EXPECT_EQ(WF_OK, wf_backup(r, copy2.c_str())) << wf_last_error();
  EXPECT_EQ(WF_OK, wf_close(r));
  EXPECT_EQ(20, count_rows(copy2, "SELECT count(*) FROM wf_jobs"));
}

TEST_F(EngineTest, CheckFindsCountsThatDisagreeWithRows) {
  open();
  enqueue({{"effect", "x"}, {"tenant", "t"}});
  char *out = nullptr;
  ASSERT_EQ(WF_OK, wf_check(e, nullptr, &out));
  json ok = json::parse(out);
  wf_free(out);
  EXPECT_TRUE(ok["ok"].get<bool>()) << ok.dump();
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  sqlite3 *db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(path.c_str(), &db));
  ASSERT_EQ(SQLITE_OK,
            sqlite3_exec(db, "UPDATE wf_job_counts SET pending = 5", nullptr, nullptr, nullptr));
  sqlite3_close(db);
  wf_engine *r = nullptr;
  ASSERT_EQ(WF_OK, wf_open(path.c_str(), "{\"read_only\":true}", &r));
  ASSERT_EQ(WF_OK, wf_check(r, "{\"quick\":true}", &out));
  json bad = json::parse(out);
  wf_free(out);
  EXPECT_FALSE(bad["ok"].get<bool>());
  std::set<std::string> checks;
  for (auto &p : bad["problems"]) checks.insert(p["check"].get<std::string>());
  EXPECT_TRUE(checks.count("job_counts")) << bad.dump();
  EXPECT_EQ(WF_OK, wf_close(r));
}
