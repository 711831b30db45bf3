#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace harness {

using nlohmann::json;

// ------------------------------------------------------------ files

std::string make_temp_dir(const char* tag) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + tag + "_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) return std::string();
  return buf.data();
}

void remove_dir(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    std::vector<std::string> names;
    while (dirent* ent = ::readdir(d)) {
      std::string n = ent->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    for (const auto& n : names) ::unlink((dir + "/" + n).c_str());
  }
  ::rmdir(dir.c_str());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool write_file(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return done == bytes.size();
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::string s = read_file(path);
  size_t start = 0;
  for (size_t nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1) {
    if (nl > start) lines.emplace_back(s.substr(start, nl - start));
  }
  return lines;
}

void append_line(int fd, const std::string& line) {
  std::string s = line + "\n";
  for (;;) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n >= 0 || errno != EINTR) break;
  }
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  return (v && *v) ? std::atoi(v) : def;
}

bool truncate_torn_tail(const std::string& path) {
  std::string s = read_file(path);
  if (s.empty() || s.back() == '\n') return false;
  size_t keep = s.rfind('\n');
  keep = keep == std::string::npos ? 0 : keep + 1;
  return ::truncate(path.c_str(), static_cast<off_t>(keep)) == 0;
}

pid_t spawn_self(const std::vector<std::string>& args, const std::vector<std::string>& env,
                 const std::string& stderr_path) {
  std::vector<std::string> argv_s{"/proc/self/exe"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s = env;
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!stderr_path.empty()) {
      int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        ::dup2(fd, 2);
        ::close(fd);
      }
    }
    for (auto& kv : env_s) ::putenv(kv.data());
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  return pid;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

namespace {
// Runs `sql` with plain SQLite and calls `row` with the first column of each
// row. Returns "" or the error.
std::string query(const std::string& db, const char* sql,
                  const std::function<void(const char*)>& row) {
  sqlite3* conn = nullptr;
  int rc = sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READWRITE, nullptr);
  if (rc != SQLITE_OK) {
    std::string err = std::string("open: ") + (conn ? sqlite3_errmsg(conn) : "out of memory");
    sqlite3_close(conn);
    return err;
  }
  sqlite3_busy_timeout(conn, 10000);
  sqlite3_stmt* st = nullptr;
  std::string err;
  rc = sqlite3_prepare_v2(conn, sql, -1, &st, nullptr);
  if (rc != SQLITE_OK) {
    err = std::string("prepare: ") + sqlite3_errmsg(conn);
  } else {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      row(t ? reinterpret_cast<const char*>(t) : "(null)");
    }
    if (rc != SQLITE_DONE) err = std::string("step: ") + sqlite3_errmsg(conn);
  }
  sqlite3_finalize(st);
  sqlite3_close(conn);
  return err;
}
}  // namespace

std::string integrity_check(const std::string& db) {
  std::string out;
  std::string err = query(db, "PRAGMA integrity_check", [&](const char* r) {
    if (!out.empty()) out += "\n";
    out += r;
  });
  return err.empty() ? out : err;
}

std::set<std::string> host_rows(const std::string& db, std::string* err) {
  std::set<std::string> rows;
  bool have = false;
  std::string e = query(db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'host'",
                        [&](const char*) { have = true; });
  if (e.empty() && have)
    e = query(db, "SELECT k FROM host", [&](const char* r) { rows.insert(r); });
  if (err) *err = e;
  return rows;
}

// ------------------------------------------------------------ engine

int reducer(void* /*user*/, const char* input_json, size_t len, wf_buf* out) {
  try {
    json in = json::parse(input_json, input_json + len);
    json state = in.at("state");
    if (state.is_null()) state = json{{"ids", json::array()}};
    state.at("ids").push_back(in.at("event").at("event_id"));
    json res{{"state", std::move(state)}, {"done", false}};
    std::string s = res.dump();
    return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
  } catch (const std::exception&) {
    return 1;  // parks the event: the checks report parked events
  }
}

void sink(void* user, wf_job* job) {
  const LogFn& log = *static_cast<LogFn*>(user);
  log(std::string("d ") + wf_job_key(job) + " " + wf_job_id(job));
  wf_job_complete(job, nullptr);  // WF_ESTATE after a timeout is fine
}

int register_all(wf_engine* e, LogFn* log) {
  int rc = wf_effect_register(e, kEffect, "{\"timeout_ms\":0}", sink, log);
  if (rc == WF_OK) rc = wf_saga_register(e, kSaga, kSagaSpec, reducer, nullptr);
  return rc;
}

