// Shared pieces of the fault tests (faults sweep, power loss, failpoints):
// the workload items, the ledger of what was tried / acknowledged /
// observed, the final drain and the verification.
//
// Items (every one is logged as "<tag>? ..." before the call and
// "<tag>+ ..." once the call returned WF_OK):
//   j  key          wf_enqueue of a keyed job of effect "sink"
//   t  key          host transaction: INSERT INTO host(k) VALUES(key) and
//                   wf_tx_enqueue of a job with the same key, committed together
//   e  id instance  wf_submit of an "add" event to saga "ledger", instance
//                   <instance>; the reducer appends the event id to the state
//   s  key due      wf_schedule of a one-shot schedule at <due> whose job
//                   (effect "sink") gets the key "schedule:<key>@<due>"
// Deliveries of effect "sink" are logged as "d <job key> <job id>".
#ifndef WF_TESTS_FAULTS_HARNESS_H
#define WF_TESTS_FAULTS_HARNESS_H

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "wfengine.h"

namespace harness {

constexpr const char* kSaga = "ledger";
constexpr const char* kSagaSpec = "{\"start\":[\"add\"],\"correlation\":\"correlation_id\"}";
constexpr const char* kEffect = "sink";
constexpr int kInstances = 4;

using LogFn = std::function<void(const std::string&)>;

// Sanitizer builds (WF_SANITIZE / WF_TSAN) run 3 to 10 times slower: the
// tests then default to fewer runs (the figures in docs/reliability.md are
// from the regular build).
#ifdef WF_FAULTS_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// ------------------------------------------------------------ files

std::string make_temp_dir(const char* tag);
void remove_dir(const std::string& dir);  // its files, then the directory
std::string read_file(const std::string& path);
bool write_file(const std::string& path, const std::string& bytes);
bool file_exists(const std::string& path);
std::vector<std::string> read_lines(const std::string& path);  // complete lines only
// One line, one write(2) on an O_APPEND descriptor: survives SIGKILL.
void append_line(int fd, const std::string& line);
int64_t now_ms();
int env_int(const char* name, int def);

// PRAGMA integrity_check with plain SQLite (default VFS): "ok" or the rows.
std::string integrity_check(const std::string& db);
// Keys of the host table written by the "t" items (empty if no table yet).
std::set<std::string> host_rows(const std::string& db, std::string* err);

// A last line without '\n' was cut short by SIGKILL: cut it off so the next
// writer's first line does not glue onto it. Returns whether it did.
bool truncate_torn_tail(const std::string& path);

// fork + exec of this very executable (/proc/self/exe) with `args` (argv[1..]),
// extra environment `env` ("NAME=value") and, if not empty, stderr
// redirected to `stderr_path`. Returns the pid (or -1).
pid_t spawn_self(const std::vector<std::string>& args, const std::vector<std::string>& env,
                 const std::string& stderr_path);
std::string describe_status(int status);

// ------------------------------------------------------------ engine

// The saga reducer: appends the event id to state.ids.
int reducer(void* user, const char* input_json, size_t len, wf_buf* out);
// Effect "sink": calls (*(LogFn*)user)("d <key> <id>"), then completes.
void sink(void* user, wf_job* job);
// Registers "sink" (with `log`, which must outlive the engine) and the saga.
int register_all(wf_engine* e, LogFn* log);

int do_job(wf_engine* e, const std::string& key, const LogFn& log);
int do_tx(wf_engine* e, const std::string& key, const LogFn& log);
int do_event(wf_engine* e, const std::string& id, const std::string& instance, const LogFn& log);
int do_schedule(wf_engine* e, const std::string& key, int64_t due, const LogFn& log);
std::string instance(long n);

// A LogFn appending each line to `fd` with one write(2).
LogFn fd_log(int fd);

// The workload of the child processes (power loss, failpoints): two threads
// submit items until the process is killed, never returning. Thread 1:
// "j<c>-<n>" jobs and "t<c>-<n>" transactions; thread 2: "e<c>-<n>" events
// and "s<c>-<n>" schedules due 0 to `sched_ahead_ms` ms later.
[[noreturn]] void run_forever(wf_engine* e, int child, const LogFn& log, int sched_ahead_ms);

// Work left according to wf_stats (outbox ready + running + scheduled,
// events pending, schedules pending, dead letters, parked events are
// reported separately); -1 if wf_stats failed.
struct Pending {
  int64_t work = -1;
  int64_t dead = 0, parked = 0, unmatched = 0;
  std::string raw;
};
Pending pending(wf_engine* e);

// Opens the engine on `db` (plain options), drains every job, event and
// schedule, reads the saga states and closes. Returns "" or what went wrong.
struct Drained {
  std::map<std::string, std::vector<std::string>> states;  // instance -> applied ids
  std::string stats;
  int64_t dead = 0, parked = 0, unmatched = 0;
};
std::string drain(const std::string& db, const char* options, const LogFn& log, int timeout_ms,
                  Drained* out);

// ------------------------------------------------------------ ledger

struct Ledger {
  std::set<std::string> job_tried, job_acked;
  std::set<std::string> tx_tried, tx_acked;
  std::map<std::string, std::string> ev_tried, ev_acked;        // id -> instance
  std::map<std::string, int64_t> sched_tried, sched_acked;      // key -> due
  std::map<std::string, std::map<std::string, int>> delivered;  // job key -> job id -> times
  int64_t malformed = 0;

  void add(const std::string& line);
  void add_lines(const std::vector<std::string>& lines);
};

// A thread-safe LogFn that feeds a Ledger.
struct LedgerLog {
  std::mutex mu;
  Ledger ledger;
  LogFn fn();
};

struct Options {
  // Without power loss a schedule's job key must be delivered under one job
  // id only (a second id is a second firing). A power cut may roll back a
  // firing that was delivered but not yet durable, so the next firing can
  // insert the job under another id: only the due times are compared then.
  bool strict_job_ids = true;
};

struct Report {
  int64_t jobs_acked = 0, tx_acked = 0, events_acked = 0, schedules_acked = 0;
  int64_t deliveries = 0, redelivered = 0;
  int64_t lost = 0;             // acknowledged and missing
  int64_t duplicated = 0;       // events applied more than once
  int64_t double_fired = 0;     // schedules fired twice
  int64_t half = 0;             // host row without its job or the reverse
  int64_t phantom = 0;          // applied or delivered without ever being tried
  int64_t unacked_present = 0;  // failed/unknown calls whose work is there (allowed)
  std::vector<std::string> problems;

  bool ok() const { return lost + duplicated + double_fired + half + phantom == 0; }
  std::string summary() const;
};

Report verify(const Ledger& l, const std::map<std::string, std::vector<std::string>>& states,
              const std::set<std::string>& host, const Options& opt);

}  // namespace harness

#endif  // WF_TESTS_FAULTS_HARNESS_H
