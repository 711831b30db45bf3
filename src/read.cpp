// The read API (wf_jobs_list, wf_job_get, wf_schedules_list, wf_sagas_list,
// wf_saga_show, wf_events_list, wf_engines_list, wf_check, wf_backup) and
// the read_only open. Every read runs in one read transaction on the API
// read connection (Engine::api_db under api_mu): a WAL snapshot, never the
// writer, never a lease; usable while another process runs the engine.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "outbox.h"

namespace wf {

const char *const kReadOnlyRefusal =
    "the engine was opened with {\"read_only\": true}: it only reads (open it without "
    "read_only to change anything)";

void Engine::open_read_only() {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    fail(WF_ENOTFOUND, "cannot open \"" + path + "\" read-only: " +
                           std::error_code(errno, std::generic_category()).message() +
                           " (read_only never creates a database)");
  if (!S_ISREG(st.st_mode)) fail(WF_EINVAL, "cannot open \"" + path + "\": not a regular file");
  api_db = std::make_unique<Db>(path, true, opt.busy_timeout_ms, opt.vfs);
  api_db->exec("PRAGMA trusted_schema=OFF");
  SchemaState s = inspect_schema(*api_db, path);
  if (s.version == 0)
    fail(WF_ECORRUPT,
         "cannot use \"" + path + "\": it is not a wfengine database (no wfengine tables in it)");
  if (s.version < kSchemaVersion)
    fail(WF_EUNSUPPORTED, "cannot read \"" + path + "\" read-only: its wfengine schema version " +
                              std::to_string(s.version) + " is older than this library's (" +
                              std::to_string(kSchemaVersion) +
                              "); open it once read-write with this release to migrate it");
  if (!opt.encryption_key.empty()) cipher = Cipher::from_hex(opt.encryption_key);
  opt.encryption_key.assign(opt.encryption_key.size(), '0');
  opt.encryption_key.clear();
  check_encryption_key();
  log(WF_LOG_DEBUG, "engine opened read-only", json{{"path", path}});
}

namespace {

constexpr int64_t kDefaultLimit = 100;
constexpr int64_t kMaxLimit = 10000;

// One read transaction on the API connection.
template <typename F>
std::string read_txn(Engine &e, F &&f) {
  std::lock_guard<std::mutex> g(e.api_mu);
  Db &db = *e.api_db;
  db.exec("BEGIN");
  json out;
  try {
    out = f(db);
    db.exec("COMMIT");
  } catch (...) {
    if (db.in_txn()) db.exec("ROLLBACK");
    throw;
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

json parse_or_text(const std::string &s) {
  json v = json::parse(s, nullptr, false);
  return v.is_discarded() ? json(s) : v;
}

json text_or_null(Stmt &st, int i) { return st.col_null(i) ? json(nullptr) : json(st.col_text(i)); }
json int_or_null(Stmt &st, int i) { return st.col_null(i) ? json(nullptr) : json(st.col_int(i)); }

json parse_filter_doc(Engine &e, const char *filter_json, const char *what) {
  if (!filter_json || !*filter_json) return json::object();
  json doc = parse_json(filter_json, e.opt.limits, what, 1 << 16);
  if (!doc.is_object()) fail(WF_EINVAL, std::string(what) + ": must be a JSON object");
  return doc;
}

std::optional<std::string> opt_string(const json &doc, const char *key, const char *what) {
  if (!doc.contains(key) || doc[key].is_null()) return std::nullopt;
  return get_string(doc, key, what, true);
}

std::optional<int64_t> opt_time(const json &doc, const char *key, const char *what) {
  if (!doc.contains(key) || doc[key].is_null()) return std::nullopt;
  return get_time(doc, key, what, 0);
}

std::optional<std::string> opt_enum(const json &doc, const char *key, const char *what,
                                    std::initializer_list<const char *> allowed) {
  auto v = opt_string(doc, key, what);
  if (!v) return v;
  std::string list;
  for (const char *a : allowed) {
    if (*v == a) return v;
    list += list.empty() ? "" : ", ";
    list += a;
  }
  fail(WF_EINVAL,
       std::string(what) + ": \"" + key + "\" must be one of " + list + ", not \"" + *v + "\"");
}

int64_t get_limit(const json &doc, const char *what) {
  return get_int(doc, "limit", what, kDefaultLimit, 1, kMaxLimit);
}

// Cursors are opaque strings; inside, a JSON array of the last row's key.
json get_cursor(const json &doc, const char *what, size_t parts) {
  auto c = opt_string(doc, "cursor", what);
  if (!c) return json();
  json v = json::parse(*c, nullptr, false);
  bool ok = v.is_array() && v.size() == parts;
  if (ok)
    for (auto &x : v) ok = ok && (x.is_string() || x.is_number_integer());
  if (!ok)
    fail(WF_EINVAL,
         std::string(what) + ": \"cursor\" is not a cursor of this listing (pass next_cursor)");
  return v;
}

// A listing ordered by one integer (job id, event seq): the value to resume
// after (0 without a cursor).
int64_t get_seq_cursor(const json &doc, const char *what) {
  json cur = get_cursor(doc, what, 1);
  if (cur.is_null()) return 0;
  if (!cur[0].is_number_integer())
    fail(WF_EINVAL, std::string(what) + ": \"cursor\" is not a cursor of this listing");
  return cur[0].get<int64_t>();
}

void bind_opt(Stmt &st, int i, const std::optional<std::string> &v) {
  if (v) st.bind(i, *v);
}
void bind_opt(Stmt &st, int i, const std::optional<int64_t> &v) {
  if (v) st.bind(i, *v);
}

// Steps `st` (its LIMIT bound to limit + 1) into one page of a listing:
// {list: [items], "next_cursor": the last item's cursor, or null on the last
// page}. `row(cursor)` makes the current row's item and sets `cursor` to the
// JSON array that resumes after it.
template <class F>
json page(Stmt &st, int64_t limit, const char *list, F &&row) {
  json items = json::array();
  json last;
  bool more = false;
  while (st.step()) {
    if (static_cast<int64_t>(items.size()) == limit) {
      more = true;
      break;
    }
    items.push_back(row(last));
  }
  st.reset();
  json out;
  out[list] = std::move(items);
  out["next_cursor"] = more ? json(last.dump()) : json(nullptr);
  return out;
}

std::string job_state_name(int64_t state, int64_t run_at, int64_t now) {
  if (state == 1) return "running";
  return run_at > now ? "scheduled" : "ready";
}

// Columns of wf_jobs rows (listings and wf_job_get): id, tenant, effect, key,
// payload, metadata, priority, run_at, state, attempts, failures,
// max_attempts, lease_owner, lease_until, started_at, last_error, origin,
// created_at, interruptions.
json job_row(Engine &e, Stmt &st, int64_t now) {
  json j;
  j["id"] = std::to_string(st.col_int(0));
  j["tenant"] = st.col_text(1);
  j["effect"] = st.col_text(2);
  j["key"] = text_or_null(st, 3);
  j["state"] = job_state_name(st.col_int(8), st.col_int(7), now);
  j["payload"] = parse_or_text(e.unseal(st.col_text(4), "wf_jobs.payload"));
  j["metadata"] = parse_or_text(st.col_text(5));
  j["priority"] = st.col_int(6);
  j["run_at"] = st.col_int(7);
  j["attempts"] = st.col_int(9);
  j["failures"] = st.col_int(10);
  j["max_attempts"] = int_or_null(st, 11);
  j["lease_owner"] = text_or_null(st, 12);
  j["lease_until"] = int_or_null(st, 13);
  j["started_at"] = int_or_null(st, 14);
  j["last_error"] = text_or_null(st, 15);
  j["origin"] = st.col_null(16) ? json(nullptr) : parse_or_text(st.col_text(16));
  j["created_at"] = st.col_int(17);
  j["interruptions"] = st.col_int(18);
  return j;
}

// Columns of wf_dead rows: id, tenant, effect, key, payload, metadata,
// priority, attempts, failures, max_attempts, origin, created_at, reason,
// dead_at.
json dead_row(Engine &e, Stmt &st) {
  json j;
  j["id"] = std::to_string(st.col_int(0));
  j["tenant"] = st.col_text(1);
  j["effect"] = st.col_text(2);
  j["key"] = text_or_null(st, 3);
  j["state"] = "dead";
  j["payload"] = parse_or_text(e.unseal(st.col_text(4), "wf_jobs.payload"));
  j["metadata"] = parse_or_text(st.col_text(5));
  j["priority"] = st.col_int(6);
  j["attempts"] = st.col_int(7);
  j["failures"] = st.col_int(8);
  j["max_attempts"] = int_or_null(st, 9);
  j["origin"] = st.col_null(10) ? json(nullptr) : parse_or_text(st.col_text(10));
  j["created_at"] = st.col_int(11);
  j["reason"] = st.col_text(12);
  j["dead_at"] = st.col_int(13);
  return j;
}

json attempt_history(Db &db, int64_t id) {
  json hist = json::array();
  auto h = db.prepare(
      "SELECT n, started_at, ended_at, outcome, error FROM wf_attempts WHERE job_id = ?1 "
      "ORDER BY rowid");
  h->bind(1, id);
  while (h->step())
    hist.push_back(json{{"attempt", h->col_int(0)},
                        {"started_at", int_or_null(*h, 1)},
                        {"ended_at", h->col_int(2)},
                        {"outcome", h->col_text(3)},
                        {"error", text_or_null(*h, 4)}});
  return hist;
}

bool is_job_id(const std::string &s) {
  return !s.empty() && s.size() <= 18 && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

// ------------------------------------------------------------------- jobs

std::string jobs_list(Engine &e, const char *filter_json) {
  const char *w = "jobs filter";
  json doc = parse_filter_doc(e, filter_json, w);
  check_keys(doc, {"state", "effect", "tenant", "key", "since", "until", "limit", "cursor"}, w);
  auto state = opt_enum(doc, "state", w, {"ready", "scheduled", "running", "pending", "dead"});
  auto effect = opt_string(doc, "effect", w);
  auto tenant = opt_string(doc, "tenant", w);
  auto key = opt_string(doc, "key", w);
  auto since = opt_time(doc, "since", w);
  auto until = opt_time(doc, "until", w);
  int64_t limit = get_limit(doc, w);
  int64_t after = get_seq_cursor(doc, w);
  int64_t now = e.now();
  bool dead = state && *state == "dead";
  int mode = 0;  // 0 any live, 1 ready, 2 scheduled, 3 running, 4 pending
  if (state) {
    if (*state == "ready") mode = 1;
    if (*state == "scheduled") mode = 2;
    if (*state == "running") mode = 3;
    if (*state == "pending") mode = 4;
  }
  return read_txn(e, [&](Db &db) {
    StmtRef st = db.prepare(
        dead ? "SELECT id, tenant, effect, key, payload, metadata, priority, attempts, failures, "
               "max_attempts, origin, created_at, reason, dead_at FROM wf_dead WHERE "
               "(?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR effect = ?2) AND "
               "(?3 IS NULL OR key = ?3) AND (?4 IS NULL OR created_at >= ?4) AND "
               "(?5 IS NULL OR created_at < ?5) AND id > ?6 ORDER BY id LIMIT ?9"
             : "SELECT id, tenant, effect, key, payload, metadata, priority, run_at, state, "
               "attempts, failures, max_attempts, lease_owner, lease_until, started_at, "
               "last_error, origin, created_at, interruptions FROM wf_jobs WHERE "
               "(?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR effect = ?2) AND "
               "(?3 IS NULL OR key = ?3) AND (?4 IS NULL OR created_at >= ?4) AND "
               "(?5 IS NULL OR created_at < ?5) AND id > ?6 AND "
               "(?7 = 0 OR (?7 = 1 AND state <> 1 AND run_at <= ?8) OR "
               "(?7 = 2 AND state <> 1 AND run_at > ?8) OR (?7 = 3 AND state = 1) OR "
               "(?7 = 4 AND state <> 1)) ORDER BY id LIMIT ?9");
    bind_opt(*st, 1, tenant);
    bind_opt(*st, 2, effect);
    bind_opt(*st, 3, key);
    bind_opt(*st, 4, since);
    bind_opt(*st, 5, until);
    st->bind(6, after);
    if (!dead) st->bind(7, static_cast<int64_t>(mode)).bind(8, now);
    st->bind(9, limit + 1);
    json out = page(*st, limit, "jobs", [&](json &cursor) {
      cursor = json::array({st->col_int(0)});
      return dead ? dead_row(e, *st) : job_row(e, *st, now);
    });
    out["now"] = now;
    return out;
  });
}

std::string job_get(Engine &e, const char *tenant, const char *id_or_key) {
  const char *w = "wf_job_get";
  if (!id_or_key || !*id_or_key) fail(WF_EINVAL, "wf_job_get: id_or_key is empty");
  check_utf8(id_or_key, "id_or_key", w);
  if (tenant) check_utf8(tenant, "tenant", w);
  std::string ref = id_or_key;
  int64_t now = e.now();
  return read_txn(e, [&](Db &db) -> json {
    // By id (in any tenant when `tenant` is NULL), else by key in the tenant.
    std::optional<int64_t> id;
    if (is_job_id(ref)) {
      int64_t v = static_cast<int64_t>(std::stoll(ref));
      auto a = db.prepare(
          "SELECT 1 FROM wf_jobs WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2) UNION ALL "
          "SELECT 1 FROM wf_dead WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)");
      a->bind(1, v);
      if (tenant) a->bind(2, std::string(tenant));
      if (a->step()) id = v;
    }
    std::string t = tenant ? tenant : "";
    if (!id) {
      auto k = db.prepare(
          "SELECT id FROM wf_jobs WHERE tenant = ?1 AND key = ?2 UNION ALL "
          "SELECT id FROM wf_dead WHERE tenant = ?1 AND key = ?2");
      k->bind(1, t).bind(2, ref);
      if (k->step()) id = k->col_int(0);
    }
    if (id) {
      auto j = db.prepare(
          "SELECT id, tenant, effect, key, payload, metadata, priority, run_at, state, "
          "attempts, failures, max_attempts, lease_owner, lease_until, started_at, last_error, "
          "origin, created_at, interruptions FROM wf_jobs WHERE id = ?1");
      j->bind(1, *id);
      json out;
      if (j->step()) {
        out = job_row(e, *j, now);
      } else {
        auto d = db.prepare(
            "SELECT id, tenant, effect, key, payload, metadata, priority, attempts, failures, "
            "max_attempts, origin, created_at, reason, dead_at FROM wf_dead WHERE id = ?1");
        d->bind(1, *id);
        if (!d->step()) fail(WF_EINTERNAL, "wf_job_get: job vanished inside a snapshot");
        out = dead_row(e, *d);
      }
      out["history"] = attempt_history(db, *id);
      return out;
    }
    // A completed job is deleted; its key is remembered for the dedupe window.
    auto c = db.prepare(
        "SELECT job_id, tenant, key, expires_at FROM wf_done_keys WHERE "
        "(tenant = ?1 AND key = ?2) OR (?3 IS NOT NULL AND job_id = ?3 AND "
        "(?4 IS NULL OR tenant = ?4)) LIMIT 1");
    c->bind(1, t).bind(2, ref);
    if (is_job_id(ref)) c->bind(3, static_cast<int64_t>(std::stoll(ref)));
    if (tenant) c->bind(4, std::string(tenant));
    if (c->step()) {
      json out;
      out["id"] = std::to_string(c->col_int(0));
      out["tenant"] = c->col_text(1);
      out["key"] = c->col_text(2);
      out["state"] = "completed";
      out["key_expires_at"] = c->col_int(3);
      out["history"] = attempt_history(db, c->col_int(0));
      return out;
    }
    fail(WF_ENOTFOUND, "wf_job_get: no job with id or key \"" + ref + "\" in tenant \"" + t +
                           "\" (completed jobs are known by key only within dedupe_window_ms)");
  });
}

// -------------------------------------------------------------- schedules

std::string schedules_list(Engine &e, const char *filter_json) {
  const char *w = "schedules filter";
  json doc = parse_filter_doc(e, filter_json, w);
  check_keys(doc, {"tenant", "key", "status", "due_before", "limit", "cursor"}, w);
  auto tenant = opt_string(doc, "tenant", w);
  auto key = opt_string(doc, "key", w);
  auto status = opt_enum(doc, "status", w, {"active", "parked"});
  auto due_before = opt_time(doc, "due_before", w);
  int64_t limit = get_limit(doc, w);
  json cur = get_cursor(doc, w, 2);
  if (!cur.is_null() && (!cur[0].is_string() || !cur[1].is_string()))
    fail(WF_EINVAL, std::string(w) + ": \"cursor\" is not a cursor of this listing");
  int64_t now = e.now();
  return read_txn(e, [&](Db &db) {
    auto st = db.prepare(
        "SELECT tenant, key, cron, tz, catch_up, catch_up_max, target, body, next_due, fired, "
        "last_due, origin, created_at, parked_reason, parked_at FROM wf_schedules WHERE "
        "(?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR key = ?2) AND "
        "(?3 IS NULL OR (?3 = 'parked') = (parked_reason IS NOT NULL)) AND "
        "(?4 IS NULL OR next_due < ?4) AND (?5 IS NULL OR (tenant, key) > (?5, ?6)) "
        "ORDER BY tenant, key LIMIT ?7");
    bind_opt(*st, 1, tenant);
    bind_opt(*st, 2, key);
    bind_opt(*st, 3, status);
    bind_opt(*st, 4, due_before);
    if (!cur.is_null()) st->bind(5, cur[0].get<std::string>()).bind(6, cur[1].get<std::string>());
    st->bind(7, limit + 1);
    json out = page(*st, limit, "schedules", [&](json &cursor) {
      json s;
      s["tenant"] = st->col_text(0);
      s["key"] = st->col_text(1);
      s["cron"] = text_or_null(*st, 2);
      s["tz"] = st->col_text(3);
      s["catch_up"] = st->col_text(4);
      s["catch_up_max"] = st->col_int(5);
      s["target"] = st->col_text(6);
      s[s["target"] == "event" ? "event" : "job"] =
          parse_or_text(e.unseal(st->col_text(7), "wf_schedules.body"));
      s["next_due"] = st->col_int(8);
      s["fired"] = st->col_int(9);
      s["last_due"] = int_or_null(*st, 10);
      s["origin"] = st->col_null(11) ? json(nullptr) : parse_or_text(st->col_text(11));
      s["created_at"] = st->col_int(12);
      s["status"] = st->col_null(13) ? "active" : "parked";
      s["parked_reason"] = text_or_null(*st, 13);
      s["parked_at"] = int_or_null(*st, 14);
      cursor = json::array({st->col_text(0), st->col_text(1)});
      return s;
    });
    out["now"] = now;
    return out;
  });
}

// ------------------------------------------------------------------ sagas

std::string sagas_list(Engine &e, const char *filter_json) {
  const char *w = "sagas filter";
  json doc = parse_filter_doc(e, filter_json, w);
  check_keys(doc, {"tenant", "saga", "correlation_id", "status", "limit", "cursor"}, w);
  auto tenant = opt_string(doc, "tenant", w);
  auto saga = opt_string(doc, "saga", w);
  auto corr = opt_string(doc, "correlation_id", w);
  auto status = opt_enum(doc, "status", w, {"new", "active", "done", "parked"});
  int64_t limit = get_limit(doc, w);
  json cur = get_cursor(doc, w, 3);
  if (!cur.is_null())
    for (auto &x : cur)
      if (!x.is_string())
        fail(WF_EINVAL, std::string(w) + ": \"cursor\" is not a cursor of this listing");
  return read_txn(e, [&](Db &db) {
    // Instances with a row, and those whose first events wait in the inbox
    // (status "new": no step has committed yet).
    auto st = db.prepare(
        "WITH inst(tenant, saga, correlation_id) AS ("
        "SELECT tenant, saga, correlation_id FROM wf_sagas UNION "
        "SELECT tenant, saga, correlation_id FROM wf_saga_inbox), "
        "rows AS (SELECT i.tenant, i.saga, i.correlation_id, coalesce(s.status, 'new') AS status, "
        "s.version, s.created_at, s.updated_at, "
        "(SELECT count(*) FROM wf_saga_inbox b WHERE b.tenant = i.tenant AND b.saga = i.saga AND "
        "b.correlation_id = i.correlation_id AND b.state = 0) AS pending, "
        "(SELECT count(*) FROM wf_saga_inbox b WHERE b.tenant = i.tenant AND b.saga = i.saga AND "
        "b.correlation_id = i.correlation_id AND b.state = 2) AS parked "
        "FROM inst i LEFT JOIN wf_sagas s ON s.tenant = i.tenant AND s.saga = i.saga AND "
        "s.correlation_id = i.correlation_id "
        "WHERE (?1 IS NULL OR i.tenant = ?1) AND (?2 IS NULL OR i.saga = ?2) AND "
        "(?3 IS NULL OR i.correlation_id = ?3) AND "
        "(?5 IS NULL OR (i.tenant, i.saga, i.correlation_id) > (?5, ?6, ?7))) "
        "SELECT * FROM rows WHERE (?4 IS NULL OR (?4 = 'parked' AND parked > 0) OR "
        "(?4 <> 'parked' AND status = ?4)) ORDER BY tenant, saga, correlation_id LIMIT ?8");
    bind_opt(*st, 1, tenant);
    bind_opt(*st, 2, saga);
    bind_opt(*st, 3, corr);
    bind_opt(*st, 4, status);
    if (!cur.is_null())
      st->bind(5, cur[0].get<std::string>())
          .bind(6, cur[1].get<std::string>())
          .bind(7, cur[2].get<std::string>());
    st->bind(8, limit + 1);
    return page(*st, limit, "sagas", [&](json &cursor) {
      json s;
      s["tenant"] = st->col_text(0);
      s["saga"] = st->col_text(1);
      s["correlation_id"] = st->col_text(2);
      s["status"] = st->col_text(3);
      s["version"] = int_or_null(*st, 4);
      s["created_at"] = int_or_null(*st, 5);
      s["updated_at"] = int_or_null(*st, 6);
      s["pending"] = st->col_int(7);
      s["parked"] = st->col_int(8);
      cursor = json::array({st->col_text(0), st->col_text(1), st->col_text(2)});
      return s;
    });
  });
}

std::string saga_show(Engine &e, const char *tenant, const char *saga, const char *corr) {
  const char *w = "wf_saga_show";
  if (!saga || !*saga || !corr)
    fail(WF_EINVAL, "wf_saga_show: saga and correlation_id are required");
  if (tenant) check_utf8(tenant, "tenant", w);
  check_utf8(saga, "saga", w);
  check_utf8(corr, "correlation_id", w);
  std::string t = tenant ? tenant : "";
  return read_txn(e, [&](Db &db) {
    json out;
    out["tenant"] = t;
    out["saga"] = saga;
    out["correlation_id"] = corr;
    auto st = db.prepare(
        "SELECT state, version, status, created_at, updated_at FROM wf_sagas WHERE tenant = ?1 "
        "AND saga = ?2 AND correlation_id = ?3");
    st->bind(1, t).bind(2, std::string(saga)).bind(3, std::string(corr));
    bool have = st->step();
    if (have) {
      out["status"] = st->col_text(2);
      out["state"] = parse_or_text(e.unseal(st->col_text(0), "wf_sagas.state"));
      out["version"] = st->col_int(1);
      out["created_at"] = st->col_int(3);
      out["updated_at"] = st->col_int(4);
    } else {
      out["status"] = "new";
      out["state"] = nullptr;
      out["version"] = nullptr;
      out["created_at"] = nullptr;
      out["updated_at"] = nullptr;
    }
    st->reset();
    json applied = json::array();
    auto a = db.prepare(
        "SELECT l.n, l.event_seq, v.event_id, v.type, v.received_at, v.envelope FROM wf_saga_log "
        "l LEFT JOIN wf_events v ON v.seq = l.event_seq WHERE l.tenant = ?1 AND l.saga = ?2 AND "
        "l.correlation_id = ?3 ORDER BY l.n");
    a->bind(1, t).bind(2, std::string(saga)).bind(3, std::string(corr));
    while (a->step())
      applied.push_back(
          json{{"n", a->col_int(0)},
               {"seq", a->col_int(1)},
               {"event_id", text_or_null(*a, 2)},
               {"type", text_or_null(*a, 3)},
               {"received_at", int_or_null(*a, 4)},
               {"event", a->col_null(5)
                             ? json(nullptr)
                             : parse_or_text(e.unseal(a->col_text(5), "wf_events.envelope"))}});
    json pending = json::array();
    auto p = db.prepare(
        "SELECT b.seq, b.event_seq, b.start, b.state, b.error, v.event_id, v.type, "
        "v.received_at, v.envelope FROM wf_saga_inbox b LEFT JOIN wf_events v ON "
        "v.seq = b.event_seq WHERE b.tenant = ?1 AND b.saga = ?2 AND b.correlation_id = ?3 "
        "ORDER BY b.seq");
    p->bind(1, t).bind(2, std::string(saga)).bind(3, std::string(corr));
    while (p->step())
      pending.push_back(
          json{{"inbox_seq", p->col_int(0)},
               {"seq", p->col_int(1)},
               {"start", p->col_int(2) != 0},
               {"status", p->col_int(3) == 2 ? "parked" : "pending"},
               {"error", text_or_null(*p, 4)},
               {"event_id", text_or_null(*p, 5)},
               {"type", text_or_null(*p, 6)},
               {"received_at", int_or_null(*p, 7)},
               {"event", p->col_null(8)
                             ? json(nullptr)
                             : parse_or_text(e.unseal(p->col_text(8), "wf_events.envelope"))}});
    if (!have && pending.empty())
      fail(WF_ENOTFOUND, std::string("wf_saga_show: no instance of saga \"") + saga + "\" for \"" +
                             corr + "\" in tenant \"" + t + "\"");
    out["applied"] = std::move(applied);
    out["pending"] = std::move(pending);
    return out;
  });
}

// ----------------------------------------------------------------- events

std::string events_list(Engine &e, const char *filter_json) {
  const char *w = "events filter";
  json doc = parse_filter_doc(e, filter_json, w);
  check_keys(
      doc, {"tenant", "type", "correlation_id", "status", "since", "until", "limit", "cursor"}, w);
  auto tenant = opt_string(doc, "tenant", w);
  auto type = opt_string(doc, "type", w);
  auto corr = opt_string(doc, "correlation_id", w);
  auto status = opt_enum(doc, "status", w, {"applied", "pending", "parked", "unmatched"});
  auto since = opt_time(doc, "since", w);
  auto until = opt_time(doc, "until", w);
  int64_t limit = get_limit(doc, w);
  int64_t after = get_seq_cursor(doc, w);
  return read_txn(e, [&](Db &db) {
    auto st = db.prepare(
        "SELECT * FROM (SELECT v.seq, v.tenant, v.event_id, v.type, v.correlation_id, "
        "v.envelope, v.received_at, v.routed, "
        "(SELECT count(*) FROM wf_saga_inbox b WHERE b.event_seq = v.seq AND b.state = 0) AS p, "
        "(SELECT count(*) FROM wf_saga_inbox b WHERE b.event_seq = v.seq AND b.state = 2) AS k "
        "FROM wf_events v WHERE (?1 IS NULL OR v.tenant = ?1) AND (?2 IS NULL OR v.type = ?2) "
        "AND (?3 IS NULL OR v.correlation_id = ?3) AND (?5 IS NULL OR v.received_at >= ?5) AND "
        "(?6 IS NULL OR v.received_at < ?6) AND v.seq > ?7) WHERE ?4 IS NULL OR "
        "(?4 = 'unmatched' AND routed = 0) OR (?4 = 'parked' AND routed > 0 AND k > 0) OR "
        "(?4 = 'pending' AND routed > 0 AND k = 0 AND p > 0) OR "
        "(?4 = 'applied' AND routed > 0 AND k = 0 AND p = 0) ORDER BY seq LIMIT ?8");
    bind_opt(*st, 1, tenant);
    bind_opt(*st, 2, type);
    bind_opt(*st, 3, corr);
    bind_opt(*st, 4, status);
    bind_opt(*st, 5, since);
    bind_opt(*st, 6, until);
    st->bind(7, after).bind(8, limit + 1);
    return page(*st, limit, "events", [&](json &cursor) {
      json v;
      int64_t seq = st->col_int(0);
      cursor = json::array({seq});
      int64_t routed = st->col_int(7), p = st->col_int(8), k = st->col_int(9);
      v["seq"] = seq;
      v["tenant"] = st->col_text(1);
      v["event_id"] = st->col_text(2);
      v["type"] = st->col_text(3);
      v["correlation_id"] = text_or_null(*st, 4);
      v["event"] = parse_or_text(e.unseal(st->col_text(5), "wf_events.envelope"));
      v["received_at"] = st->col_int(6);
      v["routed"] = routed;
      v["status"] = routed == 0 ? "unmatched" : k > 0 ? "parked" : p > 0 ? "pending" : "applied";
      return v;
    });
  });
}

// ---------------------------------------------------------------- engines

std::string engines_list(Engine &e) {
  int64_t now = e.now();
  return read_txn(e, [&](Db &db) {
    json items = json::array();
    auto st = db.prepare(
        "SELECT boot_id, pid, hostname, started_at, heartbeat_at, lock_slot FROM wf_boots "
        "ORDER BY started_at, boot_id");
    while (st->step()) {
      json b;
      std::string id = st->col_text(0);
      b["boot_id"] = id;
      b["pid"] = st->col_int(1);
      b["hostname"] = st->col_text(2);
      b["started_at"] = st->col_int(3);
      b["heartbeat_at"] = st->col_int(4);
      b["lock_slot"] = int_or_null(*st, 5);
      int held = st->col_null(5) ? -1 : boot_slot_held(e.path, st->col_int(5));
      if (id == e.boot_id) {
        b["live"] = true;
        b["liveness"] = "this engine";
      } else if (held >= 0) {
        b["live"] = held == 1;
        b["liveness"] = "lock";
      } else {
        // No lock to test (another host, no OFD locks): a heartbeat within
        // two of our lease periods.
        b["live"] = st->col_int(4) >= now - 2 * e.opt.lease_ms;
        b["liveness"] = "heartbeat";
      }
      json effs = json::array();
      json circuits = json::object();
      auto f = db.prepare(
          "SELECT effect, circuit_until FROM wf_boot_effects WHERE boot_id = ?1 ORDER BY effect");
      f->bind(1, id);
      while (f->step()) {
        effs.push_back(f->col_text(0));
        if (f->col_null(1)) continue;
        int64_t until = f->col_int(1);
        circuits[f->col_text(0)] =
            json{{"state", until > now ? "open" : "half_open"}, {"until", until}};
      }
      b["effects"] = std::move(effs);
      b["circuits"] = std::move(circuits);
      items.push_back(std::move(b));
    }
    st->reset();
    json out;
    out["engines"] = std::move(items);
    out["now"] = now;
    return out;
  });
}

// ------------------------------------------------------------------ check

std::string check(Engine &e, const char *options_json) {
  const char *w = "check options";
  json doc = parse_filter_doc(e, options_json, w);
  check_keys(doc, {"quick"}, w);
  bool quick = false;
  if (doc.contains("quick")) {
    if (!doc["quick"].is_boolean()) fail(WF_EINVAL, "check options: \"quick\" must be a boolean");
    quick = doc["quick"].get<bool>();
  }
  return read_txn(e, [&](Db &db) {
    json problems = json::array();
    json checks = json::array();
    auto problem = [&](const char *check, const std::string &detail) {
      problems.push_back(json{{"check", check}, {"detail", detail}});
    };
    checks.push_back(quick ? "quick_check" : "integrity_check");
    {
      auto st = db.prepare(quick ? "PRAGMA quick_check(100)" : "PRAGMA integrity_check(100)");
      while (st->step()) {
        std::string r = st->col_text(0);
        if (r != "ok") problem(quick ? "quick_check" : "integrity_check", r);
      }
      st->reset();
    }
    checks.push_back("schema_version");
    {
      auto st = db.prepare("SELECT v FROM wf_meta WHERE k = 'schema_version'");
      std::string v = st->step() ? st->col_text(0) : "";
      if (v != std::to_string(kSchemaVersion))
        problem("schema_version", "wf_meta schema_version is \"" + v + "\", this library's is " +
                                      std::to_string(kSchemaVersion));
    }
    checks.push_back("job_counts");
    {
      // wf_job_counts against the rows of wf_jobs (both directions) up to
      // the counts watermark; the rows above it are in no count (lease.h).
      const int64_t through = lease::counts_through(db);
      auto st = db.prepare(
          "WITH actual AS (SELECT effect, tenant, sum(state = 0) AS p, sum(state = 1) AS r FROM "
          "wf_jobs WHERE id <= ?1 GROUP BY effect, tenant), "
          "keys AS (SELECT effect, tenant FROM actual UNION SELECT effect, tenant FROM "
          "wf_job_counts) "
          "SELECT k.effect, k.tenant, coalesce(a.p, 0), coalesce(a.r, 0), coalesce(c.pending, 0), "
          "coalesce(c.running, 0) FROM keys k LEFT JOIN actual a ON a.effect = k.effect AND "
          "a.tenant = k.tenant LEFT JOIN wf_job_counts c ON c.effect = k.effect AND "
          "c.tenant = k.tenant WHERE coalesce(a.p, 0) <> coalesce(c.pending, 0) OR "
          "coalesce(a.r, 0) <> coalesce(c.running, 0)");
      st->bind(1, through);
      while (st->step())
        problem("job_counts", "effect \"" + st->col_text(0) + "\" tenant \"" + st->col_text(1) +
                                  "\": wf_jobs has " + std::to_string(st->col_int(2)) +
                                  " pending and " + std::to_string(st->col_int(3)) +
                                  " running, wf_job_counts says " + std::to_string(st->col_int(4)) +
                                  " and " + std::to_string(st->col_int(5)));
      if (through != INT64_MAX) {
        auto tail = db.prepare("SELECT count(*) FROM wf_jobs WHERE id > ?1");
        tail->bind(1, through);
        const int64_t n = tail->step() ? tail->col_int(0) : 0;
        if (n > lease::kCountTailMax)
          problem("job_counts", std::to_string(n) + " jobs above counts_through " +
                                    std::to_string(through) + " (at most " +
                                    std::to_string(lease::kCountTailMax) + " are left uncounted)");
      }
    }
    checks.push_back("leases");
    {
      auto st = db.prepare(
          "SELECT id, state, lease_owner FROM wf_jobs WHERE (state = 1 AND (lease_owner IS NULL OR "
          "lease_until IS NULL)) OR (state IN (0, 2) AND lease_owner IS NOT NULL) OR "
          "state NOT IN (0, 1, 2) OR (state = 2 AND id <= ?1) LIMIT 100");
      // (State 2, ready and not yet indexed, is only ever above the counts
      // watermark: lease.h.)
      st->bind(1, lease::counts_through(db));
      while (st->step())
        problem("leases", "job " + std::to_string(st->col_int(0)) + " in state " +
                              std::to_string(st->col_int(1)) +
                              (st->col_int(1) == 2 && st->col_null(2)
                                   ? " is below counts_through (never put on wf_jobs_claim)"
                                   : " has a lease that does not match its state"));
    }
    checks.push_back("dead_not_pending");
    {
      auto st = db.prepare("SELECT d.id FROM wf_dead d JOIN wf_jobs j ON j.id = d.id LIMIT 100");
      while (st->step())
        problem("dead_not_pending",
                "job " + std::to_string(st->col_int(0)) + " is both pending and a dead letter");
    }
    checks.push_back("saga_inbox_events");
    {
      auto st = db.prepare(
          "SELECT b.seq, b.event_seq FROM wf_saga_inbox b WHERE NOT EXISTS (SELECT 1 FROM "
          "wf_events v WHERE v.seq = b.event_seq) LIMIT 100");
      while (st->step())
        problem("saga_inbox_events", "saga inbox row " + std::to_string(st->col_int(0)) +
                                         " refers to event " + std::to_string(st->col_int(1)) +
                                         ", which does not exist");
    }
    json out;
    out["ok"] = problems.empty();
    out["checks"] = std::move(checks);
    out["problems"] = std::move(problems);
    return out;
  });
}

// ----------------------------------------------------------------- backup

void backup(Engine &e, const char *dest_path) {
  if (!dest_path || !*dest_path) fail(WF_EINVAL, "wf_backup: path is empty");
  std::string dest = dest_path;
  check_db_path(dest);
  // The copy is created here (0600, never over an existing file); VACUUM
  // INTO writes into an empty file.
  int fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    fail(err == EEXIST ? WF_EEXIST : WF_EIO,
         "wf_backup: cannot create \"" + dest +
             "\": " + std::error_code(err, std::generic_category()).message() +
             (err == EEXIST ? " (a backup never overwrites a file)" : ""));
  }
  ::close(fd);
  try {
    std::lock_guard<std::mutex> g(e.api_mu);
    // One read transaction: a consistent snapshot of the committed state,
    // while writers go on.
    auto st = e.api_db->prepare("VACUUM INTO ?1");
    st->bind(1, dest).exec();
  } catch (...) {
    ::unlink(dest.c_str());
    throw;
  }
  // VACUUM INTO does not sync its output.
  fd = ::open(dest.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    fail(WF_EIO, "wf_backup: cannot sync \"" + dest +
                     "\": " + std::error_code(err, std::generic_category()).message());
  }
  ::close(fd);
}

}  // namespace wf