int do_job(wf_engine* e, const std::string& key, const LogFn& log) {
  log("j? " + key);
  std::string doc = "{\"effect\":\"sink\",\"key\":\"" + key + "\",\"payload\":{\"k\":\"" + key +
                    "\",\"pad\":\"0123456789abcdef0123456789abcdef\"}}";
  int rc = wf_enqueue(e, doc.c_str(), nullptr);
  if (rc == WF_OK) log("j+ " + key);
  return rc;
}

int do_tx(wf_engine* e, const std::string& key, const LogFn& log) {
  log("t? " + key);
  wf_tx* t = nullptr;
  int rc = wf_tx_begin(e, &t);
  if (rc != WF_OK) return rc;
  std::string params = "[\"" + key + "\"]";
  std::string job = "{\"effect\":\"sink\",\"key\":\"" + key + "\",\"payload\":{\"tx\":true}}";
  rc = wf_tx_exec(t, "CREATE TABLE IF NOT EXISTS host(k TEXT PRIMARY KEY)", nullptr, nullptr);
  if (rc == WF_OK) rc = wf_tx_exec(t, "INSERT INTO host(k) VALUES(?1)", params.c_str(), nullptr);
  if (rc == WF_OK) rc = wf_tx_enqueue(t, job.c_str(), nullptr);
  if (rc != WF_OK) {
    wf_tx_rollback(t);
    return rc;
  }
  rc = wf_tx_commit(t);
  if (rc == WF_OK) log("t+ " + key);
  return rc;
}

int do_event(wf_engine* e, const std::string& id, const std::string& inst, const LogFn& log) {
  log("e? " + id + " " + inst);
  std::string doc = "{\"event_id\":\"" + id + "\",\"type\":\"add\",\"correlation_id\":\"" + inst +
                    "\",\"payload\":{\"id\":\"" + id + "\"}}";
  int rc = wf_submit(e, doc.c_str());
  if (rc == WF_OK) log("e+ " + id + " " + inst);
  return rc;
}

int do_schedule(wf_engine* e, const std::string& key, int64_t due, const LogFn& log) {
  std::string d = std::to_string(due);
  log("s? " + key + " " + d);
  std::string doc = "{\"key\":\"" + key + "\",\"at\":" + d +
                    ",\"job\":{\"effect\":\"sink\",\"payload\":{\"schedule\":\"" + key + "\"}}}";
  int rc = wf_schedule(e, doc.c_str());
  if (rc == WF_OK) log("s+ " + key + " " + d);
  return rc;
}

std::string instance(long n) { return "i" + std::to_string(n % kInstances); }

LogFn fd_log(int fd) {
  return [fd](const std::string& line) { append_line(fd, line); };
}

void run_forever(wf_engine* e, int child, const LogFn& log, int sched_ahead_ms) {
  const std::string c = std::to_string(child);
  std::thread a([&] {
    for (long n = 0;; ++n) {
      std::string s = c + "-" + std::to_string(n);
      do_job(e, "j" + s, log);
      do_tx(e, "t" + s, log);
    }
  });
  std::thread b([&] {
    for (long n = 0;; ++n) {
      std::string s = c + "-" + std::to_string(n);
      do_event(e, "e" + s, instance(child + n), log);
      int64_t ahead = sched_ahead_ms > 0 ? (n * 7 + child) % (sched_ahead_ms + 1) : 0;
      do_schedule(e, "s" + s, now_ms() + ahead, log);
    }
  });
  a.join();  // never: the process is killed
  b.join();
  std::abort();
}

namespace {
int64_t field(const json& j, const char* a, const char* b) {
  if (!j.contains(a) || !j[a].is_object() || !j[a].contains(b) || !j[a][b].is_number_integer())
    return -1;
  return j[a][b].get<int64_t>();
}
}  // namespace

Pending pending(wf_engine* e) {
  Pending p;
  char* out = nullptr;
  if (wf_stats(e, nullptr, &out) != WF_OK) {
    p.raw = std::string("wf_stats failed: ") + wf_last_error();
    return p;
  }
  p.raw = out;
  wf_free(out);
  json j = json::parse(p.raw, nullptr, false);
  if (j.is_discarded()) return p;
  int64_t parts[] = {field(j, "outbox", "ready"), field(j, "outbox", "running"),
                     field(j, "outbox", "scheduled"), field(j, "events", "pending"),
                     field(j, "schedules", "pending")};
  int64_t sum = 0;
  for (int64_t v : parts) {
    if (v < 0) return p;
    sum += v;
  }
  p.work = sum;
  p.dead = j.value("dead", int64_t{-1});
  p.parked = field(j, "sagas", "parked");
  p.unmatched = field(j, "events", "unmatched");
  return p;
}

