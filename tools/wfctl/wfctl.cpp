// wfctl: inspect and operate a wfengine database from the command line.
// Uses only the public C API (wfengine.h). Opens the database read-only
// ({"read_only": true}) unless a command changes something (dead requeue /
// purge with --yes), so it works while a host process runs the engine.
// Reference: docs/operations.md, "wfctl reference".
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "wfengine.h"

using json = nlohmann::json;

namespace {

// Exit codes (docs/operations.md).
constexpr int kExitOk = 0;
constexpr int kExitProblem = 1;   // check found a problem; stuck found a problem; would-do only
constexpr int kExitUsage = 2;     // bad command line or bad filter value
constexpr int kExitOpen = 3;      // missing file, not a wfengine database, unsupported schema
constexpr int kExitNotFound = 4;  // the job / schedule / saga asked for does not exist
constexpr int kExitFailed = 5;    // any other failure (I/O, busy, ...)

struct Failure {
  int code;
  std::string msg;
};

int exit_for_status(int rc) {
  switch (rc) {
    case WF_EINVAL:
      return kExitUsage;
    case WF_ENOTFOUND:
      return kExitNotFound;
    default:
      return kExitFailed;
  }
}

[[noreturn]] void fail_call(int rc, const std::string &what) {
  throw Failure{exit_for_status(rc), what + ": " + wf_last_error() + " (" + wf_strerror(rc) + ")"};
}

struct Global {
  std::string db;
  bool json_out = false;
  std::string tenant;
  bool tenant_set = false;
};

// One open engine handle; closed on scope exit.
class Db {
 public:
  Db(const Global &g, bool writable) {
    if (g.db.empty()) throw Failure{kExitUsage, "no database: pass --db PATH or set WFENGINE_DB"};
    if (writable) {
      // The same refusals as a read-only open first (a missing file must not
      // be created, a foreign one not touched), then read-write.
      Db probe(g, false);
    }
    json opts = json::object();
    if (!writable) opts["read_only"] = true;
    // Read before any engine thread exists (wfctl's only threads are the engine's).
    const char *k = std::getenv("WFENGINE_ENCRYPTION_KEY");  // NOLINT(concurrency-mt-unsafe)
    if (k && *k) opts["encryption_key"] = k;
    int rc = wf_open(g.db.c_str(), opts.dump().c_str(), &e_);
    if (rc != WF_OK) {
      int code = (rc == WF_ENOTFOUND || rc == WF_ECORRUPT || rc == WF_EUNSUPPORTED ||
                  rc == WF_EINVAL || rc == WF_EIO)
                     ? kExitOpen
                     : kExitFailed;
      throw Failure{
          code, "cannot open \"" + g.db + "\": " + wf_last_error() + " (" + wf_strerror(rc) + ")"};
    }
  }
  ~Db() { wf_close(e_); }
  Db(const Db &) = delete;
  Db &operator=(const Db &) = delete;
  wf_engine *e() const { return e_; }

  // Calls a read function returning JSON text and parses it.
  template <typename F>
  json read(const char *what, F &&f) const {
    char *out = nullptr;
    int rc = f(e_, &out);
    if (rc != WF_OK) fail_call(rc, what);
    json v = json::parse(out ? out : "null");
    wf_free(out);
    return v;
  }