std::string drain(const std::string& db, const char* options, const LogFn& log, int timeout_ms,
                  Drained* out) {
  wf_engine* e = nullptr;
  int rc = wf_open(db.c_str(), options, &e);
  if (rc != WF_OK) return std::string("wf_open: ") + wf_strerror(rc) + ": " + wf_last_error();
  LogFn fn = log;
  std::string err;
  rc = register_all(e, &fn);
  if (rc == WF_OK) rc = wf_start(e);
  if (rc != WF_OK) err = std::string("register/start: ") + wf_strerror(rc) + ": " + wf_last_error();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (err.empty()) {
    Pending p = pending(e);
    if (p.work == 0) break;
    if (p.work < 0) {
      err = "wf_stats: " + p.raw;
    } else if (std::chrono::steady_clock::now() > deadline) {
      err = "not drained within " + std::to_string(timeout_ms) + " ms: " + p.raw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (err.empty() && (rc = wf_sync(e)) != WF_OK)
    err = std::string("wf_sync: ") + wf_strerror(rc) + ": " + wf_last_error();
  for (int k = 0; err.empty() && k < kInstances; ++k) {
    std::string inst = instance(k);
    char* s = nullptr;
    rc = wf_saga_get(e, "", kSaga, inst.c_str(), &s);
    if (rc == WF_ENOTFOUND) continue;
    if (rc != WF_OK) {
      err = std::string("wf_saga_get: ") + wf_strerror(rc) + ": " + wf_last_error();
      break;
    }
    json doc = json::parse(s, nullptr, false);
    std::string raw = s;
    wf_free(s);
    if (doc.is_discarded() || !doc.contains("state") || !doc["state"].is_object() ||
        !doc["state"].contains("ids") || !doc["state"]["ids"].is_array()) {
      err = "instance " + inst + " has an unexpected state: " + raw;
      break;
    }
    auto& ids = out->states[inst];
    for (const auto& v : doc["state"]["ids"])
      ids.push_back(v.is_string() ? v.get<std::string>() : v.dump());
    if (doc.value("version", int64_t{-1}) != static_cast<int64_t>(ids.size()))
      err = "instance " + inst + ": version differs from the applied events: " + raw;
  }
  Pending p = pending(e);
  out->stats = p.raw;
  out->dead = p.dead;
  out->parked = p.parked;
  out->unmatched = p.unmatched;
  rc = wf_close(e);
  if (rc != WF_OK && err.empty())
    err = std::string("wf_close: ") + wf_strerror(rc) + ": " + wf_last_error();
  return err;
}

// ------------------------------------------------------------ ledger

void Ledger::add(const std::string& line) {
  std::istringstream in(line);
  std::string tag, a, b;
  in >> tag >> a >> b;
  if (tag.empty() || a.empty()) {
    malformed++;
    return;
  }
  if (tag == "d") {
    delivered[a][b]++;
  } else if (tag == "j?") {
    job_tried.insert(a);
  } else if (tag == "j+") {
    job_acked.insert(a);
  } else if (tag == "t?") {
    tx_tried.insert(a);
  } else if (tag == "t+") {
    tx_acked.insert(a);
  } else if (tag == "e?") {
    ev_tried[a] = b;
  } else if (tag == "e+") {
    ev_acked[a] = b;
  } else if (tag == "s?") {
    sched_tried[a] = std::atoll(b.c_str());
  } else if (tag == "s+") {
    sched_acked[a] = std::atoll(b.c_str());
  } else {
    malformed++;
  }
}

void Ledger::add_lines(const std::vector<std::string>& lines) {
  for (const auto& l : lines) add(l);
}

LogFn LedgerLog::fn() {
  return [this](const std::string& line) {
    std::lock_guard<std::mutex> g(mu);
    ledger.add(line);
  };
}

std::string Report::summary() const {
  std::ostringstream s;
  s << "acked jobs=" << jobs_acked << " tx=" << tx_acked << " events=" << events_acked
    << " schedules=" << schedules_acked << " deliveries=" << deliveries
    << " redelivered=" << redelivered << " | lost=" << lost << " duplicated=" << duplicated
    << " double_fired=" << double_fired << " half=" << half << " phantom=" << phantom
    << " (unacknowledged but present=" << unacked_present << ")";
  return s.str();
}

namespace {
void problem(Report* r, const std::string& s) {
  if (r->problems.size() < 20) r->problems.push_back(s);
}
}  // namespace

Report verify(const Ledger& l, const std::map<std::string, std::vector<std::string>>& states,
              const std::set<std::string>& host, const Options& opt) {
  Report r;
  r.jobs_acked = static_cast<int64_t>(l.job_acked.size());
  r.tx_acked = static_cast<int64_t>(l.tx_acked.size());
  r.events_acked = static_cast<int64_t>(l.ev_acked.size());
  r.schedules_acked = static_cast<int64_t>(l.sched_acked.size());
  if (l.malformed) {
    r.phantom += l.malformed;
    problem(&r, std::to_string(l.malformed) + " malformed log lines");
  }

  // Jobs and host transactions.
  const std::string sp = "schedule:";
  std::map<std::string, std::map<int64_t, std::map<std::string, int>>> fired;  // key->due->id->n
  for (const auto& [key, ids] : l.delivered) {
    for (const auto& [id, n] : ids) {
      r.deliveries += n;
      r.redelivered += n - 1;
    }
    if (key.compare(0, sp.size(), sp) == 0) {
      size_t at = key.rfind('@');
      if (at == std::string::npos || at < sp.size()) {
        r.phantom++;
        problem(&r, "delivered a malformed schedule job key: " + key);
        continue;
      }
      fired[key.substr(sp.size(), at - sp.size())][std::atoll(key.c_str() + at + 1)] = ids;
      continue;
    }
    if (!l.job_tried.count(key) && !l.tx_tried.count(key)) {
      r.phantom++;
      problem(&r, "delivered a job nobody enqueued: " + key);
    }
    if (ids.size() > 1) {
      r.duplicated++;
      problem(&r, "job " + key + " delivered under " + std::to_string(ids.size()) + " job ids");
    }
  }
  for (const auto& key : l.job_acked) {
    if (!l.delivered.count(key)) {
      r.lost++;
      problem(&r, "lost job: " + key + " (wf_enqueue returned WF_OK)");
    }
  }
  for (const auto& key : l.job_tried) {
    if (!l.job_acked.count(key) && l.delivered.count(key)) r.unacked_present++;
  }
  for (const auto& key : l.tx_tried) {
    bool row = host.count(key) != 0, job = l.delivered.count(key) != 0;
    if (l.tx_acked.count(key)) {
      if (!row || !job) {
        r.lost++;
        problem(&r, "lost transaction " + key + " (wf_tx_commit returned WF_OK): host row " +
                        (row ? "present" : "missing") + ", job " +
                        (job ? "delivered" : "never delivered"));
      }
    } else {
      if (row != job) {
        r.half++;
        problem(&r, "half-applied transaction " + key + " (not acknowledged): host row " +
                        (row ? "present" : "missing") + ", job " +
                        (job ? "delivered" : "never delivered"));
      }
      if (row && job) r.unacked_present++;
    }
  }
  for (const auto& key : host) {
    if (!l.tx_tried.count(key)) {
      r.phantom++;
      problem(&r, "host row nobody inserted: " + key);
    }
  }

  // Events.
  std::map<std::string, std::vector<std::string>> applied;  // id -> instances
  for (const auto& [inst, ids] : states)
    for (const auto& id : ids) applied[id].push_back(inst);
  for (const auto& [id, insts] : applied) {
    if (insts.size() > 1) {
      r.duplicated++;
      problem(&r, "event " + id + " applied " + std::to_string(insts.size()) + " times");
    }
    auto t = l.ev_tried.find(id);
    if (t == l.ev_tried.end()) {
      r.phantom++;
      problem(&r, "applied an event nobody submitted: " + id);
      continue;
    }
    for (const auto& i : insts) {
      if (i != t->second) {
        r.phantom++;
        problem(&r, "event " + id + " sent to " + t->second + ", applied to " + i);
      }
    }
    if (!l.ev_acked.count(id)) r.unacked_present++;
  }
  for (const auto& [id, inst] : l.ev_acked) {
    if (!applied.count(id)) {
      r.lost++;
      problem(&r, "lost event: " + id + " (wf_submit returned WF_OK)");
    }
  }

  // Schedules.
  for (const auto& [key, dues] : fired) {
    auto t = l.sched_tried.find(key);
    if (t == l.sched_tried.end()) {
      r.phantom++;
      problem(&r, "fired a schedule nobody created: " + key);
      continue;
    }
    size_t jobs = 0;
    for (const auto& [due, ids] : dues) jobs += ids.size();
    if (dues.size() > 1 || (opt.strict_job_ids && jobs > 1)) {
      r.double_fired++;
      std::string what;
      for (const auto& [due, ids] : dues)
        for (const auto& [id, n] : ids)
          what += " @" + std::to_string(due) + " job " + id + " x" + std::to_string(n);
      problem(&r, "schedule " + key + " fired more than once:" + what);
    }
    if (!dues.count(t->second)) {
      r.phantom++;
      problem(&r,
              "schedule " + key + " fired at another due time than " + std::to_string(t->second));
    }
    if (!l.sched_acked.count(key)) r.unacked_present++;
  }
  for (const auto& [key, due] : l.sched_acked) {
    auto f = fired.find(key);
    if (f == fired.end() || !f->second.count(due)) {
      r.lost++;
      problem(&r, "lost schedule: " + key + " due " + std::to_string(due) +
                      " (wf_schedule returned WF_OK) never fired");
    }
  }
  return r;
}

}  // namespace harness