 private:
  wf_engine *e_ = nullptr;
};

// ------------------------------------------------------------ formatting

std::string fmt_time(const json &v) {
  if (!v.is_number_integer()) return "-";
  int64_t ms = v.get<int64_t>();
  time_t s = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[32];
  if (strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return "-";
  return buf;
}

std::string fmt_dur(int64_t ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return std::to_string(ms) + "ms";
  int64_t s = ms / 1000;
  std::string out;
  if (s >= 86400) out += std::to_string(s / 86400) + "d", s %= 86400;
  if (s >= 3600) out += std::to_string(s / 3600) + "h", s %= 3600;
  if (s >= 60) out += std::to_string(s / 60) + "m", s %= 60;
  if (s || out.empty()) out += std::to_string(s) + "s";
  return out;
}

std::string str(const json &v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string one_line(std::string s, size_t max = 60) {
  for (char &c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  if (s.size() > max) s = s.substr(0, max - 3) + "...";
  return s;
}

// A table with a header row, columns padded to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> head) : head_(std::move(head)) {}
  void row(std::vector<std::string> r) { rows_.push_back(std::move(r)); }
  void print(std::ostream &o) const {
    std::vector<size_t> w(head_.size());
    for (size_t i = 0; i < head_.size(); ++i) w[i] = head_[i].size();
    for (auto &r : rows_)
      for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
    auto line = [&](const std::vector<std::string> &r) {
      std::string s;
      for (size_t i = 0; i < head_.size(); ++i) {
        std::string c = i < r.size() ? r[i] : "";
        s += c;
        if (i + 1 < head_.size()) s += std::string(w[i] - c.size() + 2, ' ');
      }
      while (!s.empty() && s.back() == ' ') s.pop_back();
      o << s << "\n";
    };
    line(head_);
    for (auto &r : rows_) line(r);
  }
  size_t size() const { return rows_.size(); }

 private:
  std::vector<std::string> head_;
  std::vector<std::vector<std::string>> rows_;
};

void print_json(const json &v) { std::cout << v.dump(2) << "\n"; }

void print_kv(const json &obj, const std::vector<std::string> &skip = {}) {
  size_t w = 0;
  for (auto it = obj.begin(); it != obj.end(); ++it) w = std::max(w, it.key().size());
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(skip.begin(), skip.end(), it.key()) != skip.end()) continue;
    std::string v;
    const std::string &k = it.key();
    bool is_time = k.size() > 3 && (k.substr(k.size() - 3) == "_at" || k == "run_at" ||
                                    k == "lease_until" || k == "next_due" || k == "last_due");
    if (is_time && it.value().is_number_integer())
      v = fmt_time(it.value()) + " (" + std::to_string(it.value().get<int64_t>()) + ")";
    else
      v = str(it.value());
    std::cout << k << std::string(w - k.size() + 2, ' ') << v << "\n";
  }
}

// Durations on the command line: 500ms, 30s, 5m, 2h, 1d, or plain ms.
int64_t parse_duration(const std::string &s) {
  size_t i = 0;
  while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i > 15)
    throw Failure{kExitUsage, "bad duration \"" + s + "\" (use e.g. 500ms, 30s, 5m, 2h, 1d)"};
  int64_t n = std::stoll(s.substr(0, i));
  std::string u = s.substr(i);
  if (u.empty() || u == "ms") return n;
  if (u == "s") return n * 1000;
  if (u == "m") return n * 60000;
  if (u == "h") return n * 3600000;
  if (u == "d") return n * 86400000;
  throw Failure{kExitUsage, "bad duration \"" + s + "\" (use e.g. 500ms, 30s, 5m, 2h, 1d)"};
}

// A time on the command line: RFC 3339 or ms since the epoch (passed through).
json time_arg(const std::string &s) {
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos)
    return json(std::stoll(s));
  return json(s);
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// ------------------------------------------------------------- listings

struct ListOpts {
  std::string state, effect, key, since, until, status, type, corr, saga, cursor;
  int64_t limit = 0;  // 0: the API's default page; with --all every page
  bool all = false;
};

void add_list_opts(CLI::App *c, ListOpts &o, bool with_cursor = true) {
  c->add_option("--limit", o.limit, "Items per page (1..10000, default 100)");
  if (with_cursor) {
    c->add_option("--cursor", o.cursor, "Continue from a previous page's next_cursor");
    c->add_flag("--all", o.all, "Follow the cursor through every page");
  }
}

// Pages through a listing; returns the items and the last next_cursor.
json list_all(const Db &db, const char *what, json filter, const ListOpts &o, const char *field,
              int (*fn)(wf_engine *, const char *, char **), json *next_cursor) {
  if (o.limit) filter["limit"] = o.limit;
  if (!o.cursor.empty()) filter["cursor"] = o.cursor;
  json items = json::array();
  for (;;) {
    std::string f = filter.dump();
    json page = db.read(what, [&](wf_engine *e, char **out) { return fn(e, f.c_str(), out); });
    for (auto &x : page[field]) items.push_back(x);
    *next_cursor = page.value("next_cursor", json());
    if (!o.all || next_cursor->is_null()) break;
    filter["cursor"] = *next_cursor;
  }
  return items;
}

void tenant_filter(const Global &g, json &f) {
  if (g.tenant_set) f["tenant"] = g.tenant;
}

// A job's or dead letter's attempt history (wf_job_get, wf_dead_list).
void history_table(const json &history) {
  Table t({"ATTEMPT", "STARTED_AT", "ENDED_AT", "OUTCOME", "ERROR"});
  for (auto &h : history)
    t.row({str(h["attempt"]), fmt_time(h["started_at"]), fmt_time(h["ended_at"]), str(h["outcome"]),
           one_line(str(h["error"]))});
  t.print(std::cout);
}

void print_more(const json &next) {
  if (!next.is_null())
    std::cout << "(more: --cursor '" << next.get<std::string>() << "' or --all)\n";
}

// ------------------------------------------------------------------ stats

json read_stats(const Db &db, const Global &g) {
  json f = json::object();
  tenant_filter(g, f);
  std::string fs = f.dump();
  return db.read("wf_stats",
                 [&](wf_engine *e, char **out) { return wf_stats(e, fs.c_str(), out); });
}

void print_stats(const json &s) {
  const json &o = s["outbox"];
  std::cout << "outbox     ready " << o["ready"] << "  scheduled " << o["scheduled"] << "  running "
            << o["running"] << "  oldest ready "
            << fmt_dur(o.value("oldest_ready_age_ms", int64_t(0))) << "\n";
  std::cout << "dead       " << s["dead"] << "\n";
  const json &sc = s["schedules"];
  std::cout << "schedules  pending " << sc["pending"] << "  due " << sc["due"] << "  parked "
            << sc["parked"] << "  next due " << fmt_time(sc["next_due_ms"]) << "\n";
  const json &sg = s["sagas"];
  std::cout << "sagas      active " << sg["active"] << "  done " << sg["done"] << "  parked "
            << sg["parked"] << "\n";
  const json &ev = s["events"];
  std::cout << "events     pending " << ev["pending"] << "  unmatched " << ev["unmatched"] << "\n";
  for (const char *by : {"by_effect", "by_tenant"}) {
    if (o[by].empty()) continue;
    std::cout << "\n";
    Table t({by[3] == 'e' ? "EFFECT" : "TENANT", "READY", "SCHEDULED", "RUNNING"});
    for (auto it = o[by].begin(); it != o[by].end(); ++it)
      t.row({it.key().empty() ? "\"\"" : it.key(), str(it.value()["ready"]),
             str(it.value()["scheduled"]), str(it.value()["running"])});
    t.print(std::cout);
  }
}

// ------------------------------------------------------------------ stuck

struct StuckItem {
  std::string kind, id, tenant, since_label, explanation;
  int64_t since = 0;
  bool problem = false;
};

std::vector<StuckItem> find_stuck(const Db &db, const Global &g) {
  std::vector<StuckItem> out;
  int64_t now = now_ms();
  json engines = db.read("wf_engines_list", wf_engines_list)["engines"];
  std::map<std::string, json> boots;
  std::set<std::string> served;
  // effect -> the open (or half-open) circuits of live engines serving it,
  // and how many of them serve it at all.
  std::map<std::string, std::vector<std::string>> open_circuits;
  std::map<std::string, int> servers;
  for (auto &b : engines) {
    std::string boot = b["boot_id"].get<std::string>();
    boots[boot] = b;
    if (!b["live"].get<bool>()) continue;
    for (auto &e : b["effects"]) {
      served.insert(e.get<std::string>());
      servers[e.get<std::string>()]++;
    }
    if (!b.contains("circuits")) continue;
    for (auto &c : b["circuits"].items()) {
      const json &v = c.value();
      open_circuits[c.key()].push_back(
          str(v["state"]) == "open"
              ? "open on engine " + boot + " until " + fmt_time(v["until"])
              : "half-open on engine " + boot + " (one probe attempt at a time)");
    }
  }
  auto engine_desc = [&](const std::string &id) {
    auto it = boots.find(id);
    if (it == boots.end()) return "engine " + id + " (no longer registered)";
    return "engine " + id + " (pid " + str(it->second["pid"]) + " on " +
           str(it->second["hostname"]) + ")";
  };
  ListOpts all;
  all.all = true;
  all.limit = 1000;
  json next;
  json f = json::object();
  tenant_filter(g, f);
  // Jobs: every job not finished.
  json jobs = list_all(db, "wf_jobs_list", f, all, "jobs", wf_jobs_list, &next);
  // Saga-emitted jobs, by instance: what an instance waits for.
  std::map<std::string, std::vector<json>> by_instance;
  std::map<std::string, int> running;  // effect -> attempts running
  for (auto &j : jobs)
    if (str(j["state"]) == "running") running[str(j["effect"])]++;
  for (auto &j : jobs) {
    StuckItem it;
    it.kind = "job";
    it.id = str(j["id"]);
    it.tenant = str(j["tenant"]);
    std::string eff = str(j["effect"]);
    std::string state = str(j["state"]);
    if (j["origin"].is_object() && j["origin"].contains("saga"))
      by_instance[j["origin"].dump()].push_back(j);
    if (state == "running") {
      std::string owner = str(j["lease_owner"]);
      auto b = boots.find(owner);
      bool live = b != boots.end() && b->second["live"].get<bool>();
      it.since = j["started_at"].is_number_integer() ? j["started_at"].get<int64_t>()
                                                     : j["created_at"].get<int64_t>();
      if (live) {
        it.explanation = "running on " + engine_desc(owner) + " since " +
                         fmt_time(j["started_at"]) + " (attempt " + str(j["attempts"]) + ")";
      } else {
        it.problem = true;
        it.explanation = "leased by " + engine_desc(owner) +
                         ", which is not alive: another engine reclaims it after its lease "
                         "expires at " +
                         fmt_time(j["lease_until"]);
      }
    } else if (state == "scheduled") {
      it.since = j["created_at"].get<int64_t>();
      it.explanation = "waiting until " + fmt_time(j["run_at"]);
      if (!j["last_error"].is_null())
        it.explanation += " to retry (after " + str(j["failures"]) +
                          " failures; last error: " + one_line(str(j["last_error"])) + ")";
    } else {  // ready
      it.since = j["run_at"].get<int64_t>();
      std::string err = str(j["last_error"]);
      if (!served.count(eff)) {
        it.problem = true;
        it.explanation = "effect \"" + eff + "\" is not registered by any live engine";
      } else if (err.rfind("timed out", 0) == 0) {
        it.explanation =
            "held by the host after a timeout: the next attempt waits until the host completes "
            "the previous handle (at most abandon_after_ms)";
      } else if (open_circuits.count(eff) &&
                 open_circuits[eff].size() == static_cast<size_t>(servers[eff])) {
        // Every live engine serving the effect has its circuit open.
        std::string which;
        for (auto &c : open_circuits[eff]) which += (which.empty() ? "" : "; ") + c;
        it.explanation = "ready since " + fmt_time(j["run_at"]) + ": the circuit breaker of \"" +
                         eff + "\" is " + which;
      } else if (running[eff] > 0) {
        it.explanation = "ready since " + fmt_time(j["run_at"]) + ": waiting for a free slot (" +
                         std::to_string(running[eff]) + " attempt(s) of \"" + eff +
                         "\" running; concurrency, max_inflight, tenant_concurrency)";
      } else {
        it.explanation = "ready since " + fmt_time(j["run_at"]) + ": next in line; nothing of \"" +
                         eff + "\" is running, so a live engine dispatches it on its next pass";
      }
    }
    it.since_label = fmt_time(json(it.since));
    out.push_back(std::move(it));
  }
  // Saga instances not done.
  json sagas = list_all(db, "wf_sagas_list", f, all, "sagas", wf_sagas_list, &next);
  for (auto &s : sagas) {
    std::string st = str(s["status"]);
    if (st == "done" && s["pending"].get<int64_t>() == 0 && s["parked"].get<int64_t>() == 0)
      continue;
    StuckItem it;
    it.kind = "saga";
    it.id = str(s["saga"]) + "/" + str(s["correlation_id"]);
    it.tenant = str(s["tenant"]);
    it.since = s["updated_at"].is_number_integer() ? s["updated_at"].get<int64_t>() : now;
    if (s["parked"].get<int64_t>() > 0) {
      it.problem = true;
      it.explanation = "parked: " + str(s["parked"]) +
                       " event(s) failed in the reducer (dead letters; wfctl dead requeue retries)";
    } else if (s["pending"].get<int64_t>() > 0) {
      it.explanation = str(s["pending"]) + " event(s) waiting for a saga step";
    } else {
      json key = json{
          {"saga", s["saga"]}, {"tenant", s["tenant"]}, {"correlation_id", s["correlation_id"]}};
      auto w = by_instance.find(key.dump());
      if (w != by_instance.end()) {
        std::string types;
        for (auto &j : w->second) {
          if (!types.empty()) types += ", ";
          types += str(j["effect"]) + ".completed|failed (job " + str(j["id"]) + ")";
        }
        it.explanation = "waiting for event type " + types;
      } else {
        it.explanation = "active, waiting for its next event (none of its jobs is pending)";
      }
    }
    it.since_label = fmt_time(json(it.since));
    out.push_back(std::move(it));
  }
  // Schedules.
  json scheds = list_all(db, "wf_schedules_list", f, all, "schedules", wf_schedules_list, &next);
  bool any_live = std::any_of(engines.begin(), engines.end(),
                              [](const json &b) { return b["live"].get<bool>(); });
  for (auto &s : scheds) {
    StuckItem it;
    it.kind = "schedule";
    it.id = str(s["key"]);
    it.tenant = str(s["tenant"]);
    it.since = s["created_at"].get<int64_t>();
    if (str(s["status"]) == "parked") {
      it.problem = true;
      it.since = s["parked_at"].is_number_integer() ? s["parked_at"].get<int64_t>() : it.since;
      it.explanation = "parked: " + one_line(str(s["parked_reason"])) +
                       " (calling wf_schedule again with this key replaces it)";
    } else if (s["next_due"].get<int64_t>() <= now && !any_live) {
      it.problem = true;
      it.explanation = "due since " + fmt_time(s["next_due"]) + ": no live engine fires schedules";
    } else {
      it.explanation = "waiting until " + fmt_time(s["next_due"]);
    }
    it.since_label = fmt_time(json(it.since));
    out.push_back(std::move(it));
  }
  return out;
}

// ------------------------------------------------------------------ watch

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// Waits up to `ms` for 'q' on a terminal stdin or a signal; true: stop.
bool wait_key(int64_t ms) {
  int64_t end = now_ms() + ms;
  while (!g_stop) {
    int64_t left = end - now_ms();
    if (left <= 0) return false;
    struct pollfd p = {STDIN_FILENO, POLLIN, 0};
    bool tty = isatty(STDIN_FILENO);
    int rc = poll(tty ? &p : nullptr, tty ? 1 : 0, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (rc > 0 && (p.revents & POLLIN)) {
      char c = 0;
      if (read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q')) return true;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  CLI::App app{"wfctl: inspect and operate a wfengine database (docs/operations.md)", "wfctl"};
  app.require_subcommand(1);
  app.fallthrough();
  Global g;
  app.add_option("--db", g.db, "Database file (default: $WFENGINE_DB)")->envname("WFENGINE_DB");
  app.add_flag("--json", g.json_out, "Print JSON instead of tables");
  app.add_option("--tenant", g.tenant, "Only this tenant");
  app.footer(
      "Exit codes: 0 ok, 1 problem found (check, stuck) or nothing done without --yes, 2 usage, "
      "3 cannot open the database, 4 not found, 5 other failure.\n"
      "Encrypted databases: set WFENGINE_ENCRYPTION_KEY.");

  auto *stats = app.add_subcommand("stats",
                                   "Depth by state, effect and tenant; dead letters, "
                                   "schedules, sagas, unmatched events");

  auto *jobs = app.add_subcommand("jobs", "Jobs not yet finished");
  jobs->require_subcommand(1);
  ListOpts jl;
  auto *jobs_ls = jobs->add_subcommand("ls", "List jobs");
  jobs_ls->add_option("--state", jl.state, "ready|scheduled|running|pending|dead");
  jobs_ls->add_option("--effect", jl.effect, "Only this effect");
  jobs_ls->add_option("--key", jl.key, "Only the job with this key");
  jobs_ls->add_option("--since", jl.since, "Created at or after (RFC 3339 or ms)");
  jobs_ls->add_option("--until", jl.until, "Created before (RFC 3339 or ms)");
  add_list_opts(jobs_ls, jl);
  std::string job_ref;
  auto *jobs_show = jobs->add_subcommand("show", "Show one job (by id, or by key in --tenant)");
  jobs_show->add_option("ID_OR_KEY", job_ref, "Job id or key")->required();

  auto *dead = app.add_subcommand("dead", "Dead letters");
  dead->require_subcommand(1);
  ListOpts dl;
  std::vector<std::string> dead_ids;
  bool yes = false;
  auto dead_filters = [&](CLI::App *c) {
    c->add_option("--effect", dl.effect, "Only this effect");
    c->add_option("--since", dl.since, "Dead at or after (RFC 3339 or ms)");
    c->add_option("--until", dl.until, "Dead before (RFC 3339 or ms)");
    c->add_option("--id", dead_ids, "Only these job ids (repeatable)");
    c->add_option("--limit", dl.limit, "At most this many");
  };
  auto *dead_ls = dead->add_subcommand("ls", "List dead letters, newest first");
  dead_filters(dead_ls);
  std::string dead_ref;
  auto *dead_show = dead->add_subcommand("show", "Show one dead letter with its attempts");
  dead_show->add_option("ID", dead_ref, "Job id")->required();
  auto *dead_requeue =
      dead->add_subcommand("requeue", "Move matching dead letters back to the queue");
  dead_filters(dead_requeue);
  dead_requeue->add_flag("--yes", yes, "Do it (without: print what would be re-queued)");
  auto *dead_purge = dead->add_subcommand("purge", "Delete matching dead letters");
  dead_filters(dead_purge);
  dead_purge->add_flag("--yes", yes, "Do it (without: print what would be deleted)");

  auto *sched = app.add_subcommand("schedules", "Durable timers");
  sched->require_subcommand(1);
  ListOpts sl;
  auto *sched_ls = sched->add_subcommand("ls", "List schedules");
  sched_ls->add_option("--status", sl.status, "active|parked");
  add_list_opts(sched_ls, sl);
  std::string sched_key;
  auto *sched_show = sched->add_subcommand("show", "Show one schedule (key in --tenant)");
  sched_show->add_option("KEY", sched_key, "Schedule key")->required();

  auto *sagas = app.add_subcommand("sagas", "Saga instances");
  sagas->require_subcommand(1);
  ListOpts gl;
  auto *sagas_ls = sagas->add_subcommand("ls", "List saga instances");
  sagas_ls->add_option("--saga", gl.saga, "Only this saga");
  sagas_ls->add_option("--status", gl.status, "new|active|done|parked");
  sagas_ls->add_option("--correlation-id", gl.corr, "Only this correlation id");
  add_list_opts(sagas_ls, gl);
  std::string saga_name, saga_corr;
  auto *sagas_show =
      sagas->add_subcommand("show", "Show one instance: state, applied and pending events");
  sagas_show->add_option("SAGA", saga_name, "Saga name")->required();
  sagas_show->add_option("CORRELATION_ID", saga_corr, "Correlation id")->required();

  auto *events = app.add_subcommand("events", "Events");
  events->require_subcommand(1);
  ListOpts el;
  auto *events_ls = events->add_subcommand("ls", "List events, oldest first");
  events_ls->add_option("--status", el.status, "applied|pending|parked|unmatched");
  events_ls->add_option("--type", el.type, "Only this event type");
  events_ls->add_option("--correlation-id", el.corr, "Only this correlation id");
  events_ls->add_option("--since", el.since, "Received at or after (RFC 3339 or ms)");
  events_ls->add_option("--until", el.until, "Received before (RFC 3339 or ms)");
  add_list_opts(events_ls, el);

  std::string older_than = "0";
  auto *stuck = app.add_subcommand(
      "stuck", "Every job, saga instance and schedule not finished, with why it waits");
  stuck->add_option("--older-than", older_than,
                    "Only what has waited longer than this (e.g. 30s, 5m, 2h, 1d)");

  double interval = 2.0;
  int iterations = 0;
  auto *watch = app.add_subcommand("watch", "Refresh stats like top (q or Ctrl-C quits)");
  watch->add_option("--interval", interval, "Seconds between refreshes (default 2)")
      ->check(CLI::Range(0.05, 3600.0));
  watch->add_option("--iterations", iterations, "Stop after N refreshes (0: until q)");

  auto *metrics = app.add_subcommand("metrics", "Prometheus text exposition (wf_metrics)");

  bool quick = false;
  auto *check = app.add_subcommand(
      "check", "Integrity and consistency check; exit 1 when a problem is found");
  check->add_flag("--quick", quick, "SQLite quick_check instead of integrity_check");

  std::string backup_file;
  auto *backup =
      app.add_subcommand("backup", "Online consistent copy of the database into a new file");
  backup->add_option("FILE", backup_file, "Destination (must not exist)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return kExitUsage;
  }
  g.tenant_set = app.count("--tenant") > 0;

  try {
    auto list_filter = [&](const ListOpts &o) {
      json f = json::object();
      tenant_filter(g, f);
      if (!o.state.empty()) f["state"] = o.state;
      if (!o.effect.empty()) f["effect"] = o.effect;
      if (!o.key.empty()) f["key"] = o.key;
      if (!o.since.empty()) f["since"] = time_arg(o.since);
      if (!o.until.empty()) f["until"] = time_arg(o.until);
      if (!o.status.empty()) f["status"] = o.status;
      if (!o.type.empty()) f["type"] = o.type;
      if (!o.corr.empty()) f["correlation_id"] = o.corr;
      if (!o.saga.empty()) f["saga"] = o.saga;
      return f;
    };
    auto dead_filter = [&]() {
      json f = json::object();
      tenant_filter(g, f);
      if (!dl.effect.empty()) f["effect"] = dl.effect;
      if (!dl.since.empty()) f["since"] = time_arg(dl.since);
      if (!dl.until.empty()) f["until"] = time_arg(dl.until);
      if (!dead_ids.empty()) f["ids"] = dead_ids;
      if (dl.limit) f["limit"] = dl.limit;
      return f;
    };
    auto dead_table = [&](const json &items) {
      Table t({"ID", "TENANT", "EFFECT", "KEY", "DEAD_AT", "ATTEMPTS", "REASON"});
      for (auto &d : items)
        t.row({str(d["id"]), str(d["tenant"]), str(d["effect"]), str(d["key"]),
               fmt_time(d["dead_at"]), str(d["attempts"]), one_line(str(d["reason"]))});
      t.print(std::cout);
    };

    if (*stats) {
      Db db(g, false);
      json s = read_stats(db, g);
      s.erase("engine");  // this read-only handle's own counters: all zero
      if (g.json_out)
        print_json(s);
      else
        print_stats(s);
      return kExitOk;
    }
    if (*jobs_ls) {
      Db db(g, false);
      json next;
      json items = list_all(db, "wf_jobs_list", list_filter(jl), jl, "jobs", wf_jobs_list, &next);
      if (g.json_out) {
        print_json(json{{"jobs", items}, {"next_cursor", next}});
        return kExitOk;
      }
      Table t({"ID", "TENANT", "EFFECT", "STATE", "KEY", "ATTEMPTS", "RUN_AT", "LAST_ERROR"});
      for (auto &j : items)
        t.row({str(j["id"]), str(j["tenant"]), str(j["effect"]), str(j["state"]), str(j["key"]),
               str(j["attempts"]), fmt_time(j["run_at"]), one_line(str(j["last_error"]), 40)});
      t.print(std::cout);
      print_more(next);
      return kExitOk;
    }
    if (*jobs_show) {
      Db db(g, false);
      std::string ten = g.tenant;
      json j = db.read("wf_job_get", [&](wf_engine *e, char **out) {
        return wf_job_get(e, g.tenant_set ? ten.c_str() : nullptr, job_ref.c_str(), out);
      });
      if (g.json_out) {
        print_json(j);
        return kExitOk;
      }
      print_kv(j, {"history"});
      std::cout << "\n";
      history_table(j["history"]);
      return kExitOk;
    }
    if (*dead_ls || *dead_show) {
      Db db(g, false);
      json f = dead_show->parsed() ? json{{"ids", json::array({dead_ref})}} : dead_filter();
      if (dead_show->parsed()) tenant_filter(g, f);
      std::string fs = f.dump();
      json items = db.read("wf_dead_list", [&](wf_engine *e, char **out) {
        return wf_dead_list(e, fs.c_str(), out);
      });
      if (*dead_show) {
        if (items.empty()) throw Failure{kExitNotFound, "no dead letter with id " + dead_ref};
        if (g.json_out) {
          print_json(items[0]);
          return kExitOk;
        }
        print_kv(items[0], {"history"});
        std::cout << "\n";
        history_table(items[0]["history"]);
        return kExitOk;
      }
      if (g.json_out)
        print_json(items);
      else
        dead_table(items);
      return kExitOk;
    }
    if (*dead_requeue || *dead_purge) {
      bool requeue = dead_requeue->parsed();
      const char *verb = requeue ? "re-queue" : "purge";
      std::string fs = dead_filter().dump();
      if (!yes) {
        Db db(g, false);
        json items = db.read("wf_dead_list", [&](wf_engine *e, char **out) {
          return wf_dead_list(e, fs.c_str(), out);
        });
        if (g.json_out) {
          print_json(json{{"would", verb}, {"count", items.size()}, {"dead", items}});
        } else {
          dead_table(items);
          std::cout << "would " << verb << " " << items.size()
                    << " dead letter(s); run again with --yes to do it\n";
        }
        return items.empty() ? kExitOk : kExitProblem;
      }
      Db db(g, true);
      int64_t n = 0;
      int rc =
          requeue ? wf_dead_requeue(db.e(), fs.c_str(), &n) : wf_dead_purge(db.e(), fs.c_str(), &n);
      if (rc != WF_OK) fail_call(rc, requeue ? "wf_dead_requeue" : "wf_dead_purge");
      if (g.json_out)
        print_json(json{{requeue ? "requeued" : "purged", n}});
      else
        std::cout << (requeue ? "re-queued " : "purged ") << n << " dead letter(s)\n";
      return kExitOk;
    }
    if (*sched_ls || *sched_show) {
      Db db(g, false);
      json f = list_filter(sl);
      if (*sched_show) {
        f["key"] = sched_key;
        if (!g.tenant_set) f["tenant"] = "";
      }
      json next;
      json items = list_all(db, "wf_schedules_list", f, sl, "schedules", wf_schedules_list, &next);
      if (*sched_show) {
        if (items.empty())
          throw Failure{kExitNotFound, "no schedule \"" + sched_key + "\" in tenant \"" +
                                           (g.tenant_set ? g.tenant : "") + "\""};
        if (g.json_out)
          print_json(items[0]);
        else
          print_kv(items[0]);
        return kExitOk;
      }
      if (g.json_out) {
        print_json(json{{"schedules", items}, {"next_cursor", next}});
        return kExitOk;
      }
      Table t({"TENANT", "KEY", "STATUS", "WHEN", "TARGET", "NEXT_DUE", "FIRED"});
      for (auto &s : items)
        t.row({str(s["tenant"]), str(s["key"]), str(s["status"]),
               s["cron"].is_null() ? "once" : str(s["cron"]) + " " + str(s["tz"]), str(s["target"]),
               fmt_time(s["next_due"]), str(s["fired"])});
      t.print(std::cout);
      print_more(next);
      return kExitOk;
    }
    if (*sagas_ls) {
      Db db(g, false);
      json next;
      json items =
          list_all(db, "wf_sagas_list", list_filter(gl), gl, "sagas", wf_sagas_list, &next);
      if (g.json_out) {
        print_json(json{{"sagas", items}, {"next_cursor", next}});
        return kExitOk;
      }
      Table t({"TENANT", "SAGA", "CORRELATION_ID", "STATUS", "VERSION", "PENDING", "PARKED",
               "UPDATED_AT"});
      for (auto &s : items)
        t.row({str(s["tenant"]), str(s["saga"]), str(s["correlation_id"]), str(s["status"]),
               str(s["version"]), str(s["pending"]), str(s["parked"]), fmt_time(s["updated_at"])});
      t.print(std::cout);
      print_more(next);
      return kExitOk;
    }
    if (*sagas_show) {
      Db db(g, false);
      std::string ten = g.tenant;
      json s = db.read("wf_saga_show", [&](wf_engine *e, char **out) {
        return wf_saga_show(e, ten.c_str(), saga_name.c_str(), saga_corr.c_str(), out);
      });
      if (g.json_out) {
        print_json(s);
        return kExitOk;
      }
      print_kv(s, {"applied", "pending", "state"});
      std::cout << "state"
                << "  " << s["state"].dump() << "\n\napplied events\n";
      Table a({"N", "SEQ", "EVENT_ID", "TYPE", "RECEIVED_AT"});
      for (auto &x : s["applied"])
        a.row({str(x["n"]), str(x["seq"]), str(x["event_id"]), str(x["type"]),
               fmt_time(x["received_at"])});
      a.print(std::cout);
      std::cout << "\npending events\n";
      Table p({"SEQ", "EVENT_ID", "TYPE", "STATUS", "ERROR"});
      for (auto &x : s["pending"])
        p.row({str(x["seq"]), str(x["event_id"]), str(x["type"]), str(x["status"]),
               one_line(str(x["error"]))});
      p.print(std::cout);
      return kExitOk;
    }
    if (*events_ls) {
      Db db(g, false);
      json next;
      json items =
          list_all(db, "wf_events_list", list_filter(el), el, "events", wf_events_list, &next);
      if (g.json_out) {
        print_json(json{{"events", items}, {"next_cursor", next}});
        return kExitOk;
      }
      Table t({"SEQ", "TENANT", "EVENT_ID", "TYPE", "CORRELATION_ID", "STATUS", "RECEIVED_AT"});
      for (auto &v : items)
        t.row({str(v["seq"]), str(v["tenant"]), str(v["event_id"]), str(v["type"]),
               str(v["correlation_id"]), str(v["status"]), fmt_time(v["received_at"])});
      t.print(std::cout);
      print_more(next);
      return kExitOk;
    }
    if (*stuck) {
      int64_t min_age = parse_duration(older_than);
      Db db(g, false);
      int64_t now = now_ms();
      std::vector<StuckItem> items;
      for (auto &it : find_stuck(db, g))
        if (now - it.since >= min_age) items.push_back(std::move(it));
      bool problem = std::any_of(items.begin(), items.end(), [](auto &i) { return i.problem; });
      if (g.json_out) {
        json a = json::array();
        for (auto &i : items)
          a.push_back(json{{"kind", i.kind},
                           {"id", i.id},
                           {"tenant", i.tenant},
                           {"since", i.since},
                           {"problem", i.problem},
                           {"explanation", i.explanation}});
        print_json(json{{"items", a}, {"problem", problem}});
      } else {
        Table t({"KIND", "ID", "TENANT", "SINCE", "EXPLANATION"});
        for (auto &i : items)
          t.row({i.kind, i.id, i.tenant, i.since_label + " (" + fmt_dur(now - i.since) + ")",
                 (i.problem ? "! " : "") + i.explanation});
        t.print(std::cout);
      }
      return problem ? kExitProblem : kExitOk;
    }
    if (*watch) {
      Db db(g, false);
      struct sigaction sa = {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGINT, &sa, nullptr);
      sigaction(SIGTERM, &sa, nullptr);
      bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
      struct termios saved;
      bool raw = tty && tcgetattr(STDIN_FILENO, &saved) == 0;
      if (raw) {
        struct termios t = saved;
        t.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
        tcsetattr(STDIN_FILENO, TCSANOW, &t);
      }
      int n = 0;
      int rc = kExitOk;
      try {
        for (;;) {
          json s = read_stats(db, g);
          s.erase("engine");
          if (g.json_out) {
            std::cout << s.dump() << "\n";
          } else {
            if (isatty(STDOUT_FILENO)) std::cout << "\x1b[H\x1b[2J";
            std::cout << "wfctl watch " << g.db << "  " << fmt_time(json(now_ms()))
                      << "  (q to quit)\n\n";
            print_stats(s);
          }
          std::cout.flush();
          if (iterations > 0 && ++n >= iterations) break;
          if (wait_key(static_cast<int64_t>(interval * 1000))) break;
        }
      } catch (...) {
        if (raw) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        throw;
      }
      if (raw) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
      return rc;
    }
    if (*metrics) {
      Db db(g, false);
      char *text = nullptr;
      int rc = wf_metrics(db.e(), &text);
      if (rc != WF_OK) fail_call(rc, "wf_metrics");
      std::cout << text;
      wf_free(text);
      return kExitOk;
    }
    if (*check) {
      Db db(g, false);
      std::string opts = json{{"quick", quick}}.dump();
      json r = db.read("wf_check",
                       [&](wf_engine *e, char **out) { return wf_check(e, opts.c_str(), out); });
      if (g.json_out) {
        print_json(r);
      } else {
        for (auto &c : r["checks"]) std::cout << "checked  " << str(c) << "\n";
        for (auto &p : r["problems"])
          std::cout << "PROBLEM  " << str(p["check"]) << ": " << str(p["detail"]) << "\n";
        std::cout << (r["ok"].get<bool>() ? "ok\n" : "problems found\n");
      }
      return r["ok"].get<bool>() ? kExitOk : kExitProblem;
    }
    if (*backup) {
      Db db(g, false);
      int rc = wf_backup(db.e(), backup_file.c_str());
      if (rc != WF_OK) fail_call(rc, "wf_backup");
      if (g.json_out)
        print_json(json{{"backup", backup_file}});
      else
        std::cout << "backup written to " << backup_file << "\n";
      return kExitOk;
    }
  } catch (const Failure &f) {
    std::cerr << "wfctl: " << f.msg << "\n";
    return f.code;
  } catch (const std::exception &ex) {
    std::cerr << "wfctl: " << ex.what() << "\n";
    return kExitFailed;
  }
  return kExitUsage;
}
